//! `uml`: the agent as init of a User-Mode Linux guest (Debian's `linux` binary).
//!
//! - root: hostfs, read-only, on a tiny directory holding the agent and its
//!   libraries. A ubd root image would have to be built (mkfs and copy) at every
//!   start for nothing: the root only holds the binaries, which are read once.
//!   hostfs avoids that; the measured storage is the scratch disk below.
//! - scratch: a sparse file formatted ext4 as ubd0 (`/dev/ubda`), mounted at
//!   /scratch, so disk workloads see a file system in a file, as UML users do.
//! - agent channel: UML's first serial line on inherited pipes (`ssl0=fd:3,fd:4`,
//!   `/dev/ttyS0` in the guest, set raw there); the kernel console is `con0` on
//!   the log file, so kernel messages never reach the channel.
//! - network: `eth0=tuntap` on a tap device inside a network namespace virtmark
//!   creates; the `linux` process runs in that namespace.
//! - processes: UML forks a host process per guest process and helpers; all of
//!   them are put in a cgroup of their own (recorded in the ledger), which
//!   teardown and `virtmark cleanup` kill as a whole.
//! - FP state: the host process is started with `fpshim.c` preloaded, which
//!   mediates UML's XSAVE ptrace calls so that guests run on hosts whose XSAVE
//!   state is larger than UML's fixed buffer (AVX-512, AMX; see that file).
//! - size: `mem=` from [`StartEnv`]. Debian's UML kernel is uniprocessor
//!   (CONFIG_NR_CPUS=1): the guest has one CPU whatever was asked; the fingerprint
//!   records that.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::ledger::Resource;
use super::qemu::{mib, scratch_image, Phases, VmTeardown, SCRATCH_IMAGE_BYTES};
use super::tools::on_path;
use super::{netns, peer, Driver, Family, Guard, Instance, StartEnv};

/// The UML kernel binary.
pub const LINUX: &str = "linux";

/// The UML driver.
pub struct Uml;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["uml"],
    not_default: &[],
    make: |n| (n == "uml").then(|| Ok(Box::new(Uml) as Box<dyn Driver>)),
};

/// The FP-state mediator (`fpshim.c`, built by `build.rs`).
const FPSHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uml_fpshim.so"));

/// The FP-state mediator as a file in the cache, written once per build: give
/// it to `linux` as `LD_PRELOAD` (see `fpshim.c`).
pub fn fpshim() -> Result<PathBuf> {
    super::cache::entry(
        "uml-fpshim",
        "so",
        super::cache::Key::new(1).with(FPSHIM),
        |p| std::fs::write(p, FPSHIM).with_context(|| format!("writing {}", p.display())),
    )
}

/// The cgroup v2 directory this process sits in (hybrid or unified layout).
fn own_cgroup2() -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup v2 entry in /proc/self/cgroup")?;
    let base = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        PathBuf::from("/sys/fs/cgroup/unified")
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    Ok(base.join(rel.trim_start_matches('/')))
}

