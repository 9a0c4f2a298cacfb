//! Small, pure statistics over repeated samples.
//!
//! - Median, mean, sample standard deviation (n − 1) and coefficient of variation
//!   are the textbook definitions.
//! - Confidence intervals use the percentile bootstrap (Efron & Tibshirani, *An
//!   Introduction to the Bootstrap*, 1993, ch. 13): resample with replacement,
//!   recompute the statistic, take the 2.5th and 97.5th percentiles. The ratio of
//!   two medians resamples both groups independently (two-sample bootstrap, ibid.
//!   ch. 8). The generator is seeded so a report is reproducible.

/// Resamples drawn for each bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// A result whose coefficient of variation exceeds this is flagged as noisy.
pub const NOISY_COV: f64 = 0.05;
const SEED: u64 = 0x5eed_7a11;

/// Median of `xs` (mean of the two middle values for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Arithmetic mean; NaN when empty.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (divisor n − 1); 0 for fewer than two values.
pub fn stddev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// Coefficient of variation: standard deviation over mean (0 when the mean is 0).
pub fn cov(xs: &[f64]) -> f64 {
    let m = mean(xs);
    if m == 0.0 || !m.is_finite() {
        0.0
    } else {
        stddev(xs) / m.abs()
    }
}

/// The `q`-quantile (0..=1) of sorted values, linear interpolation between ranks
/// (Hyndman & Fan 1996, definition 7, as R's default).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

fn resampled_median(xs: &[f64], rng: &mut fastrand::Rng, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..xs.len()).map(|_| xs[rng.usize(..xs.len())]));
    buf.sort_by(f64::total_cmp);
    median_sorted(buf)
}

/// Percentile-bootstrap 95% confidence interval of the median: `(low, high)`.
/// A single value gives a degenerate interval at that value; empty gives NaNs.
pub fn bootstrap_median_ci(xs: &[f64]) -> (f64, f64) {
    if xs.len() < 2 {
        let m = median(xs);
        return (m, m);
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut buf = Vec::with_capacity(xs.len());
    let mut meds: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resampled_median(xs, &mut rng, &mut buf))
        .collect();
    meds.sort_by(f64::total_cmp);
    (quantile_sorted(&meds, 0.025), quantile_sorted(&meds, 0.975))
}

/// Normalize a value against a baseline so that 1.0 is the baseline and larger is
/// better whatever the unit: `value / base` when higher is better, else `base / value`.
pub fn ratio(value: f64, base: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        value / base
    } else {
        base / value
    }
}

/// Ratio of medians (see [`ratio`]) with its two-sample percentile-bootstrap 95%
/// confidence interval: `(ratio, low, high)`.
pub fn bootstrap_ratio_ci(target: &[f64], base: &[f64], higher_is_better: bool) -> (f64, f64, f64) {
    let point = ratio(median(target), median(base), higher_is_better);
    if target.is_empty() || base.is_empty() {
        return (point, f64::NAN, f64::NAN);
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let (mut bt, mut bb) = (Vec::new(), Vec::new());
    let mut rs: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let t = resampled_median(target, &mut rng, &mut bt);
            let b = resampled_median(base, &mut rng, &mut bb);
            ratio(t, b, higher_is_better)
        })
        .filter(|r| r.is_finite())
        .collect();
    if rs.is_empty() {
        return (point, f64::NAN, f64::NAN);
    }
    rs.sort_by(f64::total_cmp);
    (
        point,
        quantile_sorted(&rs, 0.025),
        quantile_sorted(&rs, 0.975),
    )
}

/// Jain's fairness index (Jain, Chiu & Hawe, DEC-TR-301, 1984):
/// (Σx)² / (n · Σx²); 1 when all equal, 1/n when one gets everything.
pub fn jain_fairness(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        return f64::NAN;
    }
    sum * sum / (xs.len() as f64 * sq)
}

/// Index of the knee of an aggregate-throughput curve over increasing n: the first
/// point from which the aggregate never again grows by more than `growth` (0.05 =
/// 5%) over the previous point. `None` when it keeps growing to the end.
pub fn knee(aggregates: &[f64], growth: f64) -> Option<usize> {
    let grows = |i: usize| aggregates[i] > aggregates[i - 1] * (1.0 + growth);
    let mut knee = None;
    for i in 1..aggregates.len() {
        if grows(i) {
            knee = None;
        } else if knee.is_none() {
            knee = Some(i);
        }
    }
    knee
}

