//! `mem-bw`: John McCalpin's STREAM — sustainable memory bandwidth of four simple
//! vector kernels on `f64` arrays far larger than the caches.
//!
//! What is timed is what STREAM times: each kernel (copy `c = a`, scale `b = s·c`,
//! add `c = a + b`, triad `a = b + s·c`) separately, over the whole array, once per
//! trial. Trials repeat until the duration has elapsed (at least [`MIN_TRIALS`] in the
//! quick preset, STREAM's default `NTIMES` of 10 in the faithful one); as STREAM does,
//! the first trial is discarded and the best time of the rest is reported — taken,
//! single-threaded, per 1 MiB block and summed (see [`run_trials_single`]). Bytes
//! are counted as STREAM counts them: 16 per element for copy and scale, 24 for add
//! and triad, and rates are in MB/s (10⁶ bytes per second).
//!
//! Arrays are allocated and written (so every page is faulted in) before the first
//! trial; after the last one the arrays are checked against the scalar recurrence of
//! the same operations, like STREAM's `checkSTREAMresults`, so a kernel the optimizer
//! had dropped would fail the run.
//!
//! Parameters: `size` (bytes per array; default 80 MB, i.e. 10⁷ elements, quick, and
//! the larger of 640 MB and four times the last-level cache, faithful; a default that
//! does not fit in the available memory or cgroup limit shrinks to a quarter of it per
//! array, with a note, while an explicit size that does not fit is refused), `threads`
//! (default 1, STREAM compiled without OpenMP: each thread owns one slice of every
//! array, touches it first and runs the kernels on it), `duration`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::{Class, Ctx, Metric, Outcome, Workload, WorkloadError};

/// STREAM (McCalpin) copy/scale/add/triad.
pub static MEM_BW: Workload = Workload {
    name: "mem-bw",
    stands_for: "STREAM (McCalpin) triad",
    class: Class::Memory,
    metric: "triad",
    unit: "MB/s",
    higher_is_better: true,
    needs_peer: false,
    description: "STREAM copy, scale, add and triad on f64 arrays far larger than the caches; best of repeated trials, MB/s",
    available: super::always,
    run,
};

/// STREAM's scalar.
const SCALAR: f64 = 3.0;
/// Fewest trials in the quick preset (the first is discarded).
const MIN_TRIALS: u32 = 3;
/// Fewest trials in the faithful preset: STREAM's default `NTIMES`.
const FAITHFUL_MIN_TRIALS: u32 = 10;
/// Most trials: every trial multiplies the values by 15, and 15^262 overflows an f64,
/// which would defeat the final check.
const MAX_TRIALS: u32 = 200;
/// Quick default: 10⁷ elements per array.
const QUICK_BYTES: u64 = 80_000_000;
/// Faithful default (at least; four times the last-level cache when that is larger).
const FAITHFUL_BYTES: u64 = 640_000_000;
/// Elements of one cache line, for aligning the arrays.
const LINE: usize = 64 / std::mem::size_of::<f64>();

/// The four kernels in STREAM's order, with STREAM's byte counts per element.
const KERNELS: [(&str, u64); 4] = [("copy", 16), ("scale", 16), ("add", 24), ("triad", 24)];

