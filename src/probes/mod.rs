//! Probes: micro-measurements of the primitives a virtualization layer makes
//! expensive (a system call, a page fault, a TLB miss, a context switch, `cpuid`,
//! a fork). Each is a [`Workload`] of class [`Class::Probe`] that the agent runs
//! like any other, so that probes get the same repetitions, warm-up, order and
//! intervals as workloads; each reports one figure, `cost` in nanoseconds per
//! operation (lower is better), measured over a fixed time budget
//! ([`budget`]). `docs/probes.md` says what each exposes and which study or
//! tool it follows; [`crate::results::diagnosis`] uses them to explain
//! workloads' slowdowns.

use std::time::{Duration, Instant};

use crate::workloads::{Class, Ctx, Metric, Outcome, Workload, WorkloadError};

mod mem;
mod proc;
mod sys;

/// The argument that makes `virtmark` exit at once with status 0: what the
/// `fork-exec` probe executes (lmbench `lat_proc exec` runs a static hello).
pub const EXEC_MODE: &str = "--probe-exit";

/// The argument that makes `virtmark` run the `fork-exec` probe in itself,
/// freshly executed, and print what it measured: see [`child_main`].
pub const CHILD_MODE: &str = "--probe-child";

pub use proc::child_main;

/// Name of the probes' headline metric.
pub const METRIC: &str = "cost";
/// Unit of the probes' headline metric.
pub const UNIT: &str = "ns/op";

/// Time one sample of a probe measures for: the run's duration, at most 0.3 s
/// with the quick preset and 1 s with the faithful one.
pub fn budget(ctx: &Ctx) -> Duration {
    ctx.duration
        .min(ctx.pick(Duration::from_millis(300), Duration::from_secs(1)))
}

/// Run `op` in batches of `batch` until `budget` has passed (at least one
/// batch): the number of operations, and the time they take at the median
/// batch's pace (the median of the batches' costs times the operations, as
/// lmbench keeps the median of short repetitions), so that a batch that other
/// processes preempted does not move the figure.
pub(crate) fn timed(
    budget: Duration,
    batch: u64,
    mut op: impl FnMut() -> Result<(), WorkloadError>,
) -> Result<(u64, Duration), WorkloadError> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut paces = Vec::new();
    loop {
        let b = Instant::now();
        for _ in 0..batch {
            op()?;
        }
        paces.push(b.elapsed().as_secs_f64() / batch as f64);
        n += batch;
        if start.elapsed() >= budget {
            let pace = crate::stats::median(&paces);
            return Ok((n, Duration::from_secs_f64(pace * n as f64)));
        }
    }
}

/// The outcome of a probe: `ops` operations in `time`.
pub(crate) fn outcome(ops: u64, time: Duration, mut notes: Vec<String>) -> Outcome {
    let ns = time.as_secs_f64() * 1e9 / ops.max(1) as f64;
    notes.insert(
        0,
        format!(
            "{ops} operations, {:.3} s at the median batch's pace",
            time.as_secs_f64()
        ),
    );
    Outcome {
        metrics: vec![Metric::lower(METRIC, UNIT, ns)],
        notes,
    }
}

macro_rules! probe {
    ($id:ident, $name:literal, $follows:literal, $what:literal, $run:path) => {
        /// A probe (see the module's list).
        pub static $id: Workload = Workload {
            name: $name,
            stands_for: $follows,
            class: Class::Probe,
            metric: METRIC,
            unit: UNIT,
            higher_is_better: false,
            needs_peer: false,
            description: $what,
            available: crate::workloads::always,
            run: $run,
        };
    };
}

