//! `libvirt`, `libvirt:<domain>`: the agent in a QEMU guest managed by libvirt,
//! as operators run QEMU/KVM.
//!
//! `libvirt` boots the same kernel and initramfs as `qemu` (the agent as init)
//! in a transient domain (`virsh create` of XML virtmark writes) of a private
//! libvirtd that virtmark starts for the instance, owns and removes:
//!
//! - the daemon (Debian's libvirtd, privileged) runs in a private mount
//!   namespace in which `/run` is a tmpfs of its own and `/etc/libvirt`,
//!   `/var/lib/libvirt` and `/var/log/libvirt` are directories of the
//!   instance's scratch, so its configuration, state, domain logs and sockets
//!   are virtmark's and nothing reaches a system libvirtd's files;
//!   `/var/cache/libvirt` is a directory of virtmark's cache, so the QEMU
//!   capabilities libvirtd probes at its first start (about 6 s here) are kept
//!   for the next one (libvirtd checks them against its QEMU and itself);
//! - its configuration: its sockets in the scratch (`unix_sock_dir`), no
//!   authentication on them (root only: the directory is mode 0700); QEMU runs
//!   as root, without security driver, cgroups, private `/dev` or virtlogd, so
//!   the guest and everything libvirtd forks stays in the daemon's cgroup;
//! - it runs in a network namespace virtmark creates and in a cgroup of
//!   virtmark's; teardown and `virtmark cleanup` destroy the domain, kill the
//!   cgroup as a whole and delete the namespace;
//! - the domain: QEMU TCG here, KVM where a test boot under KVM works (the
//!   `qemu` driver's probe: this host's nested kvm_pvm hangs stock kernels, so
//!   `libvirt` says why and uses TCG); direct kernel boot with qboot; the agent
//!   channel a `<channel type='unix'>` (virtio-serial port `virtmark`, as `qemu`
//!   names it) whose socket lies in the scratch; the scratch disk a sparse ext4
//!   image as `qemu`'s; a NIC (`<interface type='ethernet'>` on a tap virtmark
//!   made in the daemon's namespace, `managed='no'`) only when the run has
//!   network workloads, the peer listening on the tap's address.
//!
//! `libvirt:<domain>` is an existing, running domain of the libvirtd at
//! `$VIRTMARK_LIBVIRT_URI` (default `qemu:///system`) whose agent is reached
//! over its channel: the domain must have a `<channel type='unix'>` with target
//! `<target type='virtio' name='virtmark'/>`, and the guest must run the agent
//! on it (`virtmark agent --init` as init, or `virtmark agent` with stdin and
//! stdout on `/dev/virtio-ports/virtmark` as a service, see docs/targets.md).
//! virtmark creates nothing for it and never stops or changes the domain.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cgroup::{self, Limits};
use super::ledger::{Resource, LIBVIRT_SOCKET};
use super::qemu::{self, Phases};
use super::{netns, peer, tools, Driver, Family, Guard, Instance, StartEnv, TargetKind, Teardown};
use crate::report::svg::esc;

/// The libvirt driver: a private daemon and a transient domain, or an existing
/// domain.
pub struct Libvirt {
    /// The target name (`libvirt`, `libvirt:<domain>`).
    name: String,
    /// The existing domain, for `libvirt:<domain>`.
    domain: Option<String>,
}

/// Its names.
pub const FAMILY: Family = Family {
    names: &["libvirt", "libvirt:<domain>"],
    // QEMU again (TCG here): `qemu:tcg` stands for it in the default run.
    not_default: &["libvirt"],
    make: |n| {
        if n == "libvirt" {
            return Some(Ok(Box::new(Libvirt {
                name: n.into(),
                domain: None,
            }) as Box<dyn Driver>));
        }
        let d = n.strip_prefix("libvirt:")?;
        Some(check_domain_name(d).map(|()| {
            Box::new(Libvirt {
                name: n.into(),
                domain: Some(d.into()),
            }) as Box<dyn Driver>
        }))
    },
};

/// The placeholder of the pattern name, listed by `virtmark targets`.
const PATTERN: &str = "<domain>";