fn run(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let llc = last_level_cache_bytes();
    let avail = mem_available_bytes();
    let mut notes = Vec::new();
    let bytes = match ctx.params.size {
        Some(s) => {
            let bytes = s.bytes();
            if let Some(avail) = avail.filter(|&a| bytes.saturating_mul(3) > a) {
                return Err(WorkloadError::Param(format!(
                    "size {bytes} B per array needs {} MB for three arrays but only {} MB are available",
                    bytes.saturating_mul(3) / 1_000_000,
                    avail / 1_000_000
                )));
            }
            bytes
        }
        None => {
            let default = ctx.pick(QUICK_BYTES, FAITHFUL_BYTES.max(llc.map_or(0, |l| 4 * l)));
            let (bytes, note) = fit_default(default, avail);
            notes.extend(note);
            bytes
        }
    };
    let n = (bytes / 8) as usize;
    if n < 1024 {
        return Err(WorkloadError::Param(format!(
            "size {bytes} B is too small for STREAM: at least 8 KiB per array"
        )));
    }
    let threads = ctx.params.threads.unwrap_or(1);
    if threads == 0 || threads > 1024 {
        return Err(WorkloadError::Param(format!(
            "threads {threads}: expected 1 to 1024"
        )));
    }
    let threads = (threads as usize).min(n / LINE);
    let min_trials = ctx.pick(MIN_TRIALS, FAITHFUL_MIN_TRIALS);

    (ctx.progress)(0.0, "allocating");
    let mut a = Aligned::new(n, 0);
    let mut b = Aligned::new(n, 1);
    let mut c = Aligned::new(n, 2);
    let plan = TrialPlan {
        duration: ctx.duration,
        min_trials,
        progress: ctx.progress,
    };
    // The arrays are allocated and faulted in: the measured window starts (after
    // the step's barrier, or the runner's, which measures a round's samples of
    // `mem-bw` one right after the other: `workloads::SET_UP_TOGETHER`).
    let measured = if threads == 1 {
        init(a.get_mut(), b.get_mut(), c.get_mut());
        ctx.begin_measuring()?;
        run_trials_single(&plan, a.get_mut(), b.get_mut(), c.get_mut())
    } else {
        best_of_trials(&run_trials_threaded(
            &plan,
            &|| ctx.begin_measuring(),
            threads,
            a.get_mut(),
            b.get_mut(),
            c.get_mut(),
        )?)
    };
    let trials = measured.count;
    check(a.get(), b.get(), c.get(), trials)?;

    let mut metrics = Vec::with_capacity(4);
    for (k, (name, per_elem)) in KERNELS.iter().enumerate() {
        let best = measured.best[k].max(1e-9);
        metrics.push(Metric::higher(
            name,
            "MB/s",
            (per_elem * n as u64) as f64 / best / 1e6,
        ));
    }
    // Headline first: triad.
    metrics.rotate_right(1);
    let how = if threads == 1 {
        "each 1 MiB block's best time, summed"
    } else {
        "best whole pass"
    };
    notes.insert(0, format!(
        "{n} f64 elements per array ({} MB each, {} MB total), {threads} thread(s), {} trials (first discarded), {how}",
        n * 8 / 1_000_000,
        3 * n * 8 / 1_000_000,
        trials
    ));
    if let Some(l) = llc {
        if (n as u64) * 8 < 4 * l {
            notes.push(format!(
                "arrays are smaller than 4x the last-level cache ({} KiB): STREAM's rule is not met",
                l / 1024
            ));
        }
    }
    Ok(Outcome { metrics, notes })
}

/// When to stop repeating trials.
struct TrialPlan<'a> {
    duration: Duration,
    min_trials: u32,
    progress: &'a dyn Fn(f64, &str),
}

impl TrialPlan<'_> {
    /// Whether another trial should run after `done` trials that began at `start`.
    fn more(&self, done: u32, start: Instant) -> bool {
        let elapsed = start.elapsed();
        (self.progress)(
            (elapsed.as_secs_f64() / self.duration.as_secs_f64().max(1e-9)).min(1.0),
            "trials",
        );
        done < MAX_TRIALS && (done < self.min_trials || elapsed < self.duration)
    }
}

/// A `Vec<f64>` viewed from a 64-byte-aligned element, as STREAM's static arrays are
/// aligned. Array `k` starts `k` KiB past a page boundary: large allocations all start
/// at the same offset in a page, and three streams whose addresses are equal modulo
/// 4 KiB make loads falsely depend on stores ("4K aliasing"), which costs a few
/// percent; STREAM's contiguous static arrays (and its `OFFSET`) avoid the same thing.
struct Aligned {
    buf: Vec<f64>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize, k: usize) -> Self {
        const PAGE: usize = 4096 / std::mem::size_of::<f64>();
        const STAGGER: usize = 1024 / std::mem::size_of::<f64>();
        // Zeroed memory straight from the allocator (calloc: fresh pages, not yet
        // touched), so that `init` faults every page in, in the thread that uses it.
        let buf = vec![0.0f64; len + 2 * PAGE];
        let page_pos = (buf.as_ptr() as usize % 4096) / std::mem::size_of::<f64>();
        let off = (PAGE - page_pos) % PAGE + (k * STAGGER) % PAGE;
        Aligned { buf, off, len }
    }
    fn get(&self) -> &[f64] {
        &self.buf[self.off..self.off + self.len]
    }
    fn get_mut(&mut self) -> &mut [f64] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// STREAM's initial values, written in one loop as STREAM does, so that the three
