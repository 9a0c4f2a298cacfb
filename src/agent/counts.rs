//! Operation counts of a workload, measured while it runs: system calls, minor
//! page faults, context switches, bytes read and written, user CPU time. They
//! become secondary metrics of the sample, per unit of the headline metric
//! (`count.syscalls` in `per MB`), which the diagnosis
//! ([`crate::results::diagnosis`]) multiplies by the probes' costs.
//!
//! Sources: perf software counters for faults and context switches (where
//! `perf_event_open` is allowed; sandboxes and unprivileged containers refuse
//! it), else `getrusage`; system calls from `/proc/self/io` (`syscr` + `syscw`:
//! only the read/write family, a lower bound: `send`/`recv` are not in it). The
//! `raw_syscalls:sys_enter` tracepoint would count every call exactly, but it
//! slowed a syscall-bound workload by a fifth where it could be opened (see
//! [`Counter::start`]).

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use nix::libc;

use crate::workloads::Metric;

/// Prefix of the metrics that hold operation counts.
pub const PREFIX: &str = "count.";

/// The counts the diagnosis knows a probe for, and the probe.
pub const PRIMITIVES: &[(&str, &str)] = &[
    ("syscalls", "getppid"),
    ("minor_faults", "page-fault"),
    ("ctx_switches", "ctx-switch"),
    ("user_s", "user-loop"),
];

/// `struct perf_event_attr`, its first version (64 bytes), which every kernel
/// since 2.6.31 accepts.
#[repr(C)]
#[derive(Default)]
struct PerfAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_COUNT_SW_PAGE_FAULTS_MIN: u64 = 5;
/// Close the counter on exec.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `inherit`: count threads and children made after the counter opens.
const FLAG_INHERIT: u64 = 1 << 1;

fn perf_open(kind: u32, config: u64) -> Option<OwnedFd> {
    let attr = PerfAttr {
        kind,
        size: std::mem::size_of::<PerfAttr>() as u32,
        config,
        flags: FLAG_INHERIT,
        ..PerfAttr::default()
    };
    // SAFETY: perf_event_open reads `attr` (a valid, correctly sized struct) and
    // returns a new descriptor or -1; pid 0 / cpu -1: this thread on any CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfAttr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let fd = i32::try_from(fd).ok().filter(|&f| f >= 0)?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn perf_read(fd: &OwnedFd) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd.try_clone().ok()?);
    let mut b = [0u8; 8];
    f.read_exact(&mut b).ok()?;
    Some(u64::from_ne_bytes(b))
}

#[derive(Default, Clone, Copy)]
struct Snapshot {
    minflt: f64,
    csw: f64,
    user_s: f64,
    syscr: f64,
    syscw: f64,
    rchar: f64,
    wchar: f64,
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is valid and writable.
    unsafe { libc::getrusage(who, &mut r) };
    r
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        let r = rusage(who);
        s.minflt += r.ru_minflt as f64;
        s.csw += (r.ru_nvcsw + r.ru_nivcsw) as f64;
        s.user_s += r.ru_utime.tv_sec as f64 + r.ru_utime.tv_usec as f64 * 1e-6;
    }
    if let Ok(io) = std::fs::read_to_string("/proc/self/io") {
        for line in io.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v: f64 = v.trim().parse().unwrap_or(0.0);
            match k {
                "syscr" => s.syscr = v,
                "syscw" => s.syscw = v,
                "rchar" => s.rchar = v,
                "wchar" => s.wchar = v,
                _ => {}
            }
        }
    }
    s
}

/// Counting in progress; [`Counter::finish`] ends it.
pub struct Counter {
    start: Instant,
    before: Snapshot,
    syscalls: Option<OwnedFd>,
    faults: Option<OwnedFd>,
    switches: Option<OwnedFd>,
}

/// What a workload did while it was counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Wall time counted, seconds.
    pub window_s: f64,
    /// Every (name, total) counted.
    pub totals: Vec<(&'static str, f64)>,
    /// Where the figures come from.
    pub source: String,
}

