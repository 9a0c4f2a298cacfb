//! Operation counts of a workload: system calls, minor page faults, context
//! switches, bytes read and written, user CPU time. They become secondary
//! metrics of the sample, per unit of the headline metric (`count.syscalls` in
//! `per MB`), which the diagnosis ([`crate::results::diagnosis`]) multiplies by
//! the probes' costs.
//!
//! Counts are taken only when the host asks (`count` in the request), which it
//! does on the first, discarded warm-up repetition of each (target, workload):
//! counting has a cost of its own, and the measured repetitions run uncounted.
//! Counts are per unit of work, so they do not depend on the speed of the
//! repetition that took them.
//!
//! Sources, best first: system calls from the `raw_syscalls:sys_enter`
//! tracepoint (every call, exact; it sends every system call of the machine
//! through the kernel's slow path while it is open, which is why only the
//! warm-up is traced), else the workload's own exact count where it knows one
//! (net-rr: one `write` and one `recv` per transaction), else `syscr` + `syscw`
//! of `/proc/self/io` (the read/write family only, a lower bound); faults and
//! context switches from perf software counters, else `getrusage`.
//! `perf_event_open` needs privileges that sandboxes and unprivileged containers
//! refuse; the diagnosis uses the native counts, taken as root.

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
const PERF_TYPE_TRACEPOINT: u32 = 2;
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

/// The id of the `raw_syscalls:sys_enter` tracepoint, from tracefs; where tracefs
/// is not mounted and we are root, from a tracefs mounted in a private mount
/// namespace of a short-lived child (the mount ends with it, nothing is left).
fn sys_enter_id() -> Option<u64> {
    static ID: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        for p in [
            "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
            "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
        ] {
            if let Some(id) = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Some(id);
            }
        }
        id_from_private_tracefs()
    })
}