/// arrays' pages are faulted in (and get physical memory) in step.
fn init(a: &mut [f64], b: &mut [f64], c: &mut [f64]) {
    for ((a, b), c) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()) {
        *a = 1.0;
        *b = 2.0;
        *c = 0.0;
    }
}

fn copy(c: &mut [f64], a: &[f64]) {
    for (c, &a) in c.iter_mut().zip(a) {
        *c = a;
    }
}

fn scale(b: &mut [f64], c: &[f64], s: f64) {
    for (b, &c) in b.iter_mut().zip(c) {
        *b = s * c;
    }
}

fn add(c: &mut [f64], a: &[f64], b: &[f64]) {
    for ((c, &a), &b) in c.iter_mut().zip(a).zip(b) {
        *c = a + b;
    }
}

fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

/// Run kernel `k` (index into [`KERNELS`]) over one set of slices.
fn kernel(k: usize, a: &mut [f64], b: &mut [f64], c: &mut [f64]) {
    let s = black_box(SCALAR);
    match k {
        0 => copy(c, a),
        1 => scale(b, c, s),
        2 => add(c, a, b),
        _ => triad(a, b, c, s),
    }
    black_box((a, b, c));
}

/// Elements of one timed block of the single-threaded trials: 1 MiB of each array.
const BLOCK: usize = 1 << 17;

/// What the trials measured: how many ran, and the best time of each kernel.
struct Trials {
    count: u32,
    best: [f64; 4],
}

/// Single-threaded trials. Each kernel still sweeps the whole arrays once per trial,
/// in STREAM's order, but its time is taken per [`BLOCK`]: the best time of a kernel
/// is the sum over blocks of each block's best time over the trials (the first trial
/// skipped, as STREAM skips it). A whole-array pass lasts tens of milliseconds, so
/// on a machine where other processes run nearly every pass loses a scheduler time
/// slice or two, and the best whole pass swung by 10% from one run to the next; a
/// block lasts a fraction of a millisecond, and one that was preempted in one trial
/// ran undisturbed in another. A cost that every access pays (a slower memory path,
/// nested paging) is in every block's best time.
fn run_trials_single(plan: &TrialPlan, a: &mut [f64], b: &mut [f64], c: &mut [f64]) -> Trials {
    let n = a.len();
    let blocks: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(BLOCK)
        .map(|s| s..(s + BLOCK).min(n))
        .collect();
    let mut first = vec![[0.0f64; 4]; blocks.len()];
    let mut best = vec![[f64::INFINITY; 4]; blocks.len()];
    let start = Instant::now();
    let mut count = 0u32;
    while plan.more(count, start) {
        for k in 0..KERNELS.len() {
            for (i, r) in blocks.iter().enumerate() {
                let t0 = Instant::now();
                kernel(k, &mut a[r.clone()], &mut b[r.clone()], &mut c[r.clone()]);
                let t = t0.elapsed().as_secs_f64();
                if count == 0 {
                    first[i][k] = t;
                } else {
                    best[i][k] = best[i][k].min(t);
                }
            }
        }
        count += 1;
    }
    let per_block = if count > 1 { &best } else { &first };
    let mut total = [0.0f64; 4];
    for b in per_block {
        for (t, x) in total.iter_mut().zip(b) {
            *t += x;
        }
    }
    Trials { count, best: total }
}

/// Best time of each kernel over whole-trial times, skipping the first trial as
/// STREAM does (unless it is the only one).
fn best_of_trials(times: &[[f64; 4]]) -> Trials {
    let counted = if times.len() > 1 { &times[1..] } else { times };
    let mut best = [f64::INFINITY; 4];
    for t in counted {
        for (b, x) in best.iter_mut().zip(t) {
            *b = b.min(*x);
        }
    }
    Trials {
        count: times.len() as u32,
        best,
    }
}

/// Command to the workers: run kernel 0..=3, or stop.
const STOP: u8 = u8::MAX;