probe!(
    GETPPID,
    "getppid",
    "lmbench lat_syscall null; PVM paper getpid",
    "null system call (getppid): the round trip into the kernel a sandbox intercepts",
    sys::getppid
);
probe!(
    CLOCK_VDSO,
    "clock-vdso",
    "clock_gettime through the vDSO",
    "clock read without entering the kernel (vDSO), unless the layer forces a trap",
    sys::clock_vdso
);
probe!(
    CLOCK_SYSCALL,
    "clock-syscall",
    "clock_gettime as a real system call",
    "clock read through a real clock_gettime system call",
    sys::clock_syscall
);
probe!(
    CPUID,
    "cpuid",
    "kvm-unit-tests vmexit cpuid; PVM paper CPUID",
    "cpuid from user space: an exit to the hypervisor under hardware virtualization",
    sys::cpuid
);
probe!(
    RDTSC,
    "rdtsc",
    "kvm-unit-tests vmexit (tsc)",
    "rdtsc: the time-stamp counter, read natively unless the layer traps it",
    sys::rdtsc
);
probe!(
    PAGE_FAULT,
    "page-fault",
    "lmbench lat_pagefault (anonymous memory)",
    "minor page fault: first write to fresh anonymous 4 KiB pages (shadow paging, EPT)",
    mem::page_fault
);
probe!(
    MMAP,
    "mmap",
    "lmbench lat_mmap (1 MiB, not touched)",
    "mmap and munmap of 1 MiB of anonymous memory: page-table and address-space updates",
    mem::mmap
);
probe!(
    TLB_FAR,
    "tlb-far",
    "lmbench lat_mem_rd (random, large working set)",
    "random reads, one per 4 KiB page, over far more than the TLB reaches: page walks (two-dimensional under nested paging)",
    mem::tlb_far
);
probe!(
    TLB_NEAR,
    "tlb-near",
    "lmbench lat_mem_rd (random, small working set)",
    "the same random reads over 32 pages, inside the TLB's reach: the baseline of tlb-far",
    mem::tlb_near
);
probe!(
    USER_LOOP,
    "user-loop",
    "instruction throughput (emulators: QEMU TCG)",
    "dependent integer instructions in user mode, ns per iteration: what binary translation or emulation costs",
    mem::user_loop
);
probe!(
    CTX_SWITCH,
    "ctx-switch",
    "lmbench lat_ctx -s 0 2",
    "context switch: two processes on one CPU passing a byte through pipes, pipe cost subtracted as lat_ctx does",
    proc::ctx_switch
);
probe!(
    FUTEX_WAKE,
    "futex-wake",
    "futex ping-pong (perf bench sched)",
    "thread wake-up through a futex, per wake-up",
    proc::futex_wake
);
probe!(
    SIGNAL,
    "signal",
    "lmbench lat_sig catch",
    "delivery of a signal to a handler in the same process",
    proc::signal
);
probe!(
    FORK,
    "fork",
    "lmbench lat_proc fork",
    "fork + exit + wait of a small dynamically linked C program: address-space copy and teardown",
    proc::fork
);
probe!(
    FORK_EXEC,
    "fork-exec",
    "lmbench lat_proc exec",
    "fork + exec of a static binary (the agent itself, exiting at once) + wait",
    proc::fork_exec
);
probe!(
    PIPE_RR,
    "pipe-rr",
    "lmbench lat_pipe",
    "round trip of one byte between two processes through pipes (not pinned)",
    proc::pipe_rr
);
probe!(
    TCP_CONNECT,
    "tcp-connect",
    "lmbench lat_connect",
    "TCP connect + accept + close over the target's own loopback",
    proc::tcp_connect
);
probe!(
    TCP_RR,
    "tcp-rr",
    "lmbench lat_tcp; netperf TCP_RR on loopback",
    "1-byte request/response round trip over a loopback TCP connection inside the target",
    proc::tcp_rr
);
probe!(
    OPEN_CLOSE,
    "open-close",
    "lmbench lat_syscall open",
    "open + close of an existing file in the target's scratch directory: path lookup",
    sys::open_close
);
probe!(
    STAT,
    "stat",
    "lmbench lat_syscall stat",
    "stat of an existing file in the target's scratch directory",
    sys::stat
);

/// Every probe, in the order they are listed and run.
pub static ALL: &[&Workload] = &[
    &GETPPID,
    &CLOCK_VDSO,
    &CLOCK_SYSCALL,
    &CPUID,
    &RDTSC,
    &PAGE_FAULT,
    &MMAP,
    &TLB_FAR,
    &TLB_NEAR,
    &USER_LOOP,
    &CTX_SWITCH,
    &FUTEX_WAKE,
    &SIGNAL,
    &FORK,
    &FORK_EXEC,
    &PIPE_RR,
    &TCP_CONNECT,
    &TCP_RR,
    &OPEN_CLOSE,
    &STAT,
];

/// Names of every probe.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|p| p.name).collect()
}

/// Whether `name` is a probe.
pub fn is_probe(name: &str) -> bool {
    ALL.iter().any(|p| p.name == name)
}

/// An I/O error of a libc call, as a [`WorkloadError`].
pub(crate) fn last_os_error(what: &str) -> WorkloadError {
    WorkloadError::Io {
        context: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Dur;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn every_probe_measures_a_positive_cost_here() {
        let params = Params {
            duration: Some(Dur(Duration::from_millis(30))),
            ..Params::default()
        };
        // fork-exec executes the running binary with `--probe-child`, which
        // only virtmark itself understands: tests/probes.rs runs it through the
        // real binary.
        for p in ALL.iter().filter(|p| p.name != FORK_EXEC.name) {
            let out = run_briefly(p, params.clone(), None);
            assert_eq!(out.metrics.len(), 1, "{}", p.name);
        }
    }

    #[test]
    fn names_are_unique_and_not_workload_names() {
        let mut seen = std::collections::HashSet::new();
        for p in ALL {
            assert!(seen.insert(p.name), "{} twice", p.name);
            assert!(
                !crate::workloads::ALL.iter().any(|w| w.name == p.name),
                "{} is also a workload",
                p.name
            );
        }
    }
}
