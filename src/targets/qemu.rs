//! `qemu:tcg`, `qemu:kvm`, `qemu`: the agent as init of a QEMU guest booting the
//! host's kernel (Debian's `vmlinuz-*-cloud-amd64`, or `$VIRTMARK_KERNEL`) with an
//! initramfs virtmark builds (agent, its libraries, the virtio modules).
//!
//! - agent channel: a virtio-serial port named `virtmark` on QEMU's stdio; the
//!   kernel console (ttyS0) goes to a log file, so it never mixes with the channel;
//! - network: virtio-net on a tap device inside a network namespace virtmark
//!   creates ([`super::netns::tap_site`]); QEMU itself runs in that namespace
//!   (only when the run has network workloads: otherwise the guest has no NIC);
//! - scratch: virtio-blk on a sparse raw image formatted ext4 on the host,
//!   mounted at /scratch in the guest;
//! - size: `-smp` and `-m` from [`StartEnv`].
//!
//! `qemu` uses KVM only when a test boot under `-enable-kvm` finishes within a
//! deadline (checked once per process); otherwise it says why and uses TCG.
//! `qemu:kvm` is unavailable when that test fails.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::ledger::Resource;
use super::{initramfs, netns, peer, tools, Driver, Family, Guard, Instance, StartEnv, Teardown};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The modules only the guest's network needs (virtio-net and its failover).
pub const NET_MODULES: &[&str] = &["failover", "net_failover", "virtio_net"];

/// A minimal firmware shipped with QEMU (Debian package qemu-system-data).
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// How long the KVM test boot may take before KVM is judged unusable.
pub const KVM_PROBE_DEADLINE: Duration = Duration::from_secs(8);

/// Size of the sparse scratch disk image (only what is written takes space).
pub const SCRATCH_IMAGE_BYTES: u64 = 16 << 30;

/// Which accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// TCG: QEMU's binary translator.
    Tcg,
    /// KVM.
    Kvm,
    /// KVM when it can boot a guest here, else TCG.
    Auto,
}

/// The QEMU driver.
pub struct Qemu {
    /// Accelerator asked for.
    pub accel: Accel,
}

/// The guest kernel: `$VIRTMARK_KERNEL`, else the newest `/boot/vmlinuz-*-cloud-amd64`.
pub fn kernel() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("VIRTMARK_KERNEL") {
        let k = PathBuf::from(k);
        if !k.is_file() {
            return Err(format!(
                "the kernel image {} (VIRTMARK_KERNEL) does not exist",
                k.display()
            ));
        }
        return Ok(k);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map_err(|e| format!("cannot list /boot: {e}"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64")
            })
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        "no guest kernel: /boot/vmlinuz-*-cloud-amd64 is missing (Debian package \
         linux-image-cloud-amd64), and VIRTMARK_KERNEL is not set"
            .to_string()
    })
}

/// Whether KVM can boot a guest here (a test boot, checked once per process
/// and kept in the cache); `Err` says why not. Drivers of other QEMU front ends
/// (libvirt) ask it too.
pub fn kvm_verdict() -> &'static Result<(), String> {
    static VERDICT: OnceLock<Result<(), String>> = OnceLock::new();
    VERDICT.get_or_init(|| cached_kvm_probe().unwrap_or_else(|_| probe_kvm()))
}

/// [`probe_kvm`]'s verdict, either way, kept in the cache per kernel, KVM
/// modules, QEMU and guest kernel: a KVM that cannot boot a guest (kvm_pvm)
/// fails the same way every time, and the probe costs its full deadline.
fn cached_kvm_probe() -> Result<Result<(), String>> {
    let k = kernel().map_err(anyhow::Error::msg)?;
    let modules: Vec<String> = std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("kvm"))
        .map(String::from)
        .collect();
    let key = super::verify::key("qemu:kvm", &[QEMU, &k.to_string_lossy()])?.with(modules);
    let path = super::cache::entry("kvm-verdict", "txt", key, |p| {
        let text = match probe_kvm() {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("no: {e}\n"),
        };
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))
    })?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(match text.trim_end().strip_prefix("no: ") {
        Some(why) => Err(why.to_string()),
        None if text.trim_end() == "ok" => Ok(()),
        None => anyhow::bail!("{} holds no verdict", path.display()),
    })
}

