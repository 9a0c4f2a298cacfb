//! Process, thread and communication probes: context switch, futex wake-up,
//! signal delivery, fork, fork+exec, pipe and loopback TCP round trips.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::libc;

use super::{budget, last_os_error, outcome, timed};
use crate::workloads::{Ctx, IoContext, Outcome, WorkloadError};

/// A pipe, both ends closed on drop unless taken.
struct Pipe {
    r: RawFd,
    w: RawFd,
}

impl Pipe {
    fn new() -> Result<Pipe, WorkloadError> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(last_os_error("pipe"));
        }
        Ok(Pipe {
            r: fds[0],
            w: fds[1],
        })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        for fd in [self.r, self.w] {
            if fd >= 0 {
                // SAFETY: descriptors this Pipe owns, closed once.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Write one byte to `w` and read one from `r`; false on end of file or error.
fn pass(w: RawFd, r: RawFd) -> bool {
    let mut b = [1u8];
    // SAFETY: one byte from/to a valid one-byte buffer on descriptors held open
    // by the caller.
    unsafe {
        libc::write(w, b.as_ptr().cast(), 1) == 1 && libc::read(r, b.as_mut_ptr().cast(), 1) == 1
    }
}

/// Wait for `pid` and check that it exited with status 0.
fn reap(pid: libc::pid_t, what: &str) -> Result<(), WorkloadError> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is valid and writable.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(last_os_error(&format!("waiting for the {what} child")));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(WorkloadError::Failed(format!(
            "the {what} child ended with wait status {status:#x}"
        )))
    }
}

/// Fork a child that echoes bytes from `a` to `b` until end of file, then exits.
fn fork_echo(a: &Pipe, b: &Pipe) -> Result<libc::pid_t, WorkloadError> {
    // SAFETY: the child only makes async-signal-safe calls (read, write, _exit)
    // on descriptors it inherited; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(last_os_error("fork")),
        0 => {
            let mut byte = [0u8];
            // SAFETY: child side, see above.
            unsafe {
                libc::close(a.w);
                libc::close(b.r);
                while libc::read(a.r, byte.as_mut_ptr().cast(), 1) == 1 {
                    if libc::write(b.w, byte.as_ptr().cast(), 1) != 1 {
                        break;
                    }
                }
                libc::_exit(0)
            }
        }
        pid => Ok(pid),
    }
}

/// Ping-pong a byte through two pipes with a forked child for the budget: the
/// number of round trips and their time.
fn ping_pong(budget: Duration) -> Result<(u64, Duration), WorkloadError> {
    let mut a = Pipe::new()?;
    let mut b = Pipe::new()?;
    let pid = fork_echo(&a, &b)?;
    // SAFETY: the parent's copies of the child's ends, closed once (marked -1).
    unsafe {
        libc::close(a.r);
        libc::close(b.w);
    }
    a.r = -1;
    b.w = -1;
    let result = timed(budget, 100, || {
        if pass(a.w, b.r) {
            Ok(())
        } else {
            Err(last_os_error("pipe round trip"))
        }
    });
    drop(a); // end of file: the child exits
    reap(pid, "pipe echo")?;
    drop(b);
    result
}

/// The CPU this thread may run on first, and the set it had.
fn pin_to_one_cpu() -> Option<(nix::sched::CpuSet, usize)> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let old = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let cpu = (0..CpuSet::count()).find(|&c| old.is_set(c).unwrap_or(false))?;
    let mut one = CpuSet::new();
    one.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(0), &one).ok()?;
    Some((old, cpu))
}

/// Rounds of [`ctx_switch`]: each measures the pass without a switch, then with
/// one; the fastest of each is kept, as lmbench keeps its best runs, so that a
/// burst of load from elsewhere does not enter the difference.
const CTX_ROUNDS: u32 = 5;

