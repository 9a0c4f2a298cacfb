//! Small, pure statistics over repeated samples, each with its source.
//!
//! - Median, mean, sample standard deviation (n − 1) and coefficient of variation
//!   are the textbook definitions.
//! - Every confidence interval is distribution-free and states the coverage it
//!   really has, not the one asked for: the median's from order statistics and the
//!   binomial distribution ([`median_ci`], Conover 1999), the ratio to native's
//!   from the pairwise ratios and the Mann–Whitney distribution ([`ratio_ci`],
//!   Moses; Hollander, Wolfe & Chicken 2014). Too few samples for 95% give a wider
//!   interval at the level reached (3 samples: 75% for the median).
//! - The ratio to native itself is that interval's centre, the median of the
//!   pairwise ratios (Hodges–Lehmann, [`ratio_estimate`]), not the ratio of the
//!   two medians.
//! - Two-sample rank test for `compare`: [`mann_whitney`], exact.
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

/// The requested level of every interval virtmark states (the level actually
/// reached is reported next to it, see [`Interval::level`]).
pub const LEVEL: f64 = 0.95;

/// A confidence interval with the coverage it really has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Low end.
    pub low: f64,
    /// High end.
    pub high: f64,
    /// Coverage probability of the interval: exact for continuous distributions
    /// (and for the ratio, under the scale model), at least this with ties. 0 when
    /// the samples are too few for any interval.
    pub level: f64,
}

impl Interval {
    /// No interval at all (too few or unusable samples).
    pub const NONE: Interval = Interval {
        low: f64::NAN,
        high: f64::NAN,
        level: 0.0,
    };

    /// Whether there is an interval with a positive level.
    pub fn exists(&self) -> bool {
        self.level > 0.0 && self.low.is_finite() && self.high.is_finite()
    }

    /// Whether the interval holds `x`.
    pub fn holds(&self, x: f64) -> bool {
        self.exists() && self.low <= x && x <= self.high
    }

    /// Whether the interval lies within ±`rel` of `centre` (0.03 = ±3%) and has
    /// at least the level `level`.
    pub fn within(&self, centre: f64, rel: f64, level: f64) -> bool {
        self.exists()
            && self.level >= level - 1e-12
            && self.low >= centre * (1.0 - rel)
            && self.high <= centre * (1.0 + rel)
    }
}

