//! `cpu-int` and `cpu-fp`: BYTEmark (nbench) integer and floating-point indexes.
//!
//! nbench runs each of its kernels repeatedly, times only the kernel itself (data
//! preparation and checking are outside the stopwatch), turns that into iterations
//! per second, divides by a reference machine's rate and reports the geometric mean of
//! those ratios as an index. virtmark does the same with its own implementations of
//! the kernels ([`int`]: numeric sort, string sort, bitfield, IDEA, Huffman,
//! assignment; [`fp`]: Fourier coefficients, neural net, LU decomposition).
//!
//! Each kernel runs for an equal share of the duration (at least [`MIN_ITERATIONS`]
//! iterations) and reports `iter/s`, one over the median time of the timed part of
//! an iteration (see [`measure`] for why the median). Every iteration's result is checked against
//! an independent computation or an exact expected value, so work the optimizer
//! removed would fail the run rather than inflate it.
//!
//! The index is `geomean(rate_k / REF_k)`. The `REF_k` constants (each kernel's
//! `reference`) are fixed: one hundredth of the rate the release build reached on the
//! development machine (AMD EPYC, family 25 model 17, 2 vCPUs of a KVM guest, Debian
//! 12, rustc 1.95), so that machine scores about 100 when idle. They were taken as
//! the best of eight 2-second runs, because other processes shared the machine and can
//! only lower a rate. They are not measured at run time; changing what one iteration
//! does means changing its constant.

use std::time::{Duration, Instant};

use super::{Class, Ctx, Metric, Outcome, Workload, WorkloadError};

mod fp;
mod int;

/// BYTEmark integer index.
pub static CPU_INT: Workload = Workload {
    name: "cpu-int",
    stands_for: "nbench (BYTEmark) integer index",
    class: Class::Cpu,
    metric: "index",
    unit: "index",
    higher_is_better: true,
    needs_peer: false,
    description: "nbench integer kernels (numeric sort, string sort, bitfield, IDEA, Huffman, assignment): geometric mean of rates against fixed reference rates",
    available: super::always,
    run: run_int,
};

/// BYTEmark floating-point index.
pub static CPU_FP: Workload = Workload {
    name: "cpu-fp",
    stands_for: "nbench (BYTEmark) floating-point index",
    class: Class::Cpu,
    metric: "index",
    unit: "index",
    higher_is_better: true,
    needs_peer: false,
    description: "nbench floating-point kernels (Fourier coefficients, neural net, LU decomposition): geometric mean of rates against fixed reference rates",
    available: super::always,
    run: run_fp,
};

/// Fewest iterations of each kernel, whatever the duration.
const MIN_ITERATIONS: u64 = 3;

/// One kernel, prepared: its data is set up, and each call runs one iteration.
pub(crate) trait Bench {
    /// Run one iteration and return the time spent in its timed part. Preparation
    /// (restoring input data) and checking happen outside that time.
    fn iteration(&mut self) -> Result<Duration, WorkloadError>;
}

/// A kernel of an index.
pub(crate) struct Kernel {
    /// Metric name (`numeric_sort`).
    pub name: &'static str,
    /// Reference rate in iterations per second (see the module docs).
    pub reference: f64,
    /// What one iteration is, for the notes.
    pub iteration: &'static str,
    /// Prepare the kernel's data.
    pub setup: fn() -> Box<dyn Bench>,
}

fn run_int(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    run_index(ctx, int::KERNELS)
}

fn run_fp(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    run_index(ctx, fp::KERNELS)
}

fn run_index(ctx: &Ctx, kernels: &[Kernel]) -> Result<Outcome, WorkloadError> {
    let share = ctx.duration / kernels.len() as u32;
    let mut rates = Vec::with_capacity(kernels.len());
    let mut notes = Vec::new();
    for (i, k) in kernels.iter().enumerate() {
        (ctx.progress)(i as f64 / kernels.len() as f64, k.name);
        let mut bench = (k.setup)();
        let (rate, iterations) = measure(bench.as_mut(), share)?;
        notes.push(format!(
            "{}: {iterations} iterations of {}",
            k.name, k.iteration
        ));
        rates.push(rate);
    }
    let index = index(
        &rates
            .iter()
            .zip(kernels)
            .map(|(r, k)| r / k.reference)
            .collect::<Vec<_>>(),
    );
    let mut metrics = vec![Metric::higher("index", "index", index)];
    metrics.extend(
        kernels
            .iter()
            .zip(&rates)
            .map(|(k, &r)| Metric::higher(k.name, "iter/s", r)),
    );
    Ok(Outcome { metrics, notes })
}