pub(super) fn ctx_switch(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let slice = budget(ctx) / (3 * CTX_ROUNDS);
    let own = Pipe::new()?;
    // Both processes on one CPU: each pass is a switch (the child inherits it).
    let pinned = pin_to_one_cpu();
    let mut best_overhead = f64::INFINITY;
    let mut best_switch = f64::INFINITY;
    let mut passes = 0u64;
    let mut result = Ok(());
    for _ in 0..CTX_ROUNDS {
        // lat_ctx subtracts the cost of passing the token without a switch: one
        // process writing a byte to a pipe and reading it back.
        let o = timed(slice, 100, || {
            if pass(own.w, own.r) {
                Ok(())
            } else {
                Err(last_os_error("pipe write and read"))
            }
        });
        let s = o.and_then(|(on, ot)| {
            best_overhead = best_overhead.min(ot.as_secs_f64() / on as f64);
            ping_pong(2 * slice)
        });
        match s {
            Ok((n, t)) => {
                best_switch = best_switch.min(t.as_secs_f64() / (2 * n) as f64);
                passes += 2 * n;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if let Some((old, _)) = &pinned {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), old);
    }
    result?;
    let cost = best_switch - best_overhead;
    if cost <= 0.0 {
        return Err(WorkloadError::Failed(format!(
            "a pass with a switch took {:.0} ns, no more than one without ({:.0} ns): the switch cannot be told apart",
            best_switch * 1e9,
            best_overhead * 1e9
        )));
    }
    let mut o = outcome(
        passes,
        Duration::from_secs_f64(cost * passes as f64),
        vec![],
    );
    o.notes.push(match pinned {
        Some((_, cpu)) => format!("both processes pinned to CPU {cpu}"),
        None => "could not pin to one CPU: switches may cross CPUs".into(),
    });
    o.notes.push(format!(
        "best of {CTX_ROUNDS} rounds: {:.0} ns per pass with a switch, {:.0} ns without (subtracted)",
        best_switch * 1e9,
        best_overhead * 1e9
    ));
    Ok(o)
}

pub(super) fn pipe_rr(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let (n, t) = ping_pong(budget(ctx))?;
    Ok(outcome(n, t, vec!["two processes, not pinned".into()]))
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; no
    // timeout or second word is passed.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

pub(super) fn futex_wake(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    // `turn` is 0 when the main thread plays, 1 when the other one does.
    let turn = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (turn, stop) = (turn.clone(), stop.clone());
        std::thread::spawn(move || loop {
            while turn.load(Ordering::Acquire) == 0 {
                futex(&turn, libc::FUTEX_WAIT, 0);
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            turn.store(0, Ordering::Release);
            futex(&turn, libc::FUTEX_WAKE, 1);
        })
    };
    let result = timed(budget(ctx), 100, || {
        turn.store(1, Ordering::Release);
        futex(&turn, libc::FUTEX_WAKE, 1);
        while turn.load(Ordering::Acquire) == 1 {
            futex(&turn, libc::FUTEX_WAIT, 1);
        }
        Ok(())
    });
    stop.store(true, Ordering::Release);
    turn.store(1, Ordering::Release);
    futex(&turn, libc::FUTEX_WAKE, 1);
    let _ = other.join();
    let (n, t) = result?;
    Ok(outcome(
        2 * n,
        t,
        vec!["two threads, one wake-up each way per round trip".into()],
    ))
}

static CAUGHT: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn signal(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    // SAFETY: an all-zero sigaction is a valid starting value; the handler only
    // touches an atomic, which is async-signal-safe; the previous action is
    // restored below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
    // SAFETY: installing a handler for SIGUSR1, which virtmark uses for nothing else.
    if unsafe { libc::sigaction(libc::SIGUSR1, &sa, &mut old) } != 0 {
        return Err(last_os_error("installing a SIGUSR1 handler"));
    }
    let before = CAUGHT.load(Ordering::Relaxed);
    let result = timed(budget(ctx), 100, || {
        // SAFETY: raise sends SIGUSR1 to this thread, handled by `on_signal`.
        if unsafe { libc::raise(libc::SIGUSR1) } != 0 {
            return Err(last_os_error("raise"));
        }
        Ok(())
    });
    // SAFETY: restoring the action saved above.
    unsafe { libc::sigaction(libc::SIGUSR1, &old, std::ptr::null_mut()) };
    let (n, t) = result?;
    let caught = CAUGHT.load(Ordering::Relaxed) - before;
    if caught != n {
        return Err(WorkloadError::Failed(format!(
            "{n} signals sent, {caught} caught"
        )));
    }
    Ok(outcome(n, t, vec![]))
}

/// fork + exec of this executable with [`super::EXEC_MODE`] + wait, for `budget`.
fn fork_exec_loop(budget: Duration) -> Result<(u64, Duration), WorkloadError> {
    let exe = std::env::current_exe().ctx(|| "finding the agent's executable".into())?;
    let path = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| WorkloadError::Failed("the executable's path holds a NUL byte".into()))?;
    let arg0 = CString::new("virtmark").expect("no NUL");
    let arg1 = CString::new(super::EXEC_MODE).expect("no NUL");
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    timed(budget, 1, || {
        // SAFETY: the child only calls execve and _exit (async-signal-safe) with
        // pointers prepared before the fork.
        match unsafe { libc::fork() } {
            -1 => Err(last_os_error("fork")),
            // SAFETY: see above.
            0 => unsafe {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            },
            pid => reap(pid, "fork-exec"),
        }
    })
}

/// The one probe [`child_main`] runs.
const IN_FRESH_PROCESS: &str = "fork-exec";

/// `virtmark --probe-child <probe> <budget ns>`: run the process probe
/// `fork-exec` in this freshly executed process, pinned to one
/// CPU, and print `<operations> <ns> <cpu>` on stdout (`-` for the CPU when it
/// could not be pinned); the exit status says whether it worked.
pub fn child_main(args: &[std::ffi::OsString]) -> i32 {
    let probe = args.first().and_then(|a| a.to_str());
    let budget = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse::<u64>().ok())
        .map(Duration::from_nanos);
    let (Some(IN_FRESH_PROCESS), Some(budget)) = (probe, budget) else {
        eprintln!(
            "usage: virtmark {} <{IN_FRESH_PROCESS}> <budget in ns>",
            super::CHILD_MODE
        );
        return 2;
    };
    // One CPU for the forking process and, inherited, its children: a child
    // the scheduler puts on another CPU costs a cross-CPU wake-up (an IPI,
    // itself an exit under a hypervisor) at its exit, on some forks and not
    // others. Natively here that spread unpinned forks over 73–85 µs, against
    // 58–59 µs pinned. This process ends with the probe: nothing to restore.
    let cpu = pin_to_one_cpu().map_or_else(|| "-".to_string(), |(_, c)| c.to_string());
    match fork_exec_loop(budget) {
        Ok((n, t)) => {
            println!("{n} {} {cpu}", t.as_nanos());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Run [`IN_FRESH_PROCESS`] in a freshly executed agent ([`child_main`]): a process's fork
/// copies its page tables and address-space map and tears them down again,
/// so forking the serving agent, whose footprint grows with the workloads it
/// ran before (heap, thread stacks, arenas), would measure its history. The
/// fresh process has the footprint of a just-started static executable, the
/// same in every target and every run.
fn in_fresh_process(budget: Duration) -> Result<Fresh, WorkloadError> {
    let probe = IN_FRESH_PROCESS;
    let exe = std::env::current_exe().ctx(|| "finding the agent's executable".into())?;
    let out = std::process::Command::new(&exe)
        .arg(super::CHILD_MODE)
        .arg(probe)
        .arg(budget.as_nanos().to_string())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .ctx(|| format!("running {} {} {probe}", exe.display(), super::CHILD_MODE))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let mut number = || fields.next().map(|f| f.parse::<u64>().ok());
    match (out.status.success(), number(), number(), number()) {
        (true, Some(Some(n)), Some(Some(ns)), Some(cpu)) if n > 0 => Ok(Fresh {
            ops: n,
            time: Duration::from_nanos(ns),
            cpu,
        }),
        _ => Err(WorkloadError::Failed(format!(
            "{} {} {probe} ended with {} and printed {:?}: {}",
            exe.display(),
            super::CHILD_MODE,
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// What [`child_main`] reported: operations, their time, and the CPU it
/// pinned itself to (`None`: it could not).
struct Fresh {
    ops: u64,
    time: Duration,
    cpu: Option<u64>,
}

impl Fresh {
    fn outcome(self, what: String) -> Outcome {
        outcome(self.ops, self.time, vec![what, placement(self.cpu)])
    }
}

/// What a process probe's note says of where its children ran.
fn placement(cpu: Option<u64>) -> String {
    match cpu {
        Some(c) => format!("parent and children pinned to CPU {c}: no cross-CPU wake-up"),
        None => {
            "not pinned (the affinity could not be set): the scheduler placed each child".into()
        }
    }
}

/// The `fork` probe's forking process, `src/probes/fork_loop.c` compiled by
/// build.rs: a small C program linked dynamically against the host's C library.
static FORK_LOOP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fork_loop"));

/// The interpreter [`FORK_LOOP`] names, for the error when a target lacks it.
const FORK_LOOP_NEEDS: &str = "the host's C library and its loader (/lib64/ld-linux-x86-64.so.2)";

/// fork + exit + wait, from [`FORK_LOOP`], a freshly executed, dynamically
/// linked C program, as lmbench's `lat_proc fork` forks from one: what a fork
/// costs depends on the forking process's address space (its page tables are
/// copied and torn down), and a dynamically linked program's written pages lie
/// in the executable, its heap, the C library, the loader and the stack, each in
/// its own page table, where a static one keeps them in a few. The programs real
/// workloads fork (a compiler, make, a shell) are dynamically linked too. It runs
/// from memory (a memfd, nothing written to the target's disk), pins itself and its
/// children to one CPU, and reports each fork's time; the figure is the median
/// fork's, as [`super::timed`] takes the median batch's pace.
pub(super) fn fork(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let prog = MemExe::new("virtmark-fork-loop", FORK_LOOP)?;
    let out = std::process::Command::new(prog.path())
        .arg(budget(ctx).as_nanos().to_string())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            WorkloadError::Failed(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "cannot execute the fork probe's C program: it needs {FORK_LOOP_NEEDS} in the target ({e})"
                )
            } else {
                format!("executing the fork probe's C program: {e}")
            })
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let cpu = lines.next().map(|l| l.trim().parse::<u64>().ok());
    let ns: Option<Vec<f64>> = lines.map(|l| l.trim().parse::<f64>().ok()).collect();
    match (out.status.success(), cpu, ns) {
        (true, Some(cpu), Some(ns)) if !ns.is_empty() => {
            let ops = ns.len() as u64;
            let pace = crate::stats::median(&ns) * 1e-9;
            Ok(outcome(
                ops,
                Duration::from_secs_f64(pace * ops as f64),
                vec![
                    "forked from a freshly executed, dynamically linked C program (the host's C library), as lmbench lat_proc fork".into(),
                    placement(cpu),
                ],
            ))
        }
        _ => Err(WorkloadError::Failed(format!(
            "the fork probe's C program ended with {} and printed {:?}: {}",
            out.status,
            text.lines().take(3).collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// An executable held in memory (a memfd), run through `/proc/self/fd`: nothing
/// is written to the target's disk and nothing is left behind; the descriptor is
/// closed on drop (and on exec: a child sees it only until it executes it).
struct MemExe {
    fd: std::os::fd::OwnedFd,
}

impl MemExe {
    fn new(name: &str, bytes: &[u8]) -> Result<MemExe, WorkloadError> {
        use std::os::fd::FromRawFd;
        let cname = CString::new(name).expect("no NUL in the name");
        // SAFETY: a valid NUL-terminated name; the descriptor returned is owned here.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(last_os_error("memfd_create"));
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)
            .ctx(|| format!("writing {name} into memory"))?;
        Ok(MemExe { fd: file.into() })
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

pub(super) fn fork_exec(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    Ok(in_fresh_process(budget(ctx))?.outcome(format!(
        "forked from a freshly executed agent, executes the agent with {}",
        super::EXEC_MODE
    )))
}

/// A listener on the target's loopback.
fn loopback() -> Result<TcpListener, WorkloadError> {
    TcpListener::bind("127.0.0.1:0").ctx(|| "listening on 127.0.0.1".into())
}

pub(super) fn tcp_connect(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let listener = loopback()?;
    let addr = listener.local_addr().ctx(|| "listener address".into())?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // One thread connects and accepts: the handshake completes in the kernel
    // during connect, so no wake-up of another thread enters the figure.
    let (n, t) = timed(budget(ctx), 10, || {
        let s = TcpStream::connect(addr).ctx(|| format!("connecting to {addr}"))?;
        let (a, _) = listener.accept().ctx(|| "accepting".into())?;
        // Close with a reset: no TIME_WAIT, so thousands of connections a second
        // do not run out of ports.
        // SAFETY: setsockopt reads one `linger` from a valid pointer of its size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(s);
        drop(a);
        Ok(())
    })?;
    Ok(outcome(
        n,
        t,
        vec!["connect + accept in one thread, close with a reset".into()],
    ))
}

pub(super) fn tcp_rr(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let listener = loopback()?;
    let addr = listener.local_addr().ctx(|| "listener address".into())?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr).ctx(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true).ctx(|| "TCP_NODELAY".into())?;
    let result = timed(budget(ctx), 10, || {
        let mut b = [1u8];
        s.write_all(&b).ctx(|| "sending a byte".into())?;
        s.read_exact(&mut b).ctx(|| "receiving a byte".into())?;
        Ok(())
    });
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = echo.join();
    let (n, t) = result?;
    Ok(outcome(n, t, vec!["one connection, TCP_NODELAY".into()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::elf;

    #[test]
    fn the_fork_program_is_dynamically_linked() {
        let segs = elf::segments(FORK_LOOP).expect("a 64-bit ELF executable");
        assert!(segs.iter().any(|s| s.kind == elf::PT_INTERP));
    }

    #[test]
    fn a_memory_executable_runs_and_leaves_no_descriptor() {
        let exe = MemExe::new("virtmark-memexe-test", FORK_LOOP).unwrap();
        let path = exe.path();
        let link = std::fs::read_link(&path).unwrap();
        assert!(
            link.to_string_lossy()
                .contains("memfd:virtmark-memexe-test"),
            "{link:?}"
        );
        // No argument: the program's usage, status 2.
        let out = std::process::Command::new(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: fork_loop"));
        drop(exe);
        // The descriptor is closed (its number may since hold another test's file).
        let after = std::fs::read_link(&path).map(|l| l.to_string_lossy().into_owned());
        assert!(!after.is_ok_and(|l| l.contains("memfd:virtmark-memexe-test")));
    }
}