/// A domain name virsh takes as a name: not empty, no `/`, not an option.
fn check_domain_name(d: &str) -> Result<(), String> {
    if d == PATTERN {
        return Ok(());
    }
    if d.is_empty() || d.contains('/') || d.starts_with('-') || d.chars().any(char::is_control) {
        return Err(format!(
            "bad libvirt target \"libvirt:{d}\": expected libvirt:NAME, the name of a running domain"
        ));
    }
    Ok(())
}

/// The daemon.
const LIBVIRTD: &str = "libvirtd";
/// Its client.
const VIRSH: &str = "virsh";
/// How long the private daemon may take to listen on its socket.
const DAEMON_DEADLINE: Duration = Duration::from_secs(30);
/// How long `virsh create` may take (a first start probes QEMU: ~6 s here).
const CREATE_DEADLINE: Duration = Duration::from_secs(120);

/// The connection URI of a private daemon whose sockets are in `sock_dir`.
pub fn private_uri(sock_dir: &Path) -> String {
    format!(
        "qemu:///system?socket={}",
        sock_dir.join(LIBVIRT_SOCKET).display()
    )
}

/// The libvirt URI of `libvirt:<domain>`: `$VIRTMARK_LIBVIRT_URI`, else
/// `qemu:///system`.
pub fn user_uri() -> String {
    std::env::var("VIRTMARK_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".into())
}

/// `virsh -q -c URI`, reading no user's default URI.
fn virsh(uri: &str) -> Command {
    let mut cmd = Command::new(VIRSH);
    cmd.args(["-q", "-c", uri])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("VIRSH_DEFAULT_CONNECT_URI")
        .stdin(Stdio::null());
    cmd
}