/// Duplicate `fd` to a descriptor ≥ 10 (close-on-exec), so that the child's
/// dup2 to 3 and 4 never lands on a source descriptor.
fn high_fd(fd: OwnedFd) -> Result<OwnedFd> {
    let n = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .context("duplicating a pipe descriptor")?;
    // SAFETY: fcntl just returned this new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Write the decimal `pid` into `buf`, returning the used bytes (no allocation:
/// this runs between fork and exec).
fn decimal(mut pid: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (pid % 10) as u8;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Driver for Uml {
    fn name(&self) -> &str {
        "uml"
    }

    fn class(&self) -> &'static str {
        "paravirtualization (User-Mode Linux)"
    }

    fn available(&self) -> Result<(), String> {
        if !on_path(LINUX) {
            return Err(
                "the User-Mode Linux kernel `linux` is not installed (Debian package \
                 user-mode-linux)"
                    .into(),
            );
        }
        if !on_path("mkfs.ext4") {
            return Err("mkfs.ext4 is not installed (Debian package e2fsprogs)".into());
        }
        netns::check_available()?;
        if !Path::new("/dev/net/tun").exists() {
            return Err("/dev/net/tun is missing (module tun)".into());
        }
        own_cgroup2().map_err(|e| format!("{e:#}"))?;
        super::verify::proven(self.name(), &[LINUX, "mkfs.ext4"], |env| self.start(env))
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(2));
        let dir = env.scratch.clone();
        guard.create_dir(&dir)?;
        let root = dir.join("root");
        let mut phases = Phases::new();
        build_root(env.exe, &root)?;
        let tools = env.toolchain.then(super::toolchain::HostToolchain::of_host);
        if let Some(t) = &tools {
            t.prepare_root(&root)?;
        }
        phases.mark("root");
        let image = dir.join("scratch.img");
        scratch_image(&mut guard, &image, SCRATCH_IMAGE_BYTES)?;
        phases.mark("scratch image");
        let site = netns::tap_site(&mut guard, &env.tag, env.index)?;
        let peer = peer::start_for(&mut guard, env, site.peer_ip, &site.ns)?;
        phases.mark("network");

        let cg = own_cgroup2()?.join(format!("virtmark-{}", env.tag));
        guard.create(Resource::Cgroup { path: cg.clone() }, || {
            std::fs::create_dir(&cg).with_context(|| format!("creating cgroup {}", cg.display()))
        })?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(cg.join("cgroup.procs"))
            .with_context(|| format!("opening {}/cgroup.procs", cg.display()))?;

        // Channel pipes: host → guest (UML reads fd 3), guest → host (UML writes fd 4).
        let (to_r, to_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        let (from_r, from_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        let (to_r, from_w) = (high_fd(to_r)?, high_fd(from_w)?);

        let uml_dir = dir.join("uml");
        std::fs::create_dir_all(&uml_dir)
            .with_context(|| format!("creating {}", uml_dir.display()))?;
        phases.mark("cgroup, channel");
        let shim = fpshim()?;
        let log = phases.log(&env.log, "uml")?;
        let mut cmd = Command::new(LINUX);
        cmd.env("LD_PRELOAD", &shim)
            .arg(format!("mem={}M", mib(env.memory)))
            .arg(format!("umid=virtmark-{}", env.tag))
            .arg(format!("uml_dir={}", uml_dir.display()))
            .args(["root=/dev/root", "rootfstype=hostfs", "ro"])
            .arg(format!("rootflags={}", root.display()))
            .arg(format!("ubd0={}", image.display()))
            .args(["con=null", "con0=null,fd:2", "ssl=null", "ssl0=fd:3,fd:4"])
            .arg(format!("eth0=tuntap,{}", site.tap))
            // The RAID6 and xor benchmarks cost ~0.7 s of every boot and serve
            // nothing here (no md or btrfs RAID in the guest).
            .arg("initcall_blacklist=raid6_select_algo")
            .arg("quiet")
            .args(super::qemu::extra_kernel_args().split_whitespace())
            .arg(format!("virtmark.ip={}/{}", site.guest_ip, netns::PREFIX))
            .args(tools.as_ref().map(super::toolchain::hostfs_arg))
            .args([
                "virtmark.disk=/dev/ubda",
                "virtmark.chan=/dev/ttyS0",
                "init=/virtmark",
                "--",
                "agent",
                "--init",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("log")?))
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        netns::spawn_in_netns(&mut cmd, &site.ns)?;
        let (r3, w4): (RawFd, RawFd) = (to_r.as_raw_fd(), from_w.as_raw_fd());
        let procs_fd = procs.as_raw_fd();
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the closure only calls getpid(2),
            // write(2) on a descriptor opened before the fork (formatting into a
            // stack buffer) and dup2(2); it allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    let mut buf = [0u8; 12];
                    let pid = decimal(std::process::id(), &mut buf);
                    if nix::libc::write(procs_fd, pid.as_ptr().cast(), pid.len()) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if nix::libc::dup2(r3, 3) < 0 || nix::libc::dup2(w4, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        // `scale --pin` (issue 12): the UML kernel and its host processes on the
        // instance's CPUs.
        if let Some(cpus) = &env.cpuset {
            crate::sys::pin_to(&mut cmd, cpus)?;
        }
        let child = cmd.spawn().with_context(|| format!("starting {LINUX}"))?;
        drop((to_r, from_w, procs));
        let teardown = VmTeardown::new(child, guard)?;
        Ok(Instance {
            to_agent: Box::new(File::from(to_w)),
            from_agent: Box::new(File::from(from_r)),
            peer,
            teardown: Box::new(teardown),
        })
    }
}

/// The hostfs root: the agent at /virtmark (hard-linked when possible, else
/// copied), its libraries, and the directories the guest init mounts on.
fn build_root(exe: &Path, root: &Path) -> Result<()> {
    let files = super::rootfs::agent_closure(exe)?;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    super::rootfs::copy_into(root, &files[1..])?;
    let dst = root.join("virtmark");
    if std::fs::hard_link(exe, &dst).is_err() {
        std::fs::copy(exe, &dst)
            .with_context(|| format!("copying the agent into {}", root.display()))?;
    }
    for d in ["proc", "sys", "dev", "tmp", "scratch"] {
        std::fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    let mut f = File::create(root.join("README")).context("root README")?;
    writeln!(f, "virtmark UML guest root (hostfs, read-only)").context("root README")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formats_without_allocating() {
        let mut b = [0u8; 12];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(4194304, &mut b), b"4194304");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }
}
