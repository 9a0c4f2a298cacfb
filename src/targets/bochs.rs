//! `bochs`: the agent as init of a Bochs guest (Debian's `bochs`, an x86 PC
//! emulator that interprets every instruction), booting the same kernel and
//! initramfs as `qemu` ([`qemu::kernel`], [`initramfs::cached`]).
//!
//! - boot: Bochs has no direct kernel boot. virtmark builds a boot disk per
//!   instance: a FAT file system on a flat image (formatted and filled with
//!   mtools, SYSLINUX installed with `syslinux --install`, all without
//!   mounting), holding the kernel, the initramfs and a `syslinux.cfg` with the
//!   kernel command line. Bochs's BIOS boots it as its first ATA disk; the guest
//!   never reads it after the boot loader (it loads no disk driver).
//! - agent channel: the guest's first serial port (COM1, `/dev/ttyS0`) on a
//!   pseudo-terminal virtmark opens (Bochs's `mode=term`), raw on both sides;
//!   the kernel console is COM2 (`ttyS1`) in a file next to the agent's log.
//! - display: Debian builds Bochs without its `nogui` library; the `rfb` one
//!   (VNC) is used with no wait for a client. It listens on every address, so
//!   Bochs runs in a network namespace of its own (recorded in the ledger),
//!   where nothing can reach it; the guest has no NIC (network workloads are
//!   not available on this target).
//! - scratch: no disk; the agent's scratch is the guest's `/tmp` (tmpfs, in
//!   guest memory). The target is for CPU and memory workloads.
//! - size: `megs:` from [`StartEnv::memory`]; one CPU (Bochs emulates every
//!   CPU of a guest on one host thread, so more would only share it); the CPU
//!   model is an x86-64 one ([`CPU_MODEL`]).
//! - time: a workload times itself with the guest's clock, so that clock must
//!   follow host time. Bochs advances the guest's TSC, HPET, ACPI PM timer and
//!   local APIC timer by emulated instructions, whatever its `clock:` setting
//!   (the guest kernel, told 3 GHz by the CPU model's CPUID, saw 1 s pass in
//!   158 s of host time); only the devices on its virtual timer, the PIT and
//!   the CMOS clock, follow host time with `clock: sync=realtime`. So the
//!   guest keeps time by PIT ticks ([`CLOCK_ARGS`]: jiffies as clock source,
//!   its tick from the PIT), and `CLOCK_MONOTONIC` in the guest advances with
//!   host time at the tick's resolution (4 ms at the Debian kernel's HZ=250).
//! - Debian's Bochs is built with its debugger, which stops before the first
//!   instruction: a command file (`-rc`) says `continue`.
//!
//! A run's deadline ([`crate::plan`] `run.deadline`) applies as everywhere: a
//! workload that Bochs cannot finish within it is recorded DNR ("deadline").

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::qemu::{self, Phases, VmTeardown};
use super::{initramfs, netns, tools, Driver, Family, Guard, Instance, StartEnv};

/// The Bochs binary (Debian's `bochs` is a shell wrapper around it).
pub const BOCHS: &str = "bochs-bin";

/// Bochs's BIOS (Debian package bochsbios).
pub const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";

/// The VGA BIOS (Debian package vgabios).
pub const VGABIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// The emulated CPU: an x86-64 model of Bochs's list (`bochs -help cpu`).
pub const CPU_MODEL: &str = "corei7_skylake_x";

/// Disk geometry of the boot image: heads and sectors per track (cylinders
/// follow from the size).
const HEADS: u64 = 16;
const SECTORS: u64 = 63;
const CYLINDER_BYTES: u64 = HEADS * SECTORS * 512;

/// The Bochs driver.
pub struct Bochs;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["bochs"],
    // Very slow (an interpreter): run only when named.
    not_default: &["bochs"],
    make: |n| (n == "bochs").then(|| Ok(Box::new(Bochs) as Box<dyn Driver>)),
};

/// The guest kernel's time keeping on Bochs: the jiffies clock source (whose
/// ticks come from the PIT, which `clock: sync=realtime` runs on host time),
/// no local APIC timer and no HPET (both count emulated instructions), so the
/// PIT gives the tick. A clock source that is not high-resolution also keeps
/// the kernel in periodic-tick mode, so no tick is skipped when idle.
pub const CLOCK_ARGS: &str = "clocksource=jiffies nolapic_timer hpet=disable";