/// Run `cmd` and return its standard output, or fail with its first error line.
fn output(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{what}: {}",
            err.lines()
                .map(|l| l.trim().trim_start_matches("error: "))
                .find(|l| !l.is_empty())
                .unwrap_or("failed without a message")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn esc_path(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

/// What the transient domain is made of.
pub struct DomainSpec<'a> {
    /// Domain name.
    pub name: &'a str,
    /// KVM (else TCG).
    pub kvm: bool,
    /// vCPUs.
    pub cpus: usize,
    /// Host CPUs the vCPUs and QEMU's threads are pinned to, when pinned.
    pub cpuset: Option<&'a [usize]>,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel to boot (PVH vmlinux or bzImage).
    pub kernel: &'a Path,
    /// virtmark's initramfs.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Firmware (qboot), when installed.
    pub firmware: Option<&'a Path>,
    /// The scratch disk image (`/dev/vda`).
    pub scratch_image: &'a Path,
    /// The read-only toolchain image (`/dev/vdb`), when a workload compiles.
    pub toolchain_image: Option<&'a Path>,
    /// Where the guest's console (ttyS0) is written.
    pub console: &'a Path,
    /// The host end of the agent channel (a unix socket QEMU listens on).
    pub channel: &'a Path,
    /// The tap of the guest's NIC, when the run has network workloads.
    pub tap: Option<&'a str>,
}

/// The domain XML of `spec`: what `qemu` runs, as libvirt describes it.
pub fn domain_xml(spec: &DomainSpec) -> String {
    let mut x = String::new();
    let ty = if spec.kvm { "kvm" } else { "qemu" };
    x.push_str(&format!("<domain type='{ty}'>\n"));
    x.push_str(&format!("  <name>{}</name>\n", esc(spec.name)));
    x.push_str(&format!(
        "  <memory unit='MiB'>{}</memory>\n",
        spec.memory_mib
    ));
    match spec.cpuset {
        Some(cpus) if !cpus.is_empty() => {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            x.push_str(&format!(
                "  <vcpu placement='static' cpuset='{}'>{}</vcpu>\n",
                list.join(","),
                spec.cpus.max(1)
            ));
        }
        _ => x.push_str(&format!("  <vcpu>{}</vcpu>\n", spec.cpus.max(1))),
    }
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    if let Some(fw) = spec.firmware {
        x.push_str(&format!(
            "    <loader type='rom'>{}</loader>\n",
            esc_path(fw)
        ));
    }
    x.push_str(&format!(
        "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n  </os>\n",
        esc_path(spec.kernel),
        esc_path(spec.initrd),
        esc(spec.cmdline)
    ));
    // ACPI on: libvirt 9.0 would otherwise pass -no-acpi, which QEMU 9+ refuses.
    x.push_str("  <features><acpi/></features>\n");
    if spec.kvm {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    } else {
        x.push_str("  <cpu mode='maximum'/>\n");
    }
    x.push_str("  <clock offset='utc'/>\n");
    // The agent reboots the guest when it is done: the domain ends then.
    x.push_str(
        "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  \
         <on_crash>destroy</on_crash>\n",
    );
    x.push_str("  <devices>\n");
    x.push_str(&format!(
        "    <emulator>/usr/bin/{}</emulator>\n",
        qemu::QEMU
    ));
    x.push_str(&format!(
        "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
         <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n",
        esc_path(spec.scratch_image)
    ));
    if let Some(img) = spec.toolchain_image {
        x.push_str(&format!(
            "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vdb' bus='virtio'/><readonly/></disk>\n",
            esc_path(img)
        ));
    }
    x.push_str(&format!(
        "    <serial type='file'><source path='{}'/><target port='0'/></serial>\n",
        esc_path(spec.console)
    ));
    x.push_str(&format!(
        "    <channel type='unix'><source mode='bind' path='{}'/>\
         <target type='virtio' name='virtmark'/></channel>\n",
        esc_path(spec.channel)
    ));
    if let Some(tap) = spec.tap {
        // No iPXE option ROM, as `qemu` (romfile=).
        x.push_str(&format!(
            "    <interface type='ethernet'><target dev='{}' managed='no'/>\
             <model type='virtio'/><rom enabled='no'/></interface>\n",
            esc(tap)
        ));
    }
    x.push_str(
        "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n  </devices>\n",
    );
    x.push_str("</domain>\n");
    x
}

/// The private daemon's `libvirtd.conf`.
fn libvirtd_conf(sock_dir: &Path) -> String {
    format!(
        "# virtmark's private libvirtd: sockets in the instance's scratch (mode 0700).\n\
         unix_sock_dir = \"{}\"\n\
         unix_sock_rw_perms = \"0700\"\n\
         unix_sock_ro_perms = \"0700\"\n\
         auth_unix_rw = \"none\"\n\
         auth_unix_ro = \"none\"\n\
         log_outputs = \"3:stderr\"\n",
        sock_dir.display()
    )
}

/// The private daemon's `qemu.conf`: QEMU as root, without security driver,
/// cgroups, private `/dev` or virtlogd.
const QEMU_CONF: &str = "# virtmark's private libvirtd: QEMU stays in the daemon's cgroup.\n\
user = \"root\"\n\
group = \"root\"\n\
dynamic_ownership = 0\n\
remember_owner = 0\n\
security_driver = \"none\"\n\
cgroup_controllers = [ ]\n\
namespaces = [ ]\n\
stdio_handler = \"file\"\n";

/// Which accelerator the domain uses, saying once why when TCG.
fn use_kvm() -> bool {
    match qemu::kvm_verdict() {
        Ok(()) => true,
        Err(e) => {
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| eprintln!("virtmark: libvirt: using TCG: {e}"));
            false
        }
    }
}

/// The mount points the private daemon gets of its own.
const MOUNT_POINTS: &[&str] = &[
    "/etc/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
];

/// The CPU the daemon runs on: the first of the instance's pinned CPUs, else
/// the first this process may use.
fn daemon_cpu(env: &StartEnv) -> usize {
    if let Some(c) = env.cpuset.as_ref().and_then(|c| c.first()) {
        return *c;
    }
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .and_then(|set| (0..nix::sched::CpuSet::count()).find(|&c| set.is_set(c).unwrap_or(false)))
        .unwrap_or(0)
}

/// A private libvirtd virtmark started.
pub struct Daemon {
    /// Its connection URI ([`private_uri`]).
    pub uri: String,
    /// The directory of its sockets.
    pub sock_dir: PathBuf,
    /// Its `/var/log/libvirt` (the domains' QEMU logs are in `qemu/`).
    pub log_dir: PathBuf,
    /// Its process id.
    pub pid: u32,
}

