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

/// Splits enumerated exactly by [`mann_whitney`] before it switches to random
/// splits.
pub const EXACT_SPLIT_LIMIT: u64 = 50_000;
/// Random splits drawn when exact enumeration would be larger.
pub const RANDOM_SPLITS: usize = 20_000;

/// Result of a two-sample rank test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// Mann–Whitney U of the first sample (ties count one half).
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// The smallest p-value these samples could give at all (the most extreme
    /// split): a test whose `min_p` is above the significance level cannot detect
    /// any change.
    pub min_p: f64,
    /// Whether every split was enumerated (else random splits were drawn).
    pub exact: bool,
    /// Splits evaluated.
    pub splits: u64,
}

/// Binomial coefficient, saturating at `u64::MAX`.
pub fn binomial(n: u64, k: u64) -> u64 {
    let k = k.min(n - k.min(n));
    let mut acc: u128 = 1;
    for i in 0..k {
        acc = acc * (n - i) as u128 / (i + 1) as u128;
        if acc > u64::MAX as u128 {
            return u64::MAX;
        }
    }
    acc as u64
}

/// Twice the mid-ranks (1-based; tied values share the mean of their ranks) of
/// `xs`, as integers so that sums compare exactly.
fn doubled_midranks(xs: &[f64]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut r = vec![0u64; xs.len()];
    let mut k = 0;
    while k < order.len() {
        let mut e = k;
        while e + 1 < order.len() && xs[order[e + 1]] == xs[order[k]] {
            e += 1;
        }
        // Ranks k+1 ..= e+1 share (k+1 + e+1) / 2; doubled: k + e + 2.
        for &i in &order[k..=e] {
            r[i] = (k + e + 2) as u64;
        }
        k = e + 1;
    }
    r
}

