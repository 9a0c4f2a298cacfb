//! Process-control helpers that need raw OS calls.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Make the spawned child receive SIGKILL when virtmark dies, so that a crash or
/// `kill -9` of virtmark never leaves an agent or peer running; and put it in its
/// own process group, so that Ctrl-C reaches virtmark alone, which then tears the
/// child down in order.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2) and
    // setpgid(2), which are async-signal-safe; it touches no memory shared with
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(std::io::Error::from)
        });
    }
}

/// Ask a child to stop (SIGTERM), wait up to `grace`, then SIGKILL it; always reap.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Restrict the spawned child to these CPUs (sched_setaffinity before exec).
pub fn pin_to(cmd: &mut Command, cpus: &[usize]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c)
            .map_err(|e| anyhow::anyhow!("cannot pin to CPU {c}: {e}"))?;
    }
    // SAFETY: between fork and exec the closure only calls sched_setaffinity(2) on
    // a CpuSet built before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
        });
    }
    Ok(())
}