/// The kernel command line of a Bochs guest: the console on COM2, the agent
/// on COM1, its clock on host time ([`CLOCK_ARGS`]), no modules (the initramfs's are virtio drivers, for devices Bochs
/// does not have), scratch on the guest's /tmp; the guest powers off at the
/// end (Bochs exits on an ACPI power-off).
pub fn kernel_command_line() -> String {
    format!(
        "console=ttyS1 quiet panic=-1 i8042.noaux i8042.nokbd {CLOCK_ARGS} {} \
         rdinit=/virtmark virtmark.chan=/dev/ttyS0 {} -- agent --init",
        qemu::BOOT_ONLY_ARGS,
        qemu::extra_kernel_args(),
    )
}

/// The `syslinux.cfg` that boots `kernel` and `initrd` (names on the FAT
/// volume) with `append` at once.
pub fn syslinux_cfg(append: &str) -> String {
    format!(
        "DEFAULT virtmark\nPROMPT 0\nTIMEOUT 0\nLABEL virtmark\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND {append}\n"
    )
}

/// Cylinders of a boot image holding `payload` bytes of files (plus room for
/// the FAT, SYSLINUX and slack).
pub fn cylinders_for(payload: u64) -> u64 {
    (payload + (4 << 20)).div_ceil(CYLINDER_BYTES)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Build the boot disk at `path` (recorded in the ledger first): a FAT volume
/// with SYSLINUX, `kernel` as `/vmlinuz`, `initrd` as `/initrd` and a
/// `syslinux.cfg` booting them with `append`. Returns its cylinders.
pub fn boot_image(
    guard: &mut Guard,
    path: &Path,
    kernel: &Path,
    initrd: &Path,
    append: &str,
) -> Result<u64> {
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .with_context(|| format!("reading {}", p.display()))
    };
    let cylinders = cylinders_for(size(kernel)? + size(initrd)?);
    qemu::sparse_file(guard, path, cylinders * CYLINDER_BYTES)?;
    let img = path.as_os_str();
    run(
        Command::new("mformat")
            .arg("-i")
            .arg(img)
            .args(["-h", &HEADS.to_string(), "-s", &SECTORS.to_string()])
            .args(["-t", &cylinders.to_string(), "::"]),
        "mformat (Debian package mtools)",
    )?;
    let cfg = path.with_extension("cfg");
    std::fs::write(&cfg, syslinux_cfg(append))
        .with_context(|| format!("writing {}", cfg.display()))?;
    let copied = run(
        Command::new("mcopy")
            .arg("-i")
            .arg(img)
            .arg(kernel)
            .arg("::/vmlinuz"),
        "mcopy (kernel)",
    )
    .and_then(|()| {
        run(
            Command::new("mcopy")
                .arg("-i")
                .arg(img)
                .arg(initrd)
                .arg("::/initrd"),
            "mcopy (initramfs)",
        )
    })
    .and_then(|()| {
        run(
            Command::new("mcopy")
                .arg("-i")
                .arg(img)
                .arg(&cfg)
                .arg("::/syslinux.cfg"),
            "mcopy (syslinux.cfg)",
        )
    });
    let _ = std::fs::remove_file(&cfg);
    copied?;
    run(
        Command::new("syslinux").arg("--install").arg(img),
        "syslinux --install (Debian package syslinux)",
    )?;
    Ok(cylinders)
}

/// What a `bochsrc` is made of.
pub struct Config<'a> {
    /// Guest memory, MiB.
    pub megs: u64,
    /// The boot disk and its cylinders.
    pub disk: (&'a Path, u64),
    /// The pseudo-terminal of COM1 (`None`: COM1 unconnected).
    pub com1: Option<&'a Path>,
    /// The kernel console's file (COM2).
    pub console: &'a Path,
    /// Bochs's own log.
    pub log: &'a Path,
}