/// Everything kept about one series of kept samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Sample standard deviation.
    pub stddev: f64,
    /// Coefficient of variation.
    pub cov: f64,
    /// Bootstrap 95% CI of the median, low end.
    pub ci_low: f64,
    /// Bootstrap 95% CI of the median, high end.
    pub ci_high: f64,
    /// CoV above [`NOISY_COV`].
    pub noisy: bool,
}

/// Summarize a series of samples.
pub fn summarize(xs: &[f64]) -> Summary {
    let (ci_low, ci_high) = bootstrap_median_ci(xs);
    let cov = cov(xs);
    Summary {
        n: xs.len(),
        median: median(xs),
        mean: mean(xs),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        stddev: stddev(xs),
        cov,
        ci_low,
        ci_high,
        noisy: cov > NOISY_COV,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn spread_against_hand_computed_values() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squares 32, s = sqrt(32/7).
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!(close(mean(&xs), 5.0));
        assert!(close(stddev(&xs), (32.0f64 / 7.0).sqrt()));
        assert!(close(cov(&xs), (32.0f64 / 7.0).sqrt() / 5.0));
        assert_eq!(stddev(&[1.0]), 0.0);
        let s = summarize(&xs);
        assert_eq!((s.n, s.min, s.max, s.median), (8, 2.0, 9.0, 4.5));
        assert!(s.noisy);
        assert!(!summarize(&[100.0, 101.0, 99.0]).noisy);
    }

    #[test]
    fn quantiles_interpolate_like_r_type_7() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!(close(quantile_sorted(&v, 0.5), 2.5));
        assert!(close(quantile_sorted(&v, 0.25), 1.75));
        assert!(close(quantile_sorted(&v, 1.0), 4.0));
    }

    #[test]
    fn bootstrap_ci_brackets_the_median_within_the_range() {
        let xs = [10.0, 11.0, 9.0, 10.5, 9.5, 10.2];
        let (lo, hi) = bootstrap_median_ci(&xs);
        let m = median(&xs);
        assert!(lo <= m && m <= hi, "{lo} <= {m} <= {hi}");
        assert!(lo >= 9.0 && hi <= 11.0);
        assert!(hi > lo);
        // Reproducible.
        assert_eq!(bootstrap_median_ci(&xs), (lo, hi));
        // Identical samples: a degenerate interval.
        assert_eq!(bootstrap_median_ci(&[5.0, 5.0, 5.0]), (5.0, 5.0));
    }

    #[test]
    fn fairness_and_knee_against_hand_computed_values() {
        assert!(close(jain_fairness(&[5.0, 5.0, 5.0, 5.0]), 1.0));
        assert!(close(jain_fairness(&[1.0, 0.0, 0.0, 0.0]), 0.25));
        // (1+2+3)^2 / (3 * 14) = 36/42
        assert!(close(jain_fairness(&[1.0, 2.0, 3.0]), 36.0 / 42.0));
        // Grows 100 -> 190 -> 250 (+31%) -> 255 (+2%) -> 250: knee at index 3.
        assert_eq!(knee(&[100.0, 190.0, 250.0, 255.0, 250.0], 0.05), Some(3));
        assert_eq!(knee(&[100.0, 200.0, 400.0], 0.05), None);
        // A dip then growth again: no knee yet at the dip.
        assert_eq!(knee(&[100.0, 101.0, 150.0], 0.05), None);
    }

    #[test]
    fn ratio_is_higher_is_better_whatever_the_unit() {
        assert!(close(ratio(50.0, 100.0, true), 0.5)); // half the throughput
        assert!(close(ratio(20.0, 10.0, false), 0.5)); // twice the time
        let (r, lo, hi) = bootstrap_ratio_ci(&[50.0, 50.0, 50.0], &[100.0, 100.0, 100.0], true);
        assert_eq!((r, lo, hi), (0.5, 0.5, 0.5));
        let (r, lo, hi) = bootstrap_ratio_ci(&[48.0, 50.0, 52.0], &[99.0, 100.0, 101.0], true);
        assert!(close(r, 0.5));
        assert!(lo < r && r < hi && lo > 0.47 && hi < 0.53, "{lo} {r} {hi}");
    }
}