/// Start a private libvirtd (see the module documentation) with its
/// configuration, state, logs and sockets under `base` (which must exist), in
/// the network namespace `ns` (which must exist), in a cgroup
/// `virtmark-<cgroup_tag>` of its own with all it forks, on host CPU `cpu`, its
/// output in `log`; wait until it listens. Everything is recorded in `guard`,
/// which stops the daemon at teardown.
pub fn start_daemon(
    guard: &mut Guard,
    base: &Path,
    ns: &str,
    cgroup_tag: &str,
    cpu: usize,
    log: &Path,
) -> Result<Daemon> {
    let (etc, lib, log_dir, sock_dir) = (
        base.join("etc"),
        base.join("lib"),
        base.join("log"),
        base.join("s"),
    );
    for d in [&etc, &lib, &log_dir, &sock_dir] {
        super::ledger::create_private_dir(d)
            .with_context(|| format!("creating {}", d.display()))?;
    }
    let sock = sock_dir.join(LIBVIRT_SOCKET);
    // The longest of its sockets; a unix socket's path has at most 107 bytes.
    let admin = sock_dir.join("libvirt-admin-sock");
    if admin.as_os_str().len() > 107 {
        bail!(
            "the socket path {} is too long for a unix socket: set VIRTMARK_SCRATCH to a shorter directory",
            admin.display()
        );
    }
    let caps = super::cache::dir()?.join("libvirt");
    std::fs::create_dir_all(&caps).with_context(|| format!("creating {}", caps.display()))?;
    std::fs::write(etc.join("libvirtd.conf"), libvirtd_conf(&sock_dir))
        .context("writing libvirtd.conf")?;
    std::fs::write(etc.join("qemu.conf"), QEMU_CONF).context("writing qemu.conf")?;

    let cg = cgroup::create(guard, cgroup_tag, &Limits::host_wide())?;
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(LIBVIRTD);
    cmd.arg("--config")
        .arg(etc.join("libvirtd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C");
    crate::sys::die_with_parent(&mut cmd);
    let procs = cg.procs_files()?;
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec: write(2) on files opened before the fork.
        unsafe {
            cmd.pre_exec(move || cgroup::join_all(&procs));
        }
    }
    netns::spawn_in_netns(&mut cmd, ns)?;
    let binds: Vec<(PathBuf, &str)> = vec![
        (etc, MOUNT_POINTS[0]),
        (lib, MOUNT_POINTS[1]),
        (caps, MOUNT_POINTS[2]),
        (log_dir.clone(), MOUNT_POINTS[3]),
    ];
    super::oci::private_mounts(&mut cmd, &["/run".to_string()], &binds)?;
    // On one CPU: libvirtd checks its cached QEMU capabilities against the
    // CPUID of the CPU it runs on (APIC ids differ between CPUs), and probes
    // QEMU again (about 4 s here) whenever that CPU is another. QEMU itself is
    // not bound by it: libvirt gives a domain every host CPU, or its `cpuset`.
    crate::sys::pin_to(&mut cmd, &[cpu])?;
    let daemon = cmd.spawn().context("starting libvirtd")?;
    let pid = daemon.id();
    guard.adopt(daemon)?;
    super::tools::wait_for_daemon(
        "libvirtd",
        pid,
        log,
        DAEMON_DEADLINE,
        || UnixStream::connect(&sock).is_ok(),
        |l| l.contains(": error :"),
    )?;
    Ok(Daemon {
        uri: private_uri(&sock_dir),
        sock_dir,
        log_dir,
        pid,
    })
}