/// The `bochsrc` text.
pub fn bochsrc(c: &Config) -> String {
    let com1 = match c.com1 {
        Some(p) => format!("com1: enabled=1, mode=term, dev={}\n", p.display()),
        None => "com1: enabled=1, mode=null\n".to_string(),
    };
    format!(
        "megs: {megs}\n\
         cpu: model={CPU_MODEL}, count=1\n\
         clock: sync=realtime, time0=local\n\
         romimage: file={BIOS}\n\
         vgaromimage: file={VGABIOS}\n\
         display_library: rfb, options=\"timeout=0\"\n\
         vga: update_freq=1\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=disk, path={disk}, mode=flat, cylinders={cyl}, heads={HEADS}, spt={SECTORS}\n\
         boot: disk\n\
         {com1}\
         com2: enabled=1, mode=file, dev={console}\n\
         log: {log}\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=ignore\n\
         debug: action=ignore\n\
         speaker: enabled=0\n\
         sound: driver=dummy\n",
        megs = c.megs,
        disk = c.disk.0.display(),
        cyl = c.disk.1,
        console = c.console.display(),
        log = c.log.display(),
    )
}

/// The pseudo-terminal master: reads end (`Ok(0)`) when Bochs, which holds
/// the only other end, is gone (Linux answers EIO then).
struct PtyMaster(File);

impl Read for PtyMaster {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            r => r,
        }
    }
}

/// What the guest's init writes on the console once the agent serves on its
/// channel ([`super::guest_init`]).
const SERVING: &str = "virtmark init: serving";

/// How long the first request may wait for the guest to serve.
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// The host's side of COM1. What is written is held back until the guest's
/// agent serves: bytes that reach the emulated UART before the guest opened
/// its port are dropped by the guest kernel, so a request sent at start
/// (`hello`) would be lost. The guest says on its console when it serves.
struct UntilServing {
    out: File,
    console: PathBuf,
    pid: u32,
    ready: bool,
}