impl Counter {
    /// Start counting this thread and what it starts from now on.
    pub fn start() -> Counter {
        // No `raw_syscalls:sys_enter` counter: enabling that tracepoint sends every
        // system call of the machine through the kernel's slow path. Measured here
        // (2026-11-30): `virtmark run -t native -w dd-zero --reps 4` gave 1,792 and
        // 1,854 MB/s with it, 2,293 and 2,317 MB/s with the agent unable to open it
        // (CAP_PERFMON and CAP_SYS_ADMIN dropped), and oci:runc, where it cannot
        // be opened, came out 1.20x native. Counts taken in some targets and not in
        // others bias the very ratios they are meant to explain; `/proc/self/io`
        // costs nothing and is the same everywhere.
        let syscalls = None;
        let faults = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS_MIN);
        let switches = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES);
        Counter {
            start: Instant::now(),
            before: snapshot(),
            syscalls,
            faults,
            switches,
        }
    }

    /// Stop and say what was counted.
    pub fn finish(self) -> Counts {
        let window_s = self.start.elapsed().as_secs_f64();
        let after = snapshot();
        let d = |f: fn(&Snapshot) -> f64| (f(&after) - f(&self.before)).max(0.0);
        let perf = |fd: &Option<OwnedFd>| fd.as_ref().and_then(perf_read).map(|v| v as f64);
        let mut sources = Vec::new();
        let syscalls = match perf(&self.syscalls) {
            Some(v) => {
                sources.push("syscalls: perf raw_syscalls:sys_enter");
                v
            }
            None => {
                sources.push("syscalls: /proc/self/io syscr+syscw (read/write family only)");
                d(|s| s.syscr) + d(|s| s.syscw)
            }
        };
        let faults = match perf(&self.faults) {
            Some(v) => {
                sources.push("faults: perf");
                v
            }
            None => {
                sources.push("faults: getrusage");
                d(|s| s.minflt)
            }
        };
        let switches = match perf(&self.switches) {
            Some(v) => {
                sources.push("switches: perf");
                v
            }
            None => {
                sources.push("switches: getrusage");
                d(|s| s.csw)
            }
        };
        Counts {
            window_s,
            totals: vec![
                ("syscalls", syscalls),
                ("minor_faults", faults),
                ("ctx_switches", switches),
                ("user_s", d(|s| s.user_s)),
                ("read_bytes", d(|s| s.rchar)),
                ("write_bytes", d(|s| s.wchar)),
            ],
            source: sources.join(", "),
        }
    }
}

/// The unit of work of a headline metric and how many were done in `window_s`:
/// a rate (`MB/s`, `tx/s`) counts its units; a time (`s`) counts one run;
/// anything else counts seconds.
pub fn work_units(headline: &Metric, window_s: f64) -> (String, f64) {
    if let Some(unit) = headline.unit.strip_suffix("/s") {
        (unit.to_string(), headline.value * window_s)
    } else if headline.unit == "s" {
        ("run".to_string(), 1.0)
    } else {
        ("s".to_string(), window_s)
    }
}

/// The counts as metrics per unit of the headline's work (zero counts left out).
pub fn metrics(counts: &Counts, headline: &Metric) -> Vec<Metric> {
    let (unit, work) = work_units(headline, counts.window_s);
    if !(work.is_finite() && work > 0.0) {
        return vec![];
    }
    counts
        .totals
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(name, v)| {
            Metric::lower(&format!("{PREFIX}{name}"), &format!("per {unit}"), v / work)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_counts_its_units_and_a_time_one_run() {
        let mb = Metric::higher("throughput", "MB/s", 100.0);
        assert_eq!(work_units(&mb, 2.0), ("MB".into(), 200.0));
        let s = Metric::lower("time", "s", 3.0);
        assert_eq!(work_units(&s, 3.1), ("run".into(), 1.0));
        let c = Counts {
            window_s: 2.0,
            totals: vec![("syscalls", 400.0), ("minor_faults", 0.0)],
            source: String::new(),
        };
        let m = metrics(&c, &mb);
        assert_eq!(m.len(), 1, "zero counts are left out");
        assert_eq!(m[0].name, "count.syscalls");
        assert_eq!(m[0].unit, "per MB");
        assert_eq!(m[0].value, 2.0);
    }

    #[test]
    fn counting_sees_the_system_calls_made_meanwhile() {
        let c = Counter::start();
        for _ in 0..1000 {
            // SAFETY: getppid takes no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut buf = [0u8; 1];
        for _ in 0..100 {
            use std::io::Read;
            let _ = (&f).read(&mut buf);
        }
        let counts = c.finish();
        let sys = counts.totals.iter().find(|t| t.0 == "syscalls").unwrap().1;
        // perf sees every call (>= 1100); /proc/self/io only the reads (>= 100).
        assert!(sys >= 100.0, "{sys} ({})", counts.source);
        if counts.source.contains("perf raw_syscalls") {
            assert!(sys >= 1100.0, "{sys}");
        }
    }
}
