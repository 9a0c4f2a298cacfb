//! `ns`: virtmark's own container. The agent runs in new pid, mount, uts and ipc
//! namespaces, in a network namespace of its own joined to the peer's by a veth
//! pair, in child cgroups limiting CPU, cpuset, memory and tasks, with a fresh
//! /proc and a private scratch directory on the host's disk.
//!
//! Everything is done in-process on the hot path: cgroups by mkdir/write, the
//! namespaces and veth by rtnetlink ([`super::rtnl`]) when the run has network
//! workloads (otherwise a fresh network namespace of the child's own, with
//! loopback up, which nothing outlives), and the container by
//! `setns`/`unshare` between fork and exec. The pid namespace needs an init
//! that reaps orphans (the `build` workload runs make and compilers, whose
//! grandchildren may be re-parented): the agent is not written to be pid 1, so
//! the child forks once more into a tiny init (pid 1: mounts /proc, forks the
//! agent, reaps every child, exits with the agent's status) — two `fork`s of an
//! already-forked process, no extra `exec`, so it costs well under a millisecond.

use std::os::fd::AsRawFd;

use anyhow::Context;

use super::cgroup::{self, Limits};
use super::{netns, peer, rtnl, Driver, Family, Guard, Instance, StartEnv};

/// The `ns` driver.
pub struct Ns;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["ns"],
    not_default: &[],
    make: |n| (n == "ns").then(|| Ok(Box::new(Ns) as Box<dyn Driver>)),
};

/// Host name inside the container.
const HOSTNAME: &[u8] = b"virtmark-ns";

impl Driver for Ns {
    fn name(&self) -> &str {
        "ns"
    }

    fn class(&self) -> &'static str {
        "OS-level virtualization (namespaces + cgroups)"
    }

    fn available(&self) -> Result<(), String> {
        netns::check_available()?;
        cgroup::check_available()?;
        if !std::path::Path::new("/proc/self/ns/pid").exists() {
            return Err("the kernel has no pid namespaces (CONFIG_PID_NS)".into());
        }
        Ok(())
    }

    fn start(&self, env: &StartEnv) -> anyhow::Result<Instance> {
        let mut guard = Guard::new(env.ledger.clone());
        guard.create_dir(&env.scratch)?;
        let cg = cgroup::create(&mut guard, &env.tag, &Limits::of(env))?;
        // A veth pair and a peer only when the run has network workloads; without
        // them the container makes a fresh network namespace of its own between
        // fork and exec (loopback only), which nothing outlives.
        let (target_ns, peer) = match env.peer {
            None => (None, None),
            Some(_) => {
                let pair = rtnl::veth_pair(&mut guard, &env.tag, env.index)?;
                let addr = peer::start_for(&mut guard, env, pair.peer_ip, &pair.peer_ns)?;
                (Some(pair.target_ns), addr)
            }
        };

        let mut cmd = env.host_agent_command()?;
        let procs = cg.procs_files()?;
        let net = target_ns.as_deref().map(rtnl::open_netns).transpose()?;
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs between fork and exec in a single-threaded child; it only
            // makes system calls (write, setns, unshare, socket, ioctl, mount,
            // sethostname, fork, waitpid, close_range, prctl, _exit) on data prepared before the fork
            // and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    cgroup::join_all(&procs)?;
                    enter_container(net.as_ref().map(|f| f.as_raw_fd()))
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting agent {} in namespaces", env.exe.display()))?;
        Instance::of_child(guard, child, peer)
    }
}

fn check(r: nix::libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wait for `pid` (-1: any child), retrying on EINTR; the pid reaped and its status.
fn wait(pid: nix::libc::pid_t) -> (nix::libc::pid_t, nix::libc::c_int) {
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) with a pointer to a local.
        let r = unsafe { nix::libc::waitpid(pid, &mut status, 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::EINTR) {
            continue;
        }
        return (r, status);
    }
}

/// Exit code for a wait status, as a shell reports it.
fn exit_code(status: nix::libc::c_int) -> nix::libc::c_int {
    if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else if nix::libc::WIFSIGNALED(status) {
        128 + nix::libc::WTERMSIG(status)
    } else {
        1
    }
}

fn close_all_fds() {
    // SAFETY: close_range(2) on every descriptor of this process, which needs none.
    unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 0u32, u32::MAX, 0u32);
    }
}

/// Bring the loopback interface of the current network namespace up with
/// `SIOCSIFFLAGS` (async-signal-safe: a socket, two ioctls on a stack buffer).
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: socket/ioctl/close on a descriptor made here and an `ifreq` on the
    // stack, zeroed and named "lo"; each result is checked.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
            *d = *s as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Between fork and exec: join the target's network namespace (or make a fresh
/// one with loopback up when `netns_fd` is `None`), make the other namespaces,
/// and fork into init (pid 1) and agent. Returns only in the agent.
fn enter_container(netns_fd: Option<nix::libc::c_int>) -> std::io::Result<()> {
    use nix::libc;
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    // SAFETY: plain system calls on a descriptor opened before the fork and on
    // static C strings; each result is checked.
    unsafe {
        match netns_fd {
            Some(fd) => check(libc::setns(fd, libc::CLONE_NEWNET))?,
            None => flags |= libc::CLONE_NEWNET,
        }
        check(libc::unshare(flags))?;
        if netns_fd.is_none() {
            loopback_up()?;
        }
        // Private propagation first, so nothing mounted inside reaches the host.
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()))?;
    }
    // SAFETY: fork(2) in a single-threaded process (we are already a forked child).
    let init = unsafe { libc::fork() };
    if init < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if init > 0 {
        // The process virtmark tracks, outside the pid namespace: wait for init,
        // exit as it did. Its descriptors (the agent's pipes, spawn's status pipe)
        // are closed so only the agent holds them.
        close_all_fds();
        let (_, status) = wait(init);
        // SAFETY: _exit(2) never returns.
        unsafe { libc::_exit(exit_code(status)) }
    }
    // Init, pid 1 of the new namespace.
    // SAFETY: prctl and mount with static strings; fork in a single-threaded process.
    unsafe {
        // Die with the waiting parent, taking the namespace's processes along.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        check(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))?;
    }
    // SAFETY: as above.
    let agent = unsafe { libc::fork() };
    if agent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if agent == 0 {
        // The agent: std execs it on return.
        return Ok(());
    }
    close_all_fds();
    loop {
        let (pid, status) = wait(-1);
        if pid == agent || pid < 0 {
            // SAFETY: _exit(2) never returns; leaving kills the namespace's rest.
            unsafe { libc::_exit(exit_code(status)) }
        }
    }
}