/// Two-sided Mann–Whitney U test (Mann & Whitney, "On a test of whether one of two
/// random variables is stochastically larger than the other", Ann. Math. Statist.
/// 18(1), 1947), computed as the exact permutation distribution of the rank sum:
/// every split of the pooled samples into groups of the original sizes is equally
/// likely under the null hypothesis, and the p-value is the share of splits whose
/// |U − n_a·n_b/2| is at least the observed one. With ties this is the exact
/// conditional test on mid-ranks (Hollander & Wolfe, *Nonparametric Statistical
/// Methods*, 2nd ed., 1999, §4.1).
///
/// Every split is enumerated while there are at most [`EXACT_SPLIT_LIMIT`]; beyond
/// that [`RANDOM_SPLITS`] seeded random splits are drawn and p = (b + 1) / (m + 1)
/// (Phipson & Smyth, "Permutation p-values should never be zero", Stat. Appl.
/// Genet. Mol. Biol. 9(1), 2010).
///
/// Small samples bound what can be shown: with 3 and 3 values there are 20 splits
/// and the two mirror-image extremes give p ≥ 2/20 = 0.1, so nothing is
/// significant at 0.05; 4 and 4 give 70 splits and p ≥ 2/70 ≈ 0.029. `min_p` says
/// so for the samples at hand.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> RankTest {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return RankTest {
            u: f64::NAN,
            p: 1.0,
            min_p: 1.0,
            exact: true,
            splits: 0,
        };
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let n = pooled.len();
    let r2 = doubled_midranks(&pooled);
    // Doubled U deviation: |2·W − na(n+1)| where W is A's rank sum; 2W = Σ r2.
    let centre = (na * (n + 1)) as i64;
    let dev = |sum2: u64| (sum2 as i64 - centre).unsigned_abs();
    let observed_sum: u64 = r2[..na].iter().sum();
    let observed = dev(observed_sum);
    let u = observed_sum as f64 / 2.0 - (na * (na + 1)) as f64 / 2.0;
    let total = binomial(n as u64, na as u64);
    if n < 64 && total <= EXACT_SPLIT_LIMIT {
        let (mut hits, mut at_max, mut max) = (0u64, 0u64, 0u64);
        // Gosper's hack: every n-bit mask with exactly `na` bits set.
        let mut m: u64 = (1u64 << na) - 1;
        let limit = 1u64 << n;
        while m < limit {
            let sum: u64 = (0..n).filter(|i| m >> i & 1 == 1).map(|i| r2[i]).sum();
            let d = dev(sum);
            if d >= observed {
                hits += 1;
            }
            match d.cmp(&max) {
                std::cmp::Ordering::Greater => {
                    max = d;
                    at_max = 1;
                }
                std::cmp::Ordering::Equal => at_max += 1,
                std::cmp::Ordering::Less => {}
            }
            let c = m & m.wrapping_neg();
            let r = m + c;
            m = (((r ^ m) >> 2) / c) | r;
        }
        return RankTest {
            u,
            p: hits as f64 / total as f64,
            min_p: at_max as f64 / total as f64,
            exact: true,
            splits: total,
        };
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut hits = 0u64;
    for _ in 0..RANDOM_SPLITS {
        rng.shuffle(&mut idx);
        let sum: u64 = idx[..na].iter().map(|&i| r2[i]).sum();
        if dev(sum) >= observed {
            hits += 1;
        }
    }
    let m = RANDOM_SPLITS as f64;
    RankTest {
        u,
        p: (hits as f64 + 1.0) / (m + 1.0),
        min_p: 1.0 / (m + 1.0),
        exact: false,
        splits: RANDOM_SPLITS as u64,
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

    #[test]
    fn binomials_against_pascal() {
        assert_eq!(binomial(6, 3), 20);
        assert_eq!(binomial(8, 4), 70);
        assert_eq!(binomial(5, 0), 1);
        assert_eq!(binomial(5, 5), 1);
        assert_eq!(binomial(20, 10), 184_756);
    }

    #[test]
    fn mid_ranks_share_ties() {
        // 10, 20, 20, 30 → ranks 1, 2.5, 2.5, 4 (doubled: 2, 5, 5, 8).
        assert_eq!(
            doubled_midranks(&[20.0, 10.0, 30.0, 20.0]),
            vec![5, 2, 8, 5]
        );
    }

    #[test]
    fn mann_whitney_exact_p_values_by_hand() {
        // 3 vs 3, fully separated: U = 0; only the split itself and its mirror
        // image are that extreme, so p = 2/20 = 0.1, the smallest possible.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert!(t.exact);
        assert_eq!((t.u, t.splits), (0.0, 20));
        assert!(close(t.p, 0.1), "{t:?}");
        assert!(close(t.min_p, 0.1), "{t:?}");
        // 4 vs 4, separated: p = 2/70 (Mann & Whitney 1947, table I: P(U ≤ 0) = 1/70).
        let t = mann_whitney(&[5.0, 6.0, 7.0, 8.0], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.u, 16.0);
        assert!(close(t.p, 2.0 / 70.0), "{t:?}");
        // 3 vs 3 with U = 1 (one inversion): splits with U ≤ 1 or U ≥ 8 are
        // U=0, U=1 on each side: 4 of 20.
        let t = mann_whitney(&[1.0, 2.0, 4.0], &[3.0, 5.0, 6.0]);
        assert_eq!(t.u, 1.0);
        assert!(close(t.p, 0.2), "{t:?}");
        // Identical samples: every split is at least as extreme.
        let t = mann_whitney(&[5.0, 5.0, 5.0], &[5.0, 5.0, 5.0]);
        assert!(close(t.p, 1.0), "{t:?}");
        // Interleaved: U = 3, 1.5 from the centre 4.5. The null distribution of U
        // for 3 vs 3 (U = 0..9) has counts 1 1 2 3 3 3 3 2 1 1; only U = 4 and 5
        // (6 splits) are closer to the centre, so p = 14/20.
        let t = mann_whitney(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]);
        assert_eq!(t.u, 3.0);
        assert!(close(t.p, 0.7), "{t:?}");
    }

    #[test]
    fn mann_whitney_draws_random_splits_for_large_samples() {
        let a: Vec<f64> = (0..15).map(|i| 100.0 + i as f64 * 0.1).collect();
        let b: Vec<f64> = (0..15).map(|i| 90.0 + i as f64 * 0.1).collect();
        let t = mann_whitney(&a, &b);
        assert!(!t.exact);
        assert!(t.p < 0.001, "{t:?}");
        assert!(close(t.min_p, 1.0 / 20_001.0));
        // Reproducible (seeded).
        assert_eq!(mann_whitney(&a, &b), t);
    }
}