/// Multi-threaded trials: each thread owns one slice of every array, touches it
/// first, then runs each kernel between two barriers; the coordinator's clock spans
/// from releasing the workers to the last one finishing.
fn run_trials_threaded(
    plan: &TrialPlan,
    begin: &dyn Fn() -> Result<(), WorkloadError>,
    threads: usize,
    a: &mut [f64],
    b: &mut [f64],
    c: &mut [f64],
) -> Result<Vec<[f64; 4]>, WorkloadError> {
    let n = a.len();
    // Slices start on cache-line boundaries.
    let chunk = n.div_ceil(threads).div_ceil(LINE) * LINE;
    // Rounding the chunks up to whole lines may leave fewer of them than `threads`.
    let workers = n.div_ceil(chunk);
    let barrier = Barrier::new(workers + 1);
    let command = AtomicU8::new(STOP);
    std::thread::scope(|scope| {
        for ((a, b), c) in a
            .chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .zip(c.chunks_mut(chunk))
        {
            let barrier = &barrier;
            let command = &command;
            scope.spawn(move || {
                init(a, b, c);
                barrier.wait();
                loop {
                    barrier.wait();
                    let k = command.load(Ordering::Acquire);
                    if k == STOP {
                        return;
                    }
                    kernel(k as usize, a, b, c);
                    barrier.wait();
                }
            });
        }
        barrier.wait(); // every slice initialized
        if let Err(e) = begin() {
            command.store(STOP, Ordering::Release);
            barrier.wait();
            return Err(e);
        }
        let start = Instant::now();
        let mut times = Vec::new();
        while plan.more(times.len() as u32, start) {
            let mut t = [0.0; 4];
            for (k, slot) in t.iter_mut().enumerate() {
                command.store(k as u8, Ordering::Release);
                let t0 = Instant::now();
                barrier.wait();
                barrier.wait();
                *slot = t0.elapsed().as_secs_f64();
            }
            times.push(t);
        }
        command.store(STOP, Ordering::Release);
        barrier.wait();
        Ok(times)
    })
}

/// Expected values after `trials` trials, by running the same operations on scalars
/// (STREAM's `checkSTREAMresults`).
fn expected(trials: u32) -> (f64, f64, f64) {
    let (mut a, mut b, mut c) = (1.0f64, 2.0f64, 0.0f64);
    for _ in 0..trials {
        c = a;
        b = SCALAR * c;
        c = a + b;
        a = b + SCALAR * c;
    }
    (a, b, c)
}

/// Check every element against the scalar recurrence; STREAM's tolerance for f64.
fn check(a: &[f64], b: &[f64], c: &[f64], trials: u32) -> Result<(), WorkloadError> {
    let (ea, eb, ec) = expected(trials);
    for (name, arr, e) in [("a", a, ea), ("b", b, eb), ("c", c, ec)] {
        let err: f64 = arr.iter().map(|&x| (x - e).abs()).sum::<f64>() / arr.len() as f64;
        let relative = err / e.abs().max(f64::MIN_POSITIVE);
        if relative.is_nan() || relative > 1e-13 {
            return Err(WorkloadError::Failed(format!(
                "STREAM validation failed: array {name} has mean error {err:e}, expected value {e:e}"
            )));
        }
    }
    Ok(())
}

/// Resolve mem-bw's parameters once for every target: the default array size from
/// the preset and the host's last-level cache, shrunk to a quarter of `memory` (what
/// each target gets) when three arrays would not fit in it, and one thread.
pub(super) fn resolve(preset: super::Preset, p: &mut super::Params, host: &super::Host) {
    if p.size.is_none() {
        let default = match preset {
            super::Preset::Quick => QUICK_BYTES,
            super::Preset::Faithful => FAITHFUL_BYTES.max(host.llc.map_or(0, |l| 4 * l)),
        };
        let (bytes, _) = fit_default(default, Some(host.memory));
        p.size = Some(crate::units::ByteSize(bytes));
    }
    p.threads.get_or_insert(1);
}

/// The last-level cache of this machine, for [`super::Host`].
pub(super) fn host_llc() -> Option<u64> {
    last_level_cache_bytes()
}