/// ln C(n, k), by summing logarithms (exact enough for n in the thousands).
fn ln_binomial(n: u64, k: u64) -> f64 {
    let k = k.min(n - k.min(n));
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// P(X ≤ k) for X ~ Binomial(n, 1/2).
pub fn binomial_half_cdf(n: u64, k: u64) -> f64 {
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    (0..=k.min(n))
        .map(|i| (ln_binomial(n, i) + ln_half_n).exp())
        .sum::<f64>()
        .min(1.0)
}

/// Distribution-free confidence interval of the median from order statistics
/// (Conover, *Practical Nonparametric Statistics*, 3rd ed., Wiley 1999, §3.2,
/// "confidence interval for a quantile"; Hollander, Wolfe & Chicken,
/// *Nonparametric Statistical Methods*, 3rd ed., 2014, §3.6).
///
/// With the n values sorted, `[x(k), x(n+1−k)]` covers the population median with
/// probability 1 − 2·P(B ≤ k−1), B ~ Binomial(n, ½), whatever the (continuous)
/// distribution. The narrowest such interval whose coverage is at least `level`
/// is returned with its exact coverage; when even the full range `[min, max]`
/// falls short (n < 6 for 95%), that range is returned with the level it really
/// has (3 values: 1 − 2·0.5³ = 75%). One value or none: no interval.
pub fn median_ci(xs: &[f64], level: f64) -> Interval {
    let n = xs.len();
    if n < 2 || xs.iter().any(|x| !x.is_finite()) {
        return Interval::NONE;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let coverage = |k: usize| 1.0 - 2.0 * binomial_half_cdf(n as u64, k as u64 - 1);
    let mut k = 1;
    while k < n / 2 && coverage(k + 1) >= level {
        k += 1;
    }
    Interval {
        low: v[k - 1],
        high: v[n - k],
        level: coverage(k),
    }
}

/// Null distribution of the Mann–Whitney U for samples of sizes `m` and `n`:
/// `counts[u]` = number of the C(m+n, m) equally likely arrangements with U = u,
/// by the recurrence c(m, n, u) = c(m−1, n, u−n) + c(m, n−1, u) (Mann & Whitney
/// 1947, eq. 2). As f64: exact below 2^53.
pub fn mann_whitney_null(m: usize, n: usize) -> Vec<f64> {
    // table[j][u] for the current i (rows of the recurrence over i = 0..=m).
    let mut prev: Vec<Vec<f64>> = (0..=n).map(|_| vec![1.0]).collect(); // i = 0: U = 0
    for i in 1..=m {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
        cur.push(vec![1.0]); // j = 0: U = 0
        for j in 1..=n {
            let mut c = vec![0.0; i * j + 1];
            // The largest value is from the first sample: it beats all j others.
            for (u, &x) in prev[j].iter().enumerate() {
                c[u + j] += x;
            }
            // The largest value is from the second sample: U unchanged.
            for (u, &x) in cur[j - 1].iter().enumerate() {
                c[u] += x;
            }
            cur.push(c);
        }
        prev = cur;
    }
    prev.swap_remove(n)
}

/// Distribution-free confidence interval of the ratio of a target to a baseline,
/// with the ratio oriented as [`ratio`] (larger is better).
///
/// Under the scale model — the target's values are the baseline's multiplied by a
/// constant c, in distribution — log-values differ by a shift ln c, and the
/// Moses interval for a shift (Hollander, Wolfe & Chicken 2014, §4.3; Lehmann,
/// *Nonparametrics*, 1975, §2.6; Bauer, JASA 67, 1972) applies: with the m·n
/// pairwise differences of logs sorted, `[D(k), D(mn+1−k)]` covers ln c with
/// probability 1 − 2·P(U ≤ k−1) under the Mann–Whitney null distribution. The
/// narrowest interval of coverage at least `level` is returned, exponentiated;
/// when even `[min, max]` falls short, that with its real level (3 and 3
/// samples: 1 − 2/20 = 90%). Non-positive values: no interval.
pub fn ratio_ci(target: &[f64], base: &[f64], higher_is_better: bool, level: f64) -> Interval {
    let (m, n) = (target.len(), base.len());
    let Some(d) = pairwise_log_ratios(target, base, higher_is_better) else {
        return Interval::NONE;
    };
    let counts = mann_whitney_null(m, n);
    let total: f64 = counts.iter().sum();
    let mn = m * n;
    // cdf[u] = P(U ≤ u)
    let mut cdf = Vec::with_capacity(counts.len());
    let mut acc = 0.0;
    for c in &counts {
        acc += c;
        cdf.push(acc / total);
    }
    let coverage = |k: usize| (1.0 - 2.0 * cdf[k - 1]).max(0.0);
    if coverage(1) <= 0.0 {
        return Interval::NONE;
    }
    let mut k = 1;
    while k < mn.div_ceil(2) && coverage(k + 1) >= level {
        k += 1;
    }
    Interval {
        low: d[k - 1].exp(),
        high: d[mn - k].exp(),
        level: coverage(k),
    }
}

/// The ratio of a target to a baseline, oriented as [`ratio`]: the Hodges–Lehmann
/// estimate of the scale model's constant c, the median of the m·n pairwise ratios
/// (exponentiated median of the differences of logs; Hollander, Wolfe & Chicken
/// 2014, §4.2), which is the centre of [`ratio_ci`]'s interval and always inside
/// it. The ratio of the two medians is not: when the machine's speed moves
/// between two levels (a host whose CPUs run a third faster in phases of seconds),
/// each median falls in one level or the other by how many samples hit each, and
/// on 2026-12-01 an A/A of 15 samples a cell gave `cpu-int` ratios of medians
/// 0.85–0.88 where this estimate gave 0.975–0.999. Non-positive or non-finite
/// values: the ratio of the medians.
pub fn ratio_estimate(target: &[f64], base: &[f64], higher_is_better: bool) -> f64 {
    match pairwise_log_ratios(target, base, higher_is_better) {
        Some(d) => median_sorted(&d).exp(),
        None => ratio(median(target), median(base), higher_is_better),
    }
}

/// Fewest pairs for [`paired_ratio`]: 4, whose interval is the range of the
/// pairs' ratios at 87.5% (1 − 2/16); 5 reach 93.75%, 6 reach 96.9%. The level is
/// stated, and below 95% the auto rule goes on. Fewer than 4 would rest on a 75%
/// interval, where 3 and 3 unpaired samples give 90%. On a host whose disk
/// throughput drifts slowly (`dbench`: lag-1 autocorrelation 0.87 between 1 s
/// samples), 4 pairs put an A/A ratio within ±10% in 93% of draws against 47%
/// for the same samples unpaired (2026-12-01, `docs/workloads.md`).
pub const PAIRED_MIN: usize = 4;

/// The ratio of a target to a baseline from **paired** samples — each target value
/// with the baseline value measured next to it in time (the same round, adjacent
/// slots) — oriented as [`ratio`], with its distribution-free interval.
///
/// With d = the log-ratio of each pair, the estimate is the median of d and the
/// interval is the median's from order statistics ([`median_ci`]: the sign
/// test's, exact for any continuous distribution of d, symmetric or not; Conover
/// 1999, §3.2). Not the Hodges–Lehmann estimate of the Walsh averages with
/// Tukey's interval, which runs before 2026-12-01 23:30 used: those assume d
/// symmetric about its centre, and on a host whose CPUs change speed a pair that
/// straddles a change has a ratio far off (0.6 or 1.6 for `cpu-fp`), more often
/// one way than the other in a run of 24 pairs, which pulled the Hodges–Lehmann
/// estimate of an A/A ratio to 0.932 where the median read 0.981. Resampled from
/// four default A/A runs on that host (2,000 draws of each cell's size), the
/// median put `cpu-fp` within ±5% in 99% of draws against 90%, `compress` in 94%
/// against 88%, `mem-bw` in 79% against 72% (11 pairs), and no workload fell by
/// more than 2 points (`docs/method.md`).
///
/// Pairing removes what both members of a pair share: a host whose CPUs change
/// speed for a second or two changes both, and only their ratio is kept. `None`
/// with fewer than [`PAIRED_MIN`] pairs or a value that is not finite and positive.
pub fn paired_ratio(
    pairs: &[(f64, f64)],
    higher_is_better: bool,
    level: f64,
) -> Option<(f64, Interval)> {
    let ok = |x: f64| x.is_finite() && x > 0.0;
    if pairs.len() < PAIRED_MIN || pairs.iter().any(|&(t, b)| !ok(t) || !ok(b)) {
        return None;
    }
    let sign = if higher_is_better { 1.0 } else { -1.0 };
    let d: Vec<f64> = pairs
        .iter()
        .map(|&(t, b)| sign * (t.ln() - b.ln()))
        .collect();
    let ci = median_ci(&d, level);
    let ci = Interval {
        low: ci.low.exp(),
        high: ci.high.exp(),
        level: ci.level,
    };
    Some((median(&d).exp(), ci))
}

/// The m·n logarithms of each target value over each base value, oriented as
/// [`ratio`], sorted; `None` when either side is empty or holds a value that is
/// not finite and positive.
fn pairwise_log_ratios(target: &[f64], base: &[f64], higher_is_better: bool) -> Option<Vec<f64>> {
    let usable = |xs: &[f64]| !xs.is_empty() && xs.iter().all(|x| x.is_finite() && *x > 0.0);
    if !usable(target) || !usable(base) {
        return None;
    }
    let sign = if higher_is_better { 1.0 } else { -1.0 };
    let mut d: Vec<f64> = target
        .iter()
        .flat_map(|t| base.iter().map(move |b| sign * (t.ln() - b.ln())))
        .collect();
    d.sort_by(f64::total_cmp);
    Some(d)
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

/// Geometric mean of ratios with an approximate 95% interval, from each ratio's
/// interval: on the log scale each ratio's standard error is taken as its
/// interval's half-width over the normal quantile of its level, the errors of
/// independent ratios add in quadrature, and the mean of logs ± 1.96 standard
/// errors is exponentiated (the delta method; Casella & Berger, *Statistical
/// Inference*, 2nd ed., 2002, §5.5.4). Ratios without an interval of positive
/// level leave the interval out: `(value, None)`.
pub fn geomean_ci(items: &[(f64, Interval)]) -> Option<(f64, Option<(f64, f64)>)> {
    if items.is_empty() || items.iter().any(|(r, _)| !(r.is_finite() && *r > 0.0)) {
        return None;
    }
    let k = items.len() as f64;
    let mean_ln = items.iter().map(|(r, _)| r.ln()).sum::<f64>() / k;
    let mut var = 0.0;
    for (_, ci) in items {
        if !ci.exists() || ci.low <= 0.0 || ci.level >= 1.0 {
            return Some((mean_ln.exp(), None));
        }
        let z = normal_quantile(0.5 + ci.level / 2.0);
        let se = (ci.high.ln() - ci.low.ln()) / (2.0 * z);
        var += se * se;
    }
    let se = var.sqrt() / k;
    let z95 = normal_quantile(0.975);
    Some((
        mean_ln.exp(),
        Some(((mean_ln - z95 * se).exp(), (mean_ln + z95 * se).exp())),
    ))
}

/// The standard normal quantile Φ⁻¹(p), 0 < p < 1 (Acklam's rational
/// approximation, relative error below 1.2·10⁻⁹; as tabulated in Wichura, "The
/// percentage points of the normal distribution", Appl. Statist. 37, 1988, to the
/// precision needed here).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
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
    /// Order-statistic interval of the median, requested at [`LEVEL`].
    pub ci: Interval,
    /// CoV above [`NOISY_COV`].
    pub noisy: bool,
}

/// Summarize a series of samples.
pub fn summarize(xs: &[f64]) -> Summary {
    let cov = cov(xs);
    Summary {
        n: xs.len(),
        median: median(xs),
        mean: mean(xs),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        stddev: stddev(xs),
        cov,
        ci: median_ci(xs, LEVEL),
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
    fn median_interval_levels_by_hand() {
        // 3 values: only [min, max], coverage 1 − 2·(1/2)³ = 0.75.
        let ci = median_ci(&[3.0, 1.0, 2.0], 0.95);
        assert_eq!((ci.low, ci.high), (1.0, 3.0));
        assert!(close(ci.level, 0.75), "{ci:?}");
        // 6 values: [min, max] covers 1 − 2/64 = 0.96875, the first at 95%.
        let ci = median_ci(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.95);
        assert_eq!((ci.low, ci.high), (1.0, 6.0));
        assert!(close(ci.level, 1.0 - 2.0 / 64.0));
        // 10 values: x(2)..x(9), 1 − 2·(1 + 10)/1024 ≈ 0.9785 (Conover 1999,
        // table A3); x(3)..x(8) would cover 0.89 only.
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let ci = median_ci(&xs, 0.95);
        assert_eq!((ci.low, ci.high), (2.0, 9.0));
        assert!(close(ci.level, 1.0 - 22.0 / 1024.0));
        assert!(!median_ci(&[5.0], 0.95).exists());
        assert!(!median_ci(&[], 0.95).exists());
    }

    #[test]
    fn mann_whitney_null_counts_against_the_table() {
        // 3 and 3: U = 0..9 with counts 1 1 2 3 3 3 3 2 1 1 (20 arrangements).
        assert_eq!(
            mann_whitney_null(3, 3),
            vec![1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 2.0, 1.0, 1.0]
        );
        let c = mann_whitney_null(4, 6);
        assert_eq!(c.len(), 25);
        assert_eq!(c.iter().sum::<f64>(), binomial(10, 4) as f64);
        assert_eq!(mann_whitney_null(1, 1), vec![1.0, 1.0]);
    }

    #[test]
    fn ratio_interval_levels_by_hand() {
        // 3 and 3: the 9 pairwise ratios' range, level 1 − 2/20 = 0.9.
        let ci = ratio_ci(&[48.0, 50.0, 52.0], &[99.0, 100.0, 101.0], true, 0.95);
        assert!(close(ci.level, 0.9), "{ci:?}");
        assert!(
            close(ci.low, 48.0 / 101.0) && close(ci.high, 52.0 / 99.0),
            "{ci:?}"
        );
        // Lower is better: the ratio is base / target.
        let ci = ratio_ci(&[2.0, 2.0, 2.0], &[1.0, 1.0, 1.0], false, 0.95);
        assert!(close(ci.low, 0.5) && close(ci.high, 0.5));
        // 4 and 4: [min, max] covers 1 − 2/70 ≈ 0.971.
        let ci = ratio_ci(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0], true, 0.95);
        assert!(close(ci.level, 1.0 - 2.0 / 70.0), "{ci:?}");
        assert!(ci.holds(1.0));
        assert!(!ratio_ci(&[1.0], &[1.0], true, 0.95).exists());
        assert!(!ratio_ci(&[1.0, -1.0], &[1.0, 2.0], true, 0.95).exists());
        let ci = Interval {
            low: 0.98,
            high: 1.02,
            level: 0.96,
        };
        assert!(ci.within(1.0, 0.03, 0.95) && !ci.within(1.0, 0.01, 0.95));
        assert!(!ci.within(1.0, 0.03, 0.97));
    }

    #[test]
    fn ratio_estimate_is_the_median_pairwise_ratio_inside_its_interval() {
        // 3 and 3 by hand: the pairwise ratios of [2, 4, 8] to [1, 2, 4] are
        // 1/2, 1, 1, 2, 2, 2, 4, 4, 8 in logs' order: median 2.
        assert!(close(
            ratio_estimate(&[2.0, 4.0, 8.0], &[1.0, 2.0, 4.0], true),
            2.0
        ));
        // Lower is better: base / target.
        assert!(close(
            ratio_estimate(&[2.0, 4.0, 8.0], &[1.0, 2.0, 4.0], false),
            0.5
        ));
        // Two levels a third apart, as on a host whose CPUs change speed in
        // phases: the baseline's median falls in the high level (8 of 15
        // samples), the target's in the low one (8 of 15), so the ratio of the
        // medians says 0.76 for two samples of the same machine; the median of
        // the pairwise ratios says 1, and lies in the interval.
        let level = |high: usize| -> Vec<f64> {
            (0..15)
                .map(|i| if i < high { 68.0 } else { 52.0 } + (i % 3) as f64 * 0.1)
                .collect()
        };
        let (base, target) = (level(8), level(7));
        let medians = ratio(median(&target), median(&base), true);
        assert!(medians < 0.8, "{medians}");
        let r = ratio_estimate(&target, &base, true);
        assert!((r - 1.0).abs() < 0.01, "{r}");
        let ci = ratio_ci(&target, &base, true, LEVEL);
        assert!(ci.holds(r) && !ci.holds(medians), "{ci:?}");
        // Values no logarithm takes: the ratio of the medians.
        assert!(close(
            ratio_estimate(&[0.0, 2.0, 4.0], &[1.0, 2.0, 3.0], true),
            1.0
        ));
    }

    #[test]
    fn paired_ratio_removes_what_both_members_of_a_pair_share() {
        // Twelve pairs on a host whose speed moves between two levels a third
        // apart: the target is 0.9 of the baseline measured next to it, each
        // pair within ±0.5% of that, whatever level the pair fell in.
        let pairs: Vec<(f64, f64)> = (0..12)
            .map(|i| {
                let base = if i % 3 == 0 { 68.0 } else { 52.0 } + i as f64 * 0.05;
                (
                    base * 0.9 * (1.0 + 0.005 * ((i % 5) as f64 - 2.0) / 2.0),
                    base,
                )
            })
            .collect();
        let (r, ci) = paired_ratio(&pairs, true, LEVEL).expect("12 pairs");
        assert!((r - 0.9).abs() < 0.005, "{r}");
        assert!(ci.holds(0.9) && ci.within(r, 0.01, LEVEL), "{ci:?}");
        // n = 12 at 95%: the 3rd and 10th of the sorted ratios, coverage
        // 1 − 2·P(B ≤ 2) = 1 − 2·79/4096 = 0.9614.
        assert!(close(ci.level, 1.0 - 2.0 * 79.0 / 4096.0), "{}", ci.level);
        // The same values unpaired give a wider interval.
        let (t, b): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let unpaired = ratio_ci(&t, &b, true, LEVEL);
        assert!(
            unpaired.high / unpaired.low > ci.high / ci.low,
            "{unpaired:?} {ci:?}"
        );
        // Lower is better: base / target.
        let (r, _) = paired_ratio(&pairs, false, LEVEL).unwrap();
        assert!((r - 1.0 / 0.9).abs() < 0.01, "{r}");
        // Four pairs: their range, at 1 − 2/16.
        let (_, ci4) = paired_ratio(&pairs[..PAIRED_MIN], true, LEVEL).unwrap();
        assert!(close(ci4.level, 0.875), "{ci4:?}");
        // Too few pairs, or a value no logarithm takes: none.
        assert!(paired_ratio(&pairs[..PAIRED_MIN - 1], true, LEVEL).is_none());
        let mut bad = pairs.clone();
        bad[3].1 = 0.0;
        assert!(paired_ratio(&bad, true, LEVEL).is_none());
    }

    #[test]
    fn pairs_straddling_a_speed_change_more_one_way_than_the_other_do_not_move_the_ratio() {
        // The 24 pairs (`oci:runc`, native) of `cpu-fp` in a default A/A run on a
        // host whose CPUs run at about 52 or 88 (2026-12-01, 22:55): most pairs
        // share a speed, eight straddle a change with the target slow, four the
        // other way. The median of the log-ratios stays with the first; the
        // Hodges–Lehmann estimate (the Walsh averages' median) read 0.932.
        let pairs = [
            (57.73, 85.51),
            (56.01, 59.88),
            (55.99, 55.85),
            (66.21, 88.68),
            (60.44, 58.2),
            (89.91, 90.41),
            (59.65, 89.34),
            (54.25, 54.84),
            (76.55, 90.71),
            (73.8, 53.43),
            (81.75, 89.61),
            (59.37, 88.81),
            (54.91, 49.15),
            (49.71, 54.81),
            (64.86, 61.35),
            (53.8, 54.19),
            (80.89, 68.64),
            (52.37, 66.59),
            (55.95, 56.69),
            (80.58, 65.02),
            (52.93, 51.84),
            (53.56, 74.44),
            (57.52, 85.22),
            (52.81, 54.18),
        ];
        let (r, ci) = paired_ratio(&pairs, true, LEVEL).unwrap();
        assert!((r - 0.981).abs() < 0.001, "{r}");
        assert!(ci.holds(1.0) && ci.level >= LEVEL, "{ci:?}");
        let d: Vec<f64> = pairs
            .iter()
            .map(|&(t, b): &(f64, f64)| (t / b).ln())
            .collect();
        let walsh: Vec<f64> = (0..d.len())
            .flat_map(|i| (i..d.len()).map(move |j| (i, j)))
            .map(|(i, j)| (d[i] + d[j]) / 2.0)
            .collect();
        assert!((median(&walsh).exp() - 0.932).abs() < 0.001);
    }

    #[test]
    fn normal_quantiles_against_the_table() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-8);
    }

    #[test]
    fn geomean_interval_brackets_the_geomean() {
        let ci = |low, high| Interval {
            low,
            high,
            level: 0.95,
        };
        let (g, i) = geomean_ci(&[(0.5, ci(0.45, 0.55)), (2.0, ci(1.8, 2.2))]).unwrap();
        assert!(close(g, 1.0));
        let (lo, hi) = i.unwrap();
        // Two independent errors of about 0.05 on the log scale: the mean's is 0.035.
        assert!(lo < 1.0 && hi > 1.0 && lo > 0.9 && hi < 1.1, "{lo} {hi}");
        assert_eq!(geomean_ci(&[(0.5, Interval::NONE)]), Some((0.5, None)));
        assert_eq!(geomean_ci(&[]), None);
    }

    /// The three shapes of the coverage check, each with median 100.
    #[derive(Clone, Copy, Debug)]
    enum Shape {
        Normal,
        LogNormal,
        Bimodal,
    }

    fn gauss(rng: &mut fastrand::Rng) -> f64 {
        // Box–Muller.
        let u1 = 1.0 - rng.f64();
        let u2 = rng.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn draw(shape: Shape, rng: &mut fastrand::Rng) -> f64 {
        match shape {
            Shape::Normal => 100.0 + 5.0 * gauss(rng),
            Shape::LogNormal => 100.0 * (0.3 * gauss(rng)).exp(),
            // Two equal modes at 90 and 110: the median, 100, is where the
            // density is lowest.
            Shape::Bimodal => {
                let m = if rng.bool() { 90.0 } else { 110.0 };
                m + 2.0 * gauss(rng)
            }
        }
    }

    const SETS: usize = 10_000;

    /// The share of `SETS` intervals holding `truth`, and the level they state.
    fn coverage(
        rng: &mut fastrand::Rng,
        truth: f64,
        mut interval: impl FnMut(&mut fastrand::Rng) -> Interval,
    ) -> (f64, f64) {
        let (mut hits, mut level) = (0usize, f64::NAN);
        for _ in 0..SETS {
            let ci = interval(rng);
            assert!(
                level.is_nan() || level == ci.level,
                "the level depends on n only"
            );
            level = ci.level;
            hits += usize::from(ci.holds(truth));
        }
        (hits as f64 / SETS as f64, level)
    }

    #[test]
    fn every_stated_level_is_the_real_coverage() {
        // 10,000 sample sets per shape and size: the share of intervals holding
        // the true value must match the stated level within ±1 point (its
        // standard error is about 0.2 point). n = 17 (median) and 8 & 8 (ratio)
        // are sizes whose attainable level is within a point of 95%: there the
        // check is the "95% covers 94–96%".
        let mut rng = fastrand::Rng::with_seed(11);
        for shape in [Shape::Normal, Shape::LogNormal, Shape::Bimodal] {
            for n in [3usize, 6, 10, 17] {
                let (cover, level) = coverage(&mut rng, 100.0, |r| {
                    let xs: Vec<f64> = (0..n).map(|_| draw(shape, r)).collect();
                    median_ci(&xs, LEVEL)
                });
                assert!(
                    (cover - level).abs() <= 0.01,
                    "median, {shape:?}, n = {n}: stated {level:.4}, covered {cover:.4}"
                );
                if n == 17 {
                    assert!((0.94..=0.96).contains(&cover), "{shape:?}: {cover}");
                    assert!((0.95..=0.96).contains(&level), "{level}");
                }
            }
            // The target is the baseline scaled by 0.8 (higher is better) or 1.25
            // (lower is better): the true ratio is 0.8 both ways.
            for (m, n) in [(3usize, 3usize), (4, 4), (5, 7), (8, 8)] {
                for hib in [true, false] {
                    let scale = if hib { 0.8 } else { 1.25 };
                    let (cover, level) = coverage(&mut rng, 0.8, |r| {
                        let t: Vec<f64> = (0..m).map(|_| scale * draw(shape, r)).collect();
                        let b: Vec<f64> = (0..n).map(|_| draw(shape, r)).collect();
                        ratio_ci(&t, &b, hib, LEVEL)
                    });
                    assert!(
                        (cover - level).abs() <= 0.01,
                        "ratio, {shape:?}, {m} & {n}, hib {hib}: stated {level:.4}, covered {cover:.4}"
                    );
                    if (m, n) == (8, 8) {
                        assert!((0.94..=0.96).contains(&cover), "{shape:?}: {cover}");
                    }
                }
            }
        }
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