impl UntilServing {
    fn wait(&mut self) -> std::io::Result<()> {
        let t = std::time::Instant::now();
        while !self.ready {
            let text = std::fs::read(&self.console).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(SERVING) {
                self.ready = true;
            } else if !alive(self.pid) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    format!(
                        "bochs exited before the guest's agent served (see {})",
                        self.console.display()
                    ),
                ));
            } else if t.elapsed() > BOOT_LIMIT {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the guest's agent did not serve within {} s",
                        BOOT_LIMIT.as_secs()
                    ),
                ));
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl std::io::Write for UntilServing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wait()?;
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Whether process `pid` (a child not yet reaped) still runs.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Duplicate `fd` to a descriptor ≥ 10 (close-on-exec), so that the child's
/// dup2 to 3 never lands on its own source.
fn high_fd(fd: &OwnedFd) -> Result<OwnedFd> {
    let n = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .context("duplicating the terminal descriptor")?;
    // SAFETY: fcntl just returned this new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

impl Driver for Bochs {
    fn name(&self) -> &str {
        "bochs"
    }

    fn class(&self) -> &'static str {
        "emulation (Bochs, an interpreting x86 PC emulator)"
    }

    fn available(&self) -> Result<(), String> {
        tools::need(BOCHS, "bochs")?;
        if !Path::new(BIOS).is_file() {
            return Err(format!("{BIOS} is missing (Debian package bochsbios)"));
        }
        if !Path::new(VGABIOS).is_file() {
            return Err(format!("{VGABIOS} is missing (Debian package vgabios)"));
        }
        if !Path::new("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so").exists() {
            return Err("Bochs's rfb display library is missing (Debian package bochs)".into());
        }
        tools::need("mformat", "mtools")?;
        tools::need("mcopy", "mtools")?;
        tools::need("syslinux", "syslinux")?;
        netns::check_available()?;
        let k = qemu::kernel()?;
        let m = initramfs::module_root_for(&k);
        if !m.join("modules.dep").is_file() {
            return Err(format!(
                "the modules of the guest kernel {} are missing ({}/modules.dep)",
                k.display(),
                m.display()
            ));
        }
        let kernel = k.to_string_lossy();
        super::verify::proven(self.name(), &[BOCHS, "syslinux", BIOS, &kernel], |env| {
            self.start(env)
        })
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let k = qemu::kernel().map_err(crate::error::user)?;
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(2));
        let dir = env.scratch.clone();
        guard.create_dir(&dir)?;
        let mut phases = Phases::new();
        // The initramfs `qemu` boots, byte for byte.
        let initrd = initramfs::cached(
            env.exe,
            &initramfs::module_root_for(&k),
            initramfs::VIRTIO_MODULES,
        )?;
        phases.mark("initramfs");
        let disk = dir.join("boot.img");
        let cylinders = boot_image(&mut guard, &disk, &k, &initrd, &kernel_command_line())?;
        phases.mark("boot image");
        // A namespace of its own for the VNC server Bochs's display opens.
        let ns = format!("virtmark-{}-b", env.tag);
        netns::create_netns(&mut guard, &ns)?;
        phases.mark("namespace");

        // COM1 on a pseudo-terminal, raw: no echo, no newline translation.
        let pty = nix::pty::openpty(None, None).context("opening a pseudo-terminal")?;
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).context("terminal attributes")?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
            .context("making the terminal raw")?;
        let slave_path: PathBuf =
            std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
                .context("naming the pseudo-terminal")?;
        let slave = high_fd(&pty.slave)?;
        drop(pty.slave);

        // Absolute: Bochs runs in the instance directory, and the run directory
        // (`--out`) may be relative to virtmark's.
        let agent_log = std::path::absolute(&env.log)
            .with_context(|| format!("locating {}", env.log.display()))?;
        let console = agent_log.with_extension("console.log");
        let bochs_log = agent_log.with_extension("bochs.log");
        let rc = dir.join("bochsrc");
        std::fs::write(
            &rc,
            bochsrc(&Config {
                megs: qemu::mib(env.memory),
                disk: (&disk, cylinders),
                com1: Some(&slave_path),
                console: &console,
                log: &bochs_log,
            }),
        )
        .with_context(|| format!("writing {}", rc.display()))?;
        let cmds = dir.join("debugger.rc");
        std::fs::write(&cmds, "continue\n")
            .with_context(|| format!("writing {}", cmds.display()))?;
        let log = phases.log(&env.log, self.name())?;

        let mut cmd = Command::new(BOCHS);
        cmd.arg("-q")
            .arg("-f")
            .arg(&rc)
            .arg("-rc")
            .arg(&cmds)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("log")?))
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        netns::spawn_in_netns(&mut cmd, &ns)?;
        let keep: RawFd = slave.as_raw_fd();
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only calls dup2(2) on a
            // descriptor opened before the fork; it allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    // Bochs holds the terminal from its first instruction on, so
                    // the master never reads as closed before Bochs opens COM1.
                    if nix::libc::dup2(keep, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(cpus) = &env.cpuset {
            crate::sys::pin_to(&mut cmd, cpus)?;
        }
        let child = cmd.spawn().with_context(|| format!("starting {BOCHS}"))?;
        drop(slave);
        let master = File::from(pty.master);
        let to_agent = UntilServing {
            out: master.try_clone().context("duplicating the terminal")?,
            console,
            pid: child.id(),
            ready: false,
        };
        let teardown = VmTeardown::new(child, guard)?;
        Ok(Instance {
            to_agent: Box::new(to_agent),
            from_agent: Box::new(PtyMaster(master)),
            peer: None,
            teardown: Box::new(teardown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_image_holds_whole_cylinders_with_room() {
        assert_eq!(CYLINDER_BYTES, 516_096);
        let c = cylinders_for(38 << 20);
        assert!(c * CYLINDER_BYTES >= (38 << 20) + (4 << 20));
        assert!((c - 1) * CYLINDER_BYTES < (38 << 20) + (4 << 20));
    }

    #[test]
    fn the_guest_talks_on_com1_and_logs_on_com2() {
        let line = kernel_command_line();
        assert!(line.contains("console=ttyS1"), "{line}");
        assert!(line.contains("virtmark.chan=/dev/ttyS0"), "{line}");
        assert!(line.ends_with("-- agent --init"), "{line}");
        // Time from the PIT, which Bochs runs on host time.
        assert!(line.contains("clocksource=jiffies nolapic_timer"), "{line}");
        // No modules to load: the initramfs's are for virtio devices.
        assert!(!line.contains("virtmark.modules"), "{line}");
        let cfg = syslinux_cfg(&line);
        assert!(cfg.contains("APPEND console=ttyS1"));
        let rc = bochsrc(&Config {
            megs: 512,
            disk: (Path::new("/d/boot.img"), 90),
            com1: Some(Path::new("/dev/pts/7")),
            console: Path::new("/l/console.log"),
            log: Path::new("/l/bochs.log"),
        });
        assert!(rc.contains("megs: 512\n"));
        assert!(rc.contains("com1: enabled=1, mode=term, dev=/dev/pts/7\n"));
        assert!(rc.contains("cylinders=90, heads=16, spt=63"));
        assert!(rc.contains(&format!("cpu: model={CPU_MODEL}")));
        assert!(rc.contains("clock: sync=realtime"));
    }
}