fn id_from_private_tracefs() -> Option<u64> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let root = c"/";
    let dir = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    let path = c"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id";
    // SAFETY: the child makes only raw system calls (unshare, mount, open, read,
    // write, _exit) on values prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let mut buf = [0u8; 32];
            let mut n = 0isize;
            if libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    fstype.as_ptr(),
                    dir.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0
            {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                }
            }
            if n > 0 {
                libc::write(fds[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: the parent's write end, closed once.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours alone from here on.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let mut text = String::new();
    if pid > 0 {
        use std::io::Read;
        let _ = std::fs::File::from(r).read_to_string(&mut text);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
    text.trim().parse().ok()
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

/// Where one count comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The count (`syscalls`).
    pub count: &'static str,
    /// Its source, for the sample's notes (`perf raw_syscalls:sys_enter`).
    pub from: String,
    /// Whether it counts every operation (false: a lower bound).
    pub exact: bool,
}

/// What a workload did while it was counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Wall time counted, seconds.
    pub window_s: f64,
    /// Every (name, total) counted.
    pub totals: Vec<(&'static str, f64)>,
    /// Where the counts that have more than one possible source come from.
    pub sources: Vec<Source>,
}

impl Counter {
    /// Start counting this thread and what it starts from now on. The
    /// `raw_syscalls:sys_enter` tracepoint, where it opens, slows every system
    /// call of the machine until [`Counter::finish`] closes it: count only
    /// repetitions that are not measured (measured here, 2026-11-30: native
    /// `dd-zero` 1,792–1,854 MB/s traced against 2,293–2,317 untraced).
    pub fn start() -> Counter {
        let syscalls = sys_enter_id().and_then(|id| perf_open(PERF_TYPE_TRACEPOINT, id));
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

    /// Stop (closing the counters) and say what was counted.
    pub fn finish(self) -> Counts {
        let window_s = self.start.elapsed().as_secs_f64();
        let perf = |fd: &Option<OwnedFd>| fd.as_ref().and_then(perf_read).map(|v| v as f64);
        let (syscalls_perf, faults_perf, switches_perf) = (
            perf(&self.syscalls),
            perf(&self.faults),
            perf(&self.switches),
        );
        // Closed before the snapshot: nothing traced after the window.
        drop((self.syscalls, self.faults, self.switches));
        let after = snapshot();
        let d = |f: fn(&Snapshot) -> f64| (f(&after) - f(&self.before)).max(0.0);
        let pick = |count: &'static str,
                    perf: Option<f64>,
                    perf_from: &str,
                    else_from: &str,
                    other: f64,
                    other_exact: bool| match perf {
            Some(v) => (
                v,
                Source {
                    count,
                    from: perf_from.into(),
                    exact: true,
                },
            ),
            None => (
                other,
                Source {
                    count,
                    from: else_from.into(),
                    exact: other_exact,
                },
            ),
        };
        let (syscalls, s1) = pick(
            "syscalls",
            syscalls_perf,
            "perf raw_syscalls:sys_enter",
            "/proc/self/io syscr+syscw (read/write family only)",
            d(|s| s.syscr) + d(|s| s.syscw),
            false,
        );
        let (faults, s2) = pick(
            "minor_faults",
            faults_perf,
            "perf",
            "getrusage",
            d(|s| s.minflt),
            true,
        );
        let (switches, s3) = pick(
            "ctx_switches",
            switches_perf,
            "perf",
            "getrusage",
            d(|s| s.csw),
            true,
        );
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
            sources: vec![s1, s2, s3],
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

/// Fold what was counted into a workload's metrics, and say where each count
/// came from. A workload that knows a count exactly reports it itself as a
/// `count.*` metric (net-rr: its system calls per transaction); that figure is
/// kept unless an exact counter measured the same count, and replaces a lower
/// bound.
pub fn merge(counts: &Counts, workload_metrics: &mut Vec<Metric>) -> String {
    let Some(headline) = workload_metrics.first().cloned() else {
        return String::new();
    };
    let mut notes = Vec::new();
    for m in metrics(counts, &headline) {
        let name = m.name[PREFIX.len()..].to_string();
        let source = counts.sources.iter().find(|s| s.count == name);
        let exact = source.is_none_or(|s| s.exact);
        match workload_metrics.iter_mut().find(|w| w.name == m.name) {
            Some(_) if !exact => notes.push(format!("{name}: the workload's own count")),
            Some(own) => {
                *own = m;
                if let Some(s) = source {
                    notes.push(format!("{name}: {}", s.from));
                }
            }
            None => {
                if let Some(s) = source {
                    notes.push(format!("{name}: {}", s.from));
                }
                workload_metrics.push(m);
            }
        }
    }
    notes.join(", ")
}

/// Remove the counts a workload reported itself, from a repetition that was not
/// counted: counts come from the counted warm-up alone, one source per metric.
pub fn strip(workload_metrics: &mut Vec<Metric>) {
    workload_metrics.retain(|m| !m.name.starts_with(PREFIX));
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
            sources: vec![],
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
        let source = counts
            .sources
            .iter()
            .find(|s| s.count == "syscalls")
            .unwrap();
        // perf sees every call (>= 1100); /proc/self/io only the reads (>= 100).
        assert!(sys >= 100.0, "{sys} ({source:?})");
        if source.exact {
            assert!(source.from.contains("raw_syscalls"), "{source:?}");
            assert!(sys >= 1100.0, "{sys}");
        }
    }

    fn counted(syscalls_exact: bool) -> Counts {
        Counts {
            window_s: 1.0,
            totals: vec![("syscalls", 2100.0), ("ctx_switches", 1000.0)],
            sources: vec![
                Source {
                    count: "syscalls",
                    from: if syscalls_exact { "tracepoint" } else { "io" }.into(),
                    exact: syscalls_exact,
                },
                Source {
                    count: "ctx_switches",
                    from: "perf".into(),
                    exact: true,
                },
            ],
        }
    }

    #[test]
    fn a_workloads_own_count_beats_a_lower_bound_and_yields_to_an_exact_counter() {
        let own = || {
            vec![
                Metric::higher("transactions", "tx/s", 1000.0),
                Metric::lower("count.syscalls", "per tx", 2.0),
            ]
        };
        let value = |ms: &[Metric], name: &str| ms.iter().find(|m| m.name == name).unwrap().value;
        // /proc/self/io would say 2.1 per tx: a lower bound, the workload's 2.0 stays.
        let mut ms = own();
        let note = merge(&counted(false), &mut ms);
        assert_eq!(value(&ms, "count.syscalls"), 2.0);
        assert_eq!(value(&ms, "count.ctx_switches"), 1.0);
        assert_eq!(ms.len(), 3, "{ms:?}");
        assert!(
            note.contains("syscalls: the workload's own count"),
            "{note}"
        );
        assert!(note.contains("ctx_switches: perf"), "{note}");
        // The tracepoint counts every call: its 2.1 replaces the workload's figure.
        let mut ms = own();
        let note = merge(&counted(true), &mut ms);
        assert_eq!(value(&ms, "count.syscalls"), 2.1);
        assert!(note.contains("syscalls: tracepoint"), "{note}");
        // Not counted: the workload's own count goes too.
        let mut ms = own();
        strip(&mut ms);
        assert_eq!(ms.len(), 1);
    }
}