/// A default array size that does not fit (a small VM, the scalability step's split
/// memory budget) shrinks to a quarter of the available memory per array.
fn fit_default(default: u64, avail: Option<u64>) -> (u64, Option<String>) {
    match avail.filter(|&a| default > a / 4) {
        Some(a) => (
            a / 4,
            Some(format!(
                "default array size {default} B reduced to fit {} MB of available memory",
                a / 1_000_000
            )),
        ),
        None => (default, None),
    }
}

/// Memory this process may still use: `MemAvailable` from `/proc/meminfo`, lowered to
/// the room left under a cgroup v2 limit (containers; `None` when neither can be read).
fn mem_available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        });
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cgroup =
        read("memory.max").map(|max| max.saturating_sub(read("memory.current").unwrap_or(0)));
    match (meminfo, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Size of the largest CPU cache, from sysfs (`None` when it cannot be read).
fn last_level_cache_bytes() -> Option<u64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("size")).ok())
        .filter_map(|s| parse_cache_size(&s))
        .max()
}

/// Parse sysfs cache sizes such as `32768K` or `2M`.
fn parse_cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|v| v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn mem_bw_measures_four_kernels() {
        let out = run_briefly(
            &MEM_BW,
            Params {
                size: Some(ByteSize::mib(4)),
                ..Params::default()
            },
            None,
        );
        let names: Vec<_> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["triad", "copy", "scale", "add"]);
    }

    #[test]
    fn mem_bw_runs_threaded() {
        run_briefly(
            &MEM_BW,
            Params {
                size: Some(ByteSize::mib(4)),
                threads: Some(3),
                ..Params::default()
            },
            None,
        );
    }

    #[test]
    fn mem_bw_threads_outnumbering_cache_line_chunks_do_not_hang() {
        // 1024 elements in 16-element chunks for 100 threads: 64 workers.
        run_briefly(
            &MEM_BW,
            Params {
                size: Some(ByteSize::kib(8)),
                threads: Some(100),
                ..Params::default()
            },
            None,
        );
    }

    #[test]
    fn mem_bw_rejects_tiny_arrays_and_zero_threads() {
        let dir = tempfile::tempdir().unwrap();
        for params in [
            Params {
                size: Some(ByteSize(100)),
                ..Params::default()
            },
            Params {
                threads: Some(0),
                ..Params::default()
            },
        ] {
            let ctx = Ctx {
                preset: crate::workloads::Preset::Quick,
                duration: Duration::from_millis(10),
                params: &params,
                scratch: dir.path(),
                peer: None,
                progress: &|_, _| {},
                begin: &|| Ok(()),
            };
            assert!(matches!(run(&ctx), Err(WorkloadError::Param(_))));
        }
    }

    #[test]
    fn expected_values_follow_stream_recurrence() {
        // One trial from a=1, b=2, c=0: c=1, b=3, c=4, a=3+12=15.
        assert_eq!(expected(1), (15.0, 3.0, 4.0));
        assert_eq!(expected(2), (225.0, 45.0, 60.0));
        assert!(expected(MAX_TRIALS).0.is_finite());
    }

    #[test]
    fn check_catches_a_skipped_kernel() {
        let n = 4096;
        let (mut a, mut b, mut c) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        init(&mut a, &mut b, &mut c);
        for k in 0..4 {
            kernel(k, &mut a, &mut b, &mut c);
        }
        assert!(check(&a, &b, &c, 1).is_ok());
        // A second trial without the triad.
        for k in 0..3 {
            kernel(k, &mut a, &mut b, &mut c);
        }
        assert!(check(&a, &b, &c, 2).is_err());
    }

    #[test]
    fn default_size_shrinks_to_fit_memory() {
        assert_eq!(fit_default(80_000_000, None), (80_000_000, None));
        assert_eq!(fit_default(80_000_000, Some(1 << 30)), (80_000_000, None));
        let (bytes, note) = fit_default(640_000_000, Some(101 << 20));
        assert_eq!(bytes, (101 << 20) / 4);
        assert!(note.is_some());
    }

    #[test]
    fn parses_sysfs_cache_sizes() {
        assert_eq!(parse_cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("x"), None);
    }

    #[test]
    fn arrays_are_staggered_within_a_page() {
        for k in 0..4 {
            let mut v = Aligned::new(1000, k);
            assert_eq!(v.get_mut().as_ptr() as usize % 4096, k * 1024);
            assert_eq!(v.get().len(), 1000);
        }
    }
}