/// Connect to the agent channel's socket, waiting up to `limit` for it.
fn connect(path: &Path, limit: Duration) -> Result<UnixStream> {
    let t = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if t.elapsed() > limit => {
                return Err(e)
                    .with_context(|| format!("connecting to the agent channel {}", path.display()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The agent's streams on a connected channel.
fn streams(s: UnixStream) -> Result<super::Pipes> {
    let to = s.try_clone().context("duplicating the agent channel")?;
    Ok((Box::new(to), Box::new(s)))
}

impl Libvirt {
    /// `libvirt`: a private daemon and a transient domain.
    fn start_private(&self, env: &StartEnv) -> Result<Instance> {
        let kvm = use_kvm();
        let k = qemu::kernel().map_err(crate::error::user)?;
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(3));
        let mut phases = Phases::new();
        guard.create_dir(&env.scratch)?;
        let base = std::fs::canonicalize(&env.scratch)
            .with_context(|| format!("resolving {}", env.scratch.display()))?;
        let channel = base.join("agent.sock");
        if channel.as_os_str().len() > 100 {
            bail!(
                "the socket path {} is too long for a unix socket: set VIRTMARK_SCRATCH to a shorter directory",
                channel.display()
            );
        }
        let (initrd, boot_kernel) = qemu::boot_files(env, &k, &mut phases)?;
        let image = base.join("scratch.img");
        qemu::scratch_image(&mut guard, &image, qemu::SCRATCH_IMAGE_BYTES)?;
        phases.mark("scratch image");
        let tools = qemu::toolchain_disk(env, &mut phases)?;

        // The daemon's network namespace: the tap and the peer's, when the run
        // has network workloads.
        let site = match env.peer {
            Some(_) => Some(netns::tap_site(&mut guard, &env.tag, env.index)?),
            None => None,
        };
        let ns = match &site {
            Some(site) => site.ns.clone(),
            None => {
                let ns = format!("virtmark-{}-l", env.tag);
                netns::create_netns(&mut guard, &ns)?;
                ns
            }
        };
        let peer = match &site {
            Some(site) => peer::start_for(&mut guard, env, site.peer_ip, &site.ns)?,
            None => None,
        };
        phases.mark("network");

        let daemon = start_daemon(
            &mut guard,
            &base,
            &ns,
            &format!("{}l", env.tag),
            daemon_cpu(env),
            &env.log.with_extension("libvirtd.log"),
        )?;
        phases.mark("daemon");

        let name = format!("virtmark-{}", env.tag);
        let append = qemu::kernel_cmdline(&k, site.as_ref(), tools.is_some());
        let console = env.log.with_extension("console.log");
        let qboot = Path::new(qemu::QBOOT);
        let xml = domain_xml(&DomainSpec {
            name: &name,
            kvm,
            cpus: env.cpus,
            cpuset: env.cpuset.as_deref(),
            memory_mib: qemu::mib(env.memory),
            kernel: &boot_kernel,
            initrd: &initrd,
            cmdline: &append,
            firmware: qboot.is_file().then_some(qboot),
            scratch_image: &image,
            toolchain_image: tools.as_deref(),
            console: &console,
            channel: &channel,
            tap: site.as_ref().map(|s| s.tap.as_str()),
        });
        let xml_path = base.join("domain.xml");
        std::fs::write(&xml_path, &xml)
            .with_context(|| format!("writing {}", xml_path.display()))?;
        let uri = daemon.uri.clone();
        let mut log = phases.log(&env.log, &self.name)?;
        let created = Instant::now();
        guard
            .create(
                Resource::Container {
                    runtime: VIRSH.into(),
                    id: name.clone(),
                    root: Some(daemon.sock_dir.clone()),
                },
                || {
                    let mut c = virsh(&uri);
                    c.arg("create").arg(&xml_path);
                    run_with_deadline(c, &base.join("virsh.err"), CREATE_DEADLINE, "virsh create")
                },
            )
            .map_err(|e| {
                let qlog = daemon.log_dir.join("qemu").join(format!("{name}.log"));
                let tail = std::fs::read_to_string(&qlog).unwrap_or_default();
                let last = tail.lines().last().unwrap_or("").to_string();
                if last.is_empty() {
                    e
                } else {
                    e.context(format!("{}: {last}", qlog.display()))
                }
            })?;
        // QEMU's pid, recorded: it is the daemon's child, not ours.
        let pidfile = PathBuf::from(format!(
            "/proc/{}/root/run/libvirt/qemu/{name}.pid",
            daemon.pid
        ));
        let qemu_pid: Option<u32> = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let vm = match qemu_pid {
            Some(pid) => Some(guard.ledger().record_process(pid)?),
            None => None,
        };
        let _ = writeln!(
            log,
            "virtmark: libvirt domain {name} created in {:.0} ms, QEMU pid {qemu_pid:?}",
            created.elapsed().as_secs_f64() * 1e3
        );
        let s = connect(&channel, Duration::from_secs(10))?;
        let (to_agent, from_agent) = streams(s)?;
        Ok(Instance {
            to_agent,
            from_agent,
            peer,
            teardown: Box::new(DomainTeardown {
                uri,
                name,
                vm,
                guard: Some(guard),
            }),
        })
    }

    /// `libvirt:<domain>`: connect to the existing domain's channel.
    fn start_existing(&self, domain: &str, env: &StartEnv) -> Result<Instance> {
        if env.cpuset.is_some() {
            bail!(
                "{}: cannot pin (scale --pin): the domain's CPUs are its own",
                self.name
            );
        }
        let uri = user_uri();
        let path = existing_channel(&uri, domain).map_err(crate::error::user)?;
        let s = connect(&path, Duration::from_secs(5))?;
        let (to_agent, from_agent) = streams(s)?;
        Ok(Instance {
            to_agent,
            from_agent,
            peer: None,
            teardown: Box::new(Guard::new(env.ledger.clone())),
        })
    }
}

/// Run `cmd` to completion within `limit`, failing with its error line.
/// Its standard error goes to `err_path`.
fn run_with_deadline(mut cmd: Command, err_path: &Path, limit: Duration, what: &str) -> Result<()> {
    let err = File::create(err_path).with_context(|| format!("creating {}", err_path.display()))?;
    cmd.stdout(Stdio::null()).stderr(Stdio::from(err));
    crate::sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("running {what}"))?;
    let t = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t.elapsed() > limit {
            crate::sys::stop_child(&mut child, Duration::from_secs(1));
            bail!("{what} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !st.success() {
        let err = std::fs::read_to_string(err_path).unwrap_or_default();
        bail!(
            "{what}: {}",
            err.lines()
                .map(|l| l.trim().trim_start_matches("error: "))
                .filter(|l| !l.is_empty() && !l.starts_with("Failed to create domain"))
                .collect::<Vec<_>>()
                .join(": ")
        );
    }
    Ok(())
}

/// The host socket of the `virtmark` channel of the running domain `domain` at
/// `uri`; `Err` says what the domain lacks.
pub fn existing_channel(uri: &str, domain: &str) -> Result<PathBuf, String> {
    let mut c = virsh(uri);
    c.args(["domstate", domain]);
    let state =
        output(c, &format!("virsh -c {uri} domstate {domain}")).map_err(|e| format!("{e:#}"))?;
    if state.trim() != "running" {
        return Err(format!(
            "domain {domain} at {uri} is {}, not running: start it first",
            state.trim()
        ));
    }
    let mut c = virsh(uri);
    c.args([
        "dumpxml",
        domain,
        "--xpath",
        "//devices/channel[@type='unix'][target/@type='virtio'][target/@name='virtmark']/source/@path",
    ]);
    let out = output(c, &format!("virsh -c {uri} dumpxml {domain}"))
        .map_err(|e| format!("{e:#} (virsh dumpxml --xpath needs libvirt 8.5 or newer)"))?;
    let path = out
        .split_once("path=\"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(p, _)| {
            p.replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        });
    match path {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(format!(
            "domain {domain} has no agent channel: it needs <channel type='unix'><source \
             mode='bind'/><target type='virtio' name='virtmark'/></channel> (see docs/targets.md)"
        )),
    }
}

/// Teardown of a transient domain: give the guest a moment to power off by
/// itself (the agent reboots it after `shutdown`, and the domain ends), then
/// destroy the domain and stop QEMU if it still runs, then the daemon and the
/// rest the guard holds.
struct DomainTeardown {
    uri: String,
    name: String,
    vm: Option<Resource>,
    guard: Option<Guard>,
}

impl Teardown for DomainTeardown {
    fn teardown(&mut self) -> Result<()> {
        let Some(mut guard) = self.guard.take() else {
            return Ok(());
        };
        let mut first = Ok(());
        if let Some(vm) = self.vm.take() {
            let gone = |r: &Resource| match r {
                Resource::Process { pid, start_time } => {
                    super::ledger::process_start_time(*pid) != Some(*start_time)
                }
                _ => true,
            };
            let t = Instant::now();
            while t.elapsed() < qemu::POWER_OFF_WAIT && !gone(&vm) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !gone(&vm) {
                let mut c = virsh(&self.uri);
                c.args(["destroy", &self.name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let _ = c.status();
            }
            first = guard.ledger().remove(&vm);
        }
        let rest = guard.teardown();
        first.and(rest)
    }
}

impl Drop for DomainTeardown {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

impl Driver for Libvirt {
    fn name(&self) -> &str {
        &self.name
    }

    fn class(&self) -> &'static str {
        "QEMU under libvirt: KVM when it can boot a guest, else TCG (emulation)"
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Local(self.name.clone())
    }

    fn available(&self) -> Result<(), String> {
        tools::need(VIRSH, "libvirt-clients")?;
        match &self.domain {
            Some(d) if d == PATTERN => Err(format!(
                "give a domain: libvirt:NAME, a running domain of {} with a virtmark \
                 channel (checked when used)",
                user_uri()
            )),
            Some(d) => {
                let path = existing_channel(&user_uri(), d)?;
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => Ok(()),
                    _ => Err(format!(
                        "the agent channel of domain {d}, {}, is not a socket here",
                        path.display()
                    )),
                }
            }
            None => {
                tools::need_root("a private libvirtd in namespaces of virtmark's")?;
                tools::need(LIBVIRTD, "libvirt-daemon-system")?;
                tools::need(
                    qemu::QEMU,
                    "qemu-system-x86, from bookworm-backports on Debian 12",
                )?;
                let k = qemu::check_guest_kernel()?;
                cgroup::check_available()?;
                for p in MOUNT_POINTS {
                    if !Path::new(p).is_dir() {
                        return Err(format!(
                            "{p} is missing (Debian package libvirt-daemon-system): the private \
                             daemon's own directory is mounted there"
                        ));
                    }
                }
                let kernel = k.to_string_lossy();
                super::verify::proven(
                    &self.name,
                    &[LIBVIRTD, VIRSH, qemu::QEMU, "mkfs.ext4", &kernel],
                    |env| self.start(env),
                )
            }
        }
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        match &self.domain {
            None => self.start_private(env),
            Some(d) => self.start_existing(d, env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = (FAMILY.make)("libvirt").unwrap().unwrap();
        assert_eq!(d.name(), "libvirt");
        let d = (FAMILY.make)("libvirt:guest-1").unwrap().unwrap();
        assert_eq!(d.name(), "libvirt:guest-1");
        assert_eq!(d.kind(), TargetKind::Local("libvirt:guest-1".into()));
        assert!((FAMILY.make)("libvirt:").unwrap().is_err());
        assert!((FAMILY.make)("libvirt:-c").unwrap().is_err());
        assert!((FAMILY.make)("libvirt:a/b").unwrap().is_err());
        assert!((FAMILY.make)("libvirtd").is_none());
        let p = (FAMILY.make)("libvirt:<domain>").unwrap().unwrap();
        assert!(p.available().is_err());
    }

    #[test]
    fn the_domain_has_the_channel_disk_and_nic_qemu_has() {
        let spec = DomainSpec {
            name: "virtmark-ab",
            kvm: false,
            cpus: 2,
            cpuset: None,
            memory_mib: 2048,
            kernel: Path::new("/c/vmlinux"),
            initrd: Path::new("/c/initramfs.cpio"),
            cmdline: "console=ttyS0 rdinit=/virtmark -- agent --init",
            firmware: Some(Path::new(qemu::QBOOT)),
            scratch_image: Path::new("/s/scratch.img"),
            toolchain_image: None,
            console: Path::new("/s/a&b.log"),
            channel: Path::new("/s/agent.sock"),
            tap: Some("vmktap0"),
        };
        let x = domain_xml(&spec);
        assert!(x.starts_with("<domain type='qemu'>"), "{x}");
        assert!(x.contains("<vcpu>2</vcpu>"), "{x}");
        assert!(x.contains("<memory unit='MiB'>2048</memory>"), "{x}");
        assert!(x.contains("<cpu mode='maximum'/>"), "{x}");
        assert!(
            x.contains(
                "<source mode='bind' path='/s/agent.sock'/><target type='virtio' name='virtmark'/>"
            ),
            "{x}"
        );
        assert!(x.contains("<target dev='vmktap0' managed='no'/>"), "{x}");
        assert!(x.contains("/s/a&amp;b.log"), "{x}");
        assert!(!x.contains("vdb"), "{x}");
        let pinned = domain_xml(&DomainSpec {
            kvm: true,
            cpuset: Some(&[2, 3]),
            tap: None,
            toolchain_image: Some(Path::new("/c/tools.img")),
            ..spec
        });
        assert!(pinned.starts_with("<domain type='kvm'>"), "{pinned}");
        assert!(pinned.contains("cpuset='2,3'>2</vcpu>"), "{pinned}");
        assert!(pinned.contains("host-passthrough"), "{pinned}");
        assert!(
            pinned.contains("<target dev='vdb' bus='virtio'/><readonly/>"),
            "{pinned}"
        );
        assert!(!pinned.contains("<interface"), "{pinned}");
    }
}