/// Boot the guest kernel under KVM without any root file system: it panics at
/// the root mount, `panic=-1` reboots, `-no-reboot` makes QEMU exit. A working
/// KVM does that in well under a second; one that emulates guest kernel code
/// (kvm_pvm here) does not finish at all.
fn probe_kvm() -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm cannot be opened: {e}"));
    }
    let k = kernel()?;
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args([
        "-accel", "kvm", "-cpu", "host", "-m", "256M", "-serial", "stdio",
    ])
    .arg("-kernel")
    .arg(&k)
    .args(["-append", "console=ttyS0 panic=-1 reboot=t"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    crate::sys::die_with_parent(&mut cmd);
    let t = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    let hint = if pvm {
        " (the host's KVM module is kvm_pvm, which emulates guest kernel code)"
    } else {
        ""
    };
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                let console = reader.join().unwrap_or_default();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                if console.contains("Linux version") || console.contains("Kernel panic") {
                    return Ok(());
                }
                return Err(format!(
                    "KVM cannot boot a guest here: a test boot under -enable-kvm failed \
                     ({st}): {}{hint}",
                    err.lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("no kernel output")
                        .trim()
                ));
            }
            Ok(None) if t.elapsed() > KVM_PROBE_DEADLINE => {
                crate::sys::stop_child(&mut child, Duration::from_millis(200));
                return Err(format!(
                    "KVM cannot boot a guest here: /dev/kvm opens, but a test boot under \
                     -enable-kvm did not finish within {} s{hint}",
                    KVM_PROBE_DEADLINE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the KVM test boot: {e}")),
        }
    }
}

/// Which accelerator `qemu` (auto) uses here, saying once on stderr why when TCG.
fn resolve(accel: Accel) -> Result<Accel> {
    match accel {
        Accel::Tcg => Ok(Accel::Tcg),
        Accel::Kvm => match kvm_verdict() {
            Ok(()) => Ok(Accel::Kvm),
            Err(e) => Err(crate::error::user(format!("qemu:kvm: {e}"))),
        },
        Accel::Auto => match kvm_verdict() {
            Ok(()) => Ok(Accel::Kvm),
            Err(e) => {
                static SAID: OnceLock<()> = OnceLock::new();
                SAID.get_or_init(|| eprintln!("virtmark: qemu: using TCG: {e}"));
                Ok(Accel::Tcg)
            }
        },
    }
}

/// The host's toolchain image for the guest's second disk, when a workload
/// compiles (marks the `toolchain image` phase); shared by `qemu` and `libvirt`.
pub(super) fn toolchain_disk(env: &StartEnv, phases: &mut Phases) -> Result<Option<PathBuf>> {
    if !env.toolchain {
        return Ok(None);
    }
    let img = super::toolchain::guest_image()?;
    phases.mark("toolchain image");
    Ok(Some(img))
}

/// Create a new sparse file of `bytes` at `path`, recorded in the ledger: a new
/// file, never a link someone planted (root formats and boots it).
pub(super) fn sparse_file(guard: &mut Guard, path: &Path, bytes: u64) -> Result<()> {
    guard.create(
        Resource::Dir {
            path: path.to_path_buf(),
        },
        || {
            let f = super::ledger::create_private_file(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.set_len(bytes)
                .with_context(|| format!("sizing {}", path.display()))
        },
    )
}

/// Create a sparse file of `bytes` at `path` (recorded) and format it ext4. Lazy
/// inode-table init makes mkfs fast; the guest mounts with `noinit_itable`, so
/// nothing zeroes tables in the background during measurements (a sparse file
/// reads as zeros anyway).
pub fn scratch_image(guard: &mut Guard, path: &Path, bytes: u64) -> Result<()> {
    sparse_file(guard, path, bytes)?;
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            // A 64 MiB journal: the default for 16 GiB (256 MiB) makes mkfs slower.
            "-J",
            "size=64",
            "-L",
            "scratch",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running mkfs.ext4 (Debian package e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// How long a VM gets to power off by itself (after the agent's `shutdown`)
/// before teardown stops it.
pub const POWER_OFF_WAIT: Duration = Duration::from_secs(3);

/// Teardown of a VM: give the guest a moment to power off by itself (the agent
/// powers it off after `shutdown`), then stop the VM process (SIGTERM, SIGKILL)
/// and remove everything else the guard holds.
pub struct VmTeardown {
    child: Option<(std::process::Child, Resource)>,
    guard: Guard,
}

impl VmTeardown {
    /// Own the VM process `child` (recorded in the ledger now) and `guard`.
    pub fn new(child: std::process::Child, guard: Guard) -> Result<VmTeardown> {
        let res = guard.ledger().record_process(child.id())?;
        Ok(VmTeardown {
            child: Some((child, res)),
            guard,
        })
    }
}

impl Teardown for VmTeardown {
    fn teardown(&mut self) -> Result<()> {
        let mut first = Ok(());
        if let Some((mut c, res)) = self.child.take() {
            let t = Instant::now();
            while t.elapsed() < POWER_OFF_WAIT {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            crate::sys::stop_child(&mut c, Duration::from_secs(2));
            first = self.guard.ledger().release(&res);
        }
        let rest = self.guard.teardown();
        first.and(rest)
    }
}

impl Drop for VmTeardown {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The guest's initramfs (cached, with the virtio modules) and the kernel to boot:
/// the uncompressed kernel entered at its PVH entry point when it has one, else
/// `k` itself. Marks the `initramfs` and `kernel` phases. Shared by `qemu` and
/// `libvirt`, which boot the same guest.
pub(super) fn boot_files(
    env: &StartEnv,
    k: &Path,
    phases: &mut Phases,
) -> Result<(PathBuf, PathBuf)> {
    let initrd = initramfs::cached(
        env.exe,
        &initramfs::module_root_for(k),
        initramfs::VIRTIO_MODULES,
    )?;
    phases.mark("initramfs");
    let boot_kernel = match super::pvh::vmlinux(k)? {
        Ok(vmlinux) => vmlinux,
        Err(reason) => {
            phases.note(&format!("bzImage boot: {reason}"));
            k.to_path_buf()
        }
    };
    phases.mark("kernel");
    Ok((initrd, boot_kernel))
}

/// Durations of the host-side set-up steps, written to the instance's log.
pub(super) struct Phases {
    last: Instant,
    text: String,
}

impl Phases {
    pub(super) fn new() -> Phases {
        Phases {
            last: Instant::now(),
            text: String::new(),
        }
    }

    /// Note that step `what` just ended.
    pub(super) fn mark(&mut self, what: &str) {
        let now = Instant::now();
        if !self.text.is_empty() {
            self.text.push_str(", ");
        }
        self.text.push_str(&format!(
            "{what} {:.0} ms",
            (now - self.last).as_secs_f64() * 1e3
        ));
        self.last = now;
    }

    /// Add a remark (a fallback taken) to the log line.
    pub(super) fn note(&mut self, what: &str) {
        if !self.text.is_empty() {
            self.text.push_str(", ");
        }
        self.text.push_str(what);
    }

    /// Create the log at `path` with a line naming the steps; return it for the
    /// VM's own output.
    pub(super) fn log(&self, path: &Path, name: &str) -> Result<File> {
        use std::io::Write;
        let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        writeln!(f, "virtmark: {name} host set-up: {}", self.text)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(f)
    }
}

/// Guest kernel parameters that only shorten the boot: they skip boot-time
/// self-tests and set-up nothing virtmark's guest uses, and change nothing a
/// workload measures (security mitigations, schedulers, clocks and the network
/// stack are left as the kernel sets them). Measured with `initcall_debug`
/// under TCG here (2026-11-22): the crypto algorithms' self-tests
/// (`crypto_algapi_init`, 243 ms; `cryptomgr.notests`), the SP800-108 KDF
/// self-test (97 ms), kprobe trace events (103 ms), and loading the kernel's
/// module-signing certificates (56 ms; the initramfs carries its modules
/// without signatures).
pub const BOOT_ONLY_ARGS: &str = "cryptomgr.notests \
     initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,load_system_certificate_list";

/// `lapic_timer_period=<ticks per jiffy>` for the guest kernel `kernel`, which
/// skips the kernel's calibration of its local APIC timer (about 110 ms under
/// TCG here). QEMU's local APIC timer counts at its fixed 1 GHz bus clock, so the
/// period is 10⁹ / `CONFIG_HZ` (the calibration measured 3999967 for HZ=250).
/// `None` when the kernel's configuration (`/boot/config-<version>`) is not there.
pub fn lapic_timer_arg(kernel: &Path) -> Option<String> {
    let version = kernel
        .file_name()?
        .to_string_lossy()
        .strip_prefix("vmlinuz-")?
        .to_string();
    let config =
        std::fs::read_to_string(Path::new("/boot").join(format!("config-{version}"))).ok()?;
    let hz: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))?
        .trim()
        .parse()
        .ok()
        .filter(|&hz| hz > 0)?;
    Some(format!("lapic_timer_period={}", QEMU_APIC_BUS_HZ / hz))
}

/// The frequency of QEMU's emulated APIC bus, which drives the local APIC timer.
const QEMU_APIC_BUS_HZ: u64 = 1_000_000_000;

/// Extra guest kernel parameters from `$VIRTMARK_KERNEL_ARGS` (e.g.
/// `loglevel=7` to see the boot in the console log).
pub fn extra_kernel_args() -> String {
    std::env::var("VIRTMARK_KERNEL_ARGS").unwrap_or_default()
}

/// The guest kernel command line of virtmark's VMs booting `kernel` with its
/// initramfs: the agent as init, its channel the virtio-serial port named
/// `virtmark`, the scratch disk `/dev/vda`, eth0 addressed for `site` (else no
/// network modules loaded) and, with `toolchain`, the host's toolchain on
/// `/dev/vdb`. Shared by every QEMU front end (`qemu`, `libvirt`).
pub fn kernel_cmdline(kernel: &Path, site: Option<&netns::TapSite>, toolchain: bool) -> String {
    let net_words = match site {
        Some(site) => format!("virtmark.ip={}/{}", site.guest_ip, netns::PREFIX),
        None => format!("virtmark.nomod={}", NET_MODULES.join(",")),
    };
    let tools_word = if toolchain {
        "virtmark.toolchain=/dev/vdb"
    } else {
        ""
    };
    format!(
        "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable i8042.noaux i8042.nokbd \
         {BOOT_ONLY_ARGS} rdinit=/virtmark \
         virtmark.modules={} {net_words} virtmark.disk=/dev/vda \
         virtmark.chan=port:virtmark virtmark.off=reboot {tools_word} {} {} -- agent --init",
        initramfs::MODULE_DIR,
        lapic_timer_arg(kernel).unwrap_or_default(),
        extra_kernel_args(),
    )
}

/// Memory in MiB for a VM of `bytes` (at least 128 MiB).
pub fn mib(bytes: u64) -> u64 {
    (bytes >> 20).max(128)
}

/// Its names.
pub const FAMILY: Family = Family {
    names: &["qemu:tcg", "qemu:kvm", "qemu"],
    // `qemu` is an alias of qemu:kvm or qemu:tcg, both listed already.
    not_default: &["qemu"],
    make: |n| {
        let accel = match n {
            "qemu:tcg" => Accel::Tcg,
            "qemu:kvm" => Accel::Kvm,
            "qemu" => Accel::Auto,
            _ => return None,
        };
        Some(Ok(Box::new(Qemu { accel }) as Box<dyn Driver>))
    },
};

/// The checks every VM driver booting the guest kernel makes: `mkfs.ext4`
/// (scratch images), network namespaces, the guest kernel and its modules.
/// Returns the kernel.
pub fn check_guest_kernel() -> Result<PathBuf, String> {
    tools::need("mkfs.ext4", "e2fsprogs")?;
    netns::check_available()?;
    let k = kernel()?;
    let m = initramfs::module_root_for(&k);
    if !m.join("modules.dep").is_file() {
        return Err(format!(
            "the modules of the guest kernel {} are missing ({}/modules.dep)",
            k.display(),
            m.display()
        ));
    }
    Ok(k)
}

impl Driver for Qemu {
    fn name(&self) -> &str {
        match self.accel {
            Accel::Tcg => "qemu:tcg",
            Accel::Kvm => "qemu:kvm",
            Accel::Auto => "qemu",
        }
    }

    fn class(&self) -> &'static str {
        match self.accel {
            Accel::Tcg => "emulation (QEMU TCG)",
            Accel::Kvm => "hardware-assisted virtualization (QEMU/KVM)",
            Accel::Auto => "QEMU: KVM when it can boot a guest, else TCG",
        }
    }

    fn available(&self) -> Result<(), String> {
        tools::need(
            QEMU,
            "qemu-system-x86, from bookworm-backports on Debian 12",
        )?;
        let k = check_guest_kernel()?;
        if self.accel == Accel::Kvm {
            kvm_verdict().clone()?;
        }
        let kernel = k.to_string_lossy();
        super::verify::proven(self.name(), &[QEMU, "mkfs.ext4", &kernel], |env| {
            self.start(env)
        })
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let accel = resolve(self.accel)?;
        let k = kernel().map_err(crate::error::user)?;
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(2));
        let dir = env.scratch.clone();
        guard.create_dir(&dir)?;
        let mut phases = Phases::new();
        let (initrd, boot_kernel) = boot_files(env, &k, &mut phases)?;
        let image = dir.join("scratch.img");
        scratch_image(&mut guard, &image, SCRATCH_IMAGE_BYTES)?;
        phases.mark("scratch image");
        // A NIC (virtio-net on a tap in a namespace of virtmark's) only when the
        // run has network workloads; without one the guest loads no network
        // modules and QEMU has no network at all.
        let site = match env.peer {
            Some(_) => Some(netns::tap_site(&mut guard, &env.tag, env.index)?),
            None => None,
        };
        let peer = match &site {
            Some(site) => peer::start_for(&mut guard, env, site.peer_ip, &site.ns)?,
            None => None,
        };
        phases.mark("network");
        // The host's toolchain on a second disk (/dev/vdb), when a workload compiles.
        let tools = toolchain_disk(env, &mut phases)?;
        let log = phases.log(&env.log, self.name())?;
        let append = kernel_cmdline(&k, site.as_ref(), tools.is_some());
        let console = env.log.with_extension("console.log");
        let mut cmd = Command::new(QEMU);
        cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        match accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            _ => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        };
        // qboot: a minimal firmware that jumps straight to the kernel (SeaBIOS
        // costs seconds under TCG).
        if Path::new(QBOOT).is_file() {
            cmd.arg("-bios").arg(QBOOT);
        }
        cmd.args(["-smp", &env.cpus.max(1).to_string()])
            .args(["-m", &format!("{}M", mib(env.memory))])
            .arg("-kernel")
            .arg(&boot_kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .args(["-device", "virtio-serial-pci,id=vs0"])
            .args(["-chardev", "stdio,id=chan,signal=off"])
            .args([
                "-device",
                "virtserialport,bus=vs0.0,chardev=chan,name=virtmark",
            ])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=d0", image.display()))
            .args(["-device", "virtio-blk-pci,drive=d0"]);
        if let Some(img) = &tools {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=d1,readonly=on",
                    img.display()
                ))
                .args(["-device", "virtio-blk-pci,drive=d1"]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(site) = &site {
            cmd.args([
                "-netdev",
                &format!("tap,id=n0,ifname={},script=no,downscript=no", site.tap),
            ])
            // romfile= : no iPXE option ROM to load and run.
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="]);
        }
        crate::sys::die_with_parent(&mut cmd);
        if let Some(site) = &site {
            netns::spawn_in_netns(&mut cmd, &site.ns)?;
        }
        // `scale --pin` (issue 12): QEMU and its vCPU threads on the instance's CPUs.
        if let Some(cpus) = &env.cpuset {
            crate::sys::pin_to(&mut cmd, cpus)?;
        }
        let child = cmd.spawn().with_context(|| format!("starting {QEMU}"))?;
        Instance::of_vm(guard, child, peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_whole_mib_with_a_floor() {
        assert_eq!(mib(2 << 30), 2048);
        assert_eq!(mib(1 << 20), 128);
    }

    #[test]
    fn the_lapic_timer_period_comes_from_the_kernel_configuration() {
        // Debian's kernels ship their configuration next to them.
        if let Ok(k) = kernel() {
            let arg = lapic_timer_arg(&k).expect("a period for the guest kernel");
            let period: u64 = arg
                .strip_prefix("lapic_timer_period=")
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                [1_000_000, 4_000_000, 3_333_333, 10_000_000].contains(&period),
                "{arg}"
            );
        }
        assert_eq!(lapic_timer_arg(Path::new("/nonexistent/bzImage")), None);
    }

    #[test]
    fn names() {
        assert_eq!(Qemu { accel: Accel::Tcg }.name(), "qemu:tcg");
        assert_eq!(Qemu { accel: Accel::Kvm }.name(), "qemu:kvm");
        assert_eq!(Qemu { accel: Accel::Auto }.name(), "qemu");
    }
}