/// Run `bench` for `share` of wall time (at least [`MIN_ITERATIONS`] iterations);
/// returns iterations per second and the number of iterations.
///
/// The rate is one over the median iteration time, not iterations over their summed
/// time. An iteration lasts a fraction of a millisecond, less than a scheduler time
/// slice: on a machine where other processes run, the few iterations during which
/// the kernel thread was preempted last a whole slice longer, and their sum swung the
/// rate by 10–20% from one sample to the next (`cpu-fp` CoV 17.7% on an idle 2-core
/// machine, 6–10% while others built). The median ignores them as long as fewer than
/// half the iterations were interrupted, while a cost that every iteration pays —
/// slower memory paths, trapped instructions, emulation — moves it like the sum.
fn measure(bench: &mut dyn Bench, share: Duration) -> Result<(f64, u64), WorkloadError> {
    let start = Instant::now();
    // Sized up front, so that the timed loop never reallocates.
    let mut times: Vec<Duration> = Vec::with_capacity(4096);
    while times.len() < MIN_ITERATIONS as usize || start.elapsed() < share {
        times.push(bench.iteration()?);
    }
    let iterations = times.len() as u64;
    let secs = median(&mut times).as_secs_f64().max(1e-9);
    Ok((1.0 / secs, iterations))
}

/// Median of `times` (the mean of the middle two for an even count); reorders them.
fn median(times: &mut [Duration]) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.sort_unstable();
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2
    }
}

/// Geometric mean of the ratios (nbench's index).
fn index(ratios: &[f64]) -> f64 {
    if ratios.is_empty() {
        return 0.0;
    }
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

/// A small deterministic generator (SplitMix64, Steele, Lea & Flood 2014), so that
/// every run and every target sorts, ciphers and solves the same data.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wrap a failed self-check.
pub(crate) fn check_failed(kernel: &str, what: String) -> WorkloadError {
    WorkloadError::Failed(format!("{kernel}: result check failed: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn index_is_the_geometric_mean() {
        assert!((index(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert!((index(&[2.0, 8.0, 4.0]) - 4.0).abs() < 1e-12);
        assert_eq!(index(&[]), 0.0);
    }

    #[test]
    fn median_ignores_a_preempted_minority() {
        let ms = Duration::from_millis;
        let mut t = vec![ms(1), ms(9), ms(1), ms(1), ms(2)];
        assert_eq!(median(&mut t), ms(1));
        let mut even = vec![ms(4), ms(2), ms(1), ms(3)];
        assert_eq!(median(&mut even), Duration::from_micros(2500));
        assert_eq!(median(&mut []), Duration::ZERO);
    }

    #[test]
    fn splitmix_matches_reference_output() {
        // First outputs of SplitMix64 seeded with 1234567 (reference C implementation).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn cpu_int_reports_index_and_six_kernels() {
        let out = run_briefly(&CPU_INT, Params::default(), None);
        let names: Vec<_> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "index",
                "numeric_sort",
                "string_sort",
                "bitfield",
                "idea",
                "huffman",
                "assignment"
            ]
        );
    }

    #[test]
    fn cpu_fp_reports_index_and_three_kernels() {
        let out = run_briefly(&CPU_FP, Params::default(), None);
        let names: Vec<_> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["index", "fourier", "neural_net", "lu_decomposition"]
        );
    }

    #[test]
    fn every_kernel_passes_its_own_check() {
        for k in int::KERNELS.iter().chain(fp::KERNELS) {
            let mut b = (k.setup)();
            for _ in 0..2 {
                b.iteration().unwrap_or_else(|e| panic!("{}: {e}", k.name));
            }
        }
    }
}
