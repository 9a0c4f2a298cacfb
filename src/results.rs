//! The results model: plain serde data from which every format is derived
//! (`results.json`, `samples.csv`, the database, the terminal table). Statistics
//! are derived from the raw samples by [`derive_results`], never stored alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::plan::Plan;
use crate::stats;
use crate::workloads::Metric;

pub mod diagnosis;
pub mod steps;

/// Version of the `results.json` schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Which virtmark produced a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Package version.
    pub version: String,
    /// Git revision it was built from (`unknown` outside a checkout).
    pub git_revision: String,
}

impl Provenance {
    /// The running binary's provenance.
    pub fn current() -> Self {
        Provenance {
            version: env!("CARGO_PKG_VERSION").into(),
            git_revision: env!("VIRTMARK_GIT_REVISION").into(),
        }
    }
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still running (or died without a chance to say otherwise).
    Running,
    /// Every planned sample was attempted.
    Complete,
    /// Interrupted: holds what was measured until then.
    Partial,
}

impl RunStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Partial => "partial",
        }
    }
}

/// A target as it took part in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Target name (`native`).
    pub name: String,
    /// Its fingerprint, seen from inside by the agent.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Time from "start target" to "agent answers hello", seconds.
    #[serde(default)]
    pub startup_s: Option<f64>,
    /// Lines from its agent's channel that were not protocol messages (console
    /// noise), skipped and counted over the whole run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_lines: u64,
    /// Times it was restarted after a DNR.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A target's ratio to native from their kept values and where each was measured:
/// the estimate, its interval, and how many pairs it rests on.
///
/// Each target value is paired with native's value of the same workload measured
/// in the same round at the nearest slot (the earlier on a tie; the runner puts a
/// native sample next to every target sample). With at least
/// [`stats::PAIRED_MIN`] pairs the ratio is [`stats::paired_ratio`]'s: what the
/// two members of a pair share (the host's speed at that moment) cancels. With
/// fewer (slow targets, runs stored before pairing) it is the unpaired
/// Hodges–Lehmann estimate and Moses interval ([`stats::ratio_estimate`],
/// [`stats::ratio_ci`]); the pair count is then `None`.
pub fn ratio_to_native(
    target: &[(Option<Position>, f64)],
    native: &[(Option<Position>, f64)],
    higher_is_better: bool,
) -> (f64, stats::Interval, Option<u32>) {
    let pairs: Vec<(f64, f64)> = target
        .iter()
        .filter_map(|&(at, t)| {
            let at = at?;
            native
                .iter()
                .filter_map(|&(n_at, n)| n_at.filter(|p| p.round == at.round).map(|p| (p.slot, n)))
                .min_by_key(|&(slot, _)| (slot.abs_diff(at.slot), slot))
                .map(|(_, n)| (t, n))
        })
        .collect();
    if let Some((r, ci)) = stats::paired_ratio(&pairs, higher_is_better, stats::LEVEL) {
        return (r, ci, Some(pairs.len() as u32));
    }
    let values = |xs: &[(Option<Position>, f64)]| xs.iter().map(|&(_, v)| v).collect::<Vec<_>>();
    let (t, b) = (values(target), values(native));
    (
        stats::ratio_estimate(&t, &b, higher_is_better),
        stats::ratio_ci(&t, &b, higher_is_better, stats::LEVEL),
        None,
    )
}

/// Where a sample of the overhead step ran in the run's order: the round, and its
/// place within the round (both from 0). The order of each round is drawn from
/// the plan's seed, so `--seed` replays it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Round.
    pub round: u32,
    /// Place within the round.
    pub slot: u32,
}

/// Which step of the method a sample belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Single instance, normalized to native.
    #[default]
    Overhead,
    /// n instances at once.
    Scale,
    /// k instances, one misbehaving.
    Isolation,
}

impl Step {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Overhead => "overhead",
            Step::Scale => "scale",
            Step::Isolation => "isolation",
        }
    }
    fn is_overhead(&self) -> bool {
        *self == Step::Overhead
    }
}

/// One raw measurement: one execution of one workload in one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The step it belongs to (absent = overhead).
    #[serde(default, skip_serializing_if = "Step::is_overhead")]
    pub step: Step,
    /// Scalability/isolation: how many instances ran together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Scalability/isolation: which instance (from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// Isolation: the stressor running in instance 0 (`none` for the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressor: Option<String>,
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Repetition index, from 0.
    pub rep: u32,
    /// Discarded as warm-up.
    pub discarded: bool,
    /// Overhead step: its place in the run's shuffled order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// When the sample arrived (RFC 3339).
    pub at: String,
    /// Wall time of the execution in the agent, seconds.
    pub elapsed_s: f64,
    /// Every metric, headline first.
    pub metrics: Vec<Metric>,
    /// How it ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A (target, workload, repetition) that produced no result (DNR).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The step it belongs to (absent = overhead).
    #[serde(default, skip_serializing_if = "Step::is_overhead")]
    pub step: Step,
    /// Scalability/isolation: how many instances ran together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Scalability/isolation: which instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// Isolation: the stressor running in instance 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressor: Option<String>,
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Repetition index.
    pub rep: u32,
    /// Machine-readable kind (`deadline`, `unavailable`, `agent_exited`, …).
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Statistics of one (target, workload, metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Metric name.
    pub metric: String,
    /// Whether this is the workload's headline metric.
    pub headline: bool,
    /// Unit.
    pub unit: String,
    /// Whether larger is better.
    pub higher_is_better: bool,
    /// Kept samples.
    pub n: usize,
    /// Median of kept samples: the result.
    pub median: f64,
    /// Mean of kept samples.
    pub mean: f64,
    /// Smallest kept sample.
    pub min: f64,
    /// Largest kept sample.
    pub max: f64,
    /// Sample standard deviation.
    pub stddev: f64,
    /// Coefficient of variation.
    pub cov: f64,
    /// Distribution-free interval of the median (order statistics), low end; the
    /// median itself when there is no interval (one kept sample).
    pub ci_low: f64,
    /// Its high end.
    pub ci_high: f64,
    /// Its real coverage (0.95 asked; 3 samples can only reach 0.75); 0 when
    /// there is no interval. Absent in runs stored before it existed.
    #[serde(default)]
    pub ci_level: f64,
    /// CoV above 5%.
    pub noisy: bool,
    /// Median normalized against native (1.0 = native, higher is better); null for
    /// native itself or when native has no result.
    pub ratio_to_native: Option<f64>,
    /// Distribution-free interval of the ratio (pairwise ratios, Mann–Whitney
    /// distribution), low end.
    pub ratio_ci_low: Option<f64>,
    /// Its high end.
    pub ratio_ci_high: Option<f64>,
    /// Its real coverage under the scale model (0: no interval); null without a
    /// ratio.
    #[serde(default)]
    pub ratio_ci_level: Option<f64>,
    /// How many (target, native) pairs measured side by side the ratio rests on
    /// (see [`ratio_to_native`]); null when it compares all samples unpaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_pairs: Option<u32>,
    /// The kept raw samples, in repetition order.
    pub samples: Vec<f64>,
    /// The discarded warm-up samples.
    pub discarded: Vec<f64>,
}

impl ResultEntry {
    /// The ratio's interval with its level, when there is a ratio.
    pub fn ratio_interval(&self) -> Option<stats::Interval> {
        Some(stats::Interval {
            low: self.ratio_ci_low?,
            high: self.ratio_ci_high?,
            level: self.ratio_ci_level?,
        })
    }

    /// "≈ native": the ratio's interval holds 1.0, so this result cannot be told
    /// apart from native.
    pub fn about_native(&self) -> bool {
        self.ratio_interval().is_some_and(|ci| ci.holds(1.0))
    }

    /// A slowdown the interval shows (its high end below 1.0).
    pub fn significantly_slower(&self) -> bool {
        self.ratio_interval()
            .is_some_and(|ci| ci.exists() && ci.high < 1.0)
    }
}

/// A whole run: what `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Run id.
    pub run_id: String,
    /// Start time (RFC 3339).
    pub started: String,
    /// End time (RFC 3339), when it ended.
    pub finished: Option<String>,
    /// Running, complete or partial.
    pub status: RunStatus,
    /// The virtmark that produced it.
    pub virtmark: Provenance,
    /// The command line that started it.
    pub command: String,
    /// The host's fingerprint.
    pub host: Fingerprint,
    /// The exact plan (every default resolved).
    pub plan: Plan,
    /// Targets in the order shown.
    pub targets: Vec<TargetRecord>,
    /// Every raw sample, in the order measured.
    pub samples: Vec<SampleRecord>,
    /// Every DNR.
    pub failures: Vec<FailureRecord>,
    /// Statistics per (target, workload, metric), derived from the overhead
    /// step's `samples`.
    pub results: Vec<ResultEntry>,
    /// The scalability step, when the run has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<ScaleEntry>,
    /// The isolation step, when the run has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<IsolationEntry>,
    /// Why each target is slower than native on each workload, from the probes
    /// and the workloads' operation counts ([`diagnosis::diagnose`] of `results`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnosis: Vec<diagnosis::Diagnosis>,
}

/// Three figures across instances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// An instance that returned no result, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dnr {
    /// Instance index.
    pub instance: u32,
    /// Why.
    pub reason: String,
}

/// Scalability at one n for one target (Camargos et al.'s figure: aggregate =
/// mean per instance × n, and per-instance throughput).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleEntry {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// Headline metric of the workload.
    pub metric: String,
    /// Throughput unit (the metric's unit, or `1/s` for a time metric).
    pub unit: String,
    /// Instances started together.
    pub instances: u32,
    /// Memory each instance got, bytes.
    pub memory_per_instance: u64,
    /// Whether each instance was pinned to one CPU.
    pub pinned: bool,
    /// Per-instance throughput (each instance's median over the kept repetitions,
    /// a repetition without a result counted as zero): mean, min, max over all n.
    pub per_instance: Option<Spread>,
    /// The same over the instances that returned a result in every kept repetition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_instance_finished: Option<Spread>,
    /// Aggregate throughput.
    pub aggregate: Option<Aggregate>,
    /// Jain's fairness index over all n instances (1 = perfectly even).
    pub fairness: Option<f64>,
    /// Whether this n is past the knee (the aggregate grew by less than 5% from the
    /// previous n, and at every n after).
    pub past_knee: bool,
    /// Largest gap between the starts of the instances' measured windows (after
    /// their set-up and the barrier) over the kept repetitions, ms, as the
    /// instances' clocks saw it (meaningful where they share the host's clock).
    pub barrier_spread_ms: Option<f64>,
    /// Smallest, over the kept repetitions, fraction of the span from the first
    /// window's start to the last one's end during which every instance that
    /// returned a result was measuring (1 = all together throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_overlap: Option<f64>,
    /// How many instances were planned, started, finished and failed.
    #[serde(default)]
    pub counts: InstanceCounts,
    /// Instances with no result in at least one kept repetition, and why.
    pub dnr: Vec<Dnr>,
}

/// How many instances of a step took part, and how it went for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCounts {
    /// Instances the step asked for.
    pub planned: u32,
    /// Instances that started (their agent greeted).
    pub started: u32,
    /// Instances that returned a result in every kept repetition.
    pub finished: u32,
    /// Instances that did not (`planned - finished`): DNR, reasons beside.
    pub failed: u32,
}

/// Aggregate throughput of n instances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Mean per instance × n, as the studies computed it, over all n instances:
    /// one that returned no result counts as zero.
    pub mean_times_n: f64,
    /// Plain sum over all n instances (a DNR as zero): the same figure.
    pub sum: f64,
    /// Mean over the instances that finished × n: what crediting a DNR with the
    /// survivors' throughput would show; reported, labelled, where it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_mean_times_n: Option<f64>,
}

/// Degradation of the good-response rate, in percent, or DNR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Degradation {
    /// Percent lost against the baseline (negative: got better).
    Percent(f64),
    /// Did not return a result.
    Dnr {
        /// Why.
        dnr: String,
    },
}

/// Both degradations of one stressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DegradationPair {
    /// The instance running the stressor.
    pub misbehaving: Degradation,
    /// Mean over the well-behaved instances.
    pub well_behaved: Degradation,
}

/// Isolation under one stressor in one target (Xu et al.; Matthews et al.).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationEntry {
    /// Target.
    pub target: String,
    /// Stressor run by instance 0.
    pub stressor: String,
    /// Instances (one misbehaving).
    pub instances: u32,
    /// % degradation of the good-response rate against the all-well-behaved
    /// baseline; a well-behaved instance with no result counts as 100% in the mean.
    pub degradation: DegradationPair,
    /// Mean degradation over the well-behaved instances that returned a result,
    /// when some did not (the figure that leaves the DNR out, labelled as such).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub well_behaved_finished: Option<f64>,
    /// Well-behaved instances that returned no result under the stressor, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub well_behaved_dnr: Vec<Dnr>,
    /// How many instances were planned, started, finished and failed in the round.
    #[serde(default)]
    pub counts: InstanceCounts,
    /// Good responses per second in the baseline: misbehaving-to-be, well-behaved
    /// mean (over the instances that finished).
    pub baseline_rate: [Option<f64>; 2],
    /// Good responses per second under stress: misbehaving, well-behaved mean.
    pub stressed_rate: [Option<f64>; 2],
    /// 99th-percentile latency of the well-behaved instances under stress, µs (mean of
    /// their p99s), and in the baseline.
    pub well_behaved_p99_us: [Option<f64>; 2],
    /// Largest scheduling lag a host thread saw during the round, ms: whether the
    /// host stayed responsive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_sched_lag_ms: Option<f64>,
    /// What the stressor did (its own report) or why it was refused.
    pub stressor_notes: Vec<String>,
}

/// The target every other is normalized against.
pub const BASELINE: &str = "native";

/// Derive statistics for every (target, workload, metric) from the samples, in the
/// order targets and workloads first appear. Operation counts (`count.*`) are
/// taken on the first warm-up alone (counting slows system calls: see
/// [`crate::agent::counts`]) and are per unit of work, so they do not depend on
/// that repetition's speed: a count without kept values is summarized from the
/// discarded samples (`samples` then holds those, `discarded` nothing).
pub fn derive_results(samples: &[SampleRecord]) -> Vec<ResultEntry> {
    // (target, workload, metric) -> (unit, hib, headline, kept, discarded)
    type Key = (String, String, String);
    struct Acc {
        unit: String,
        hib: bool,
        headline: bool,
        kept: Vec<(Option<Position>, f64)>,
        discarded: Vec<f64>,
    }
    let mut order: Vec<Key> = Vec::new();
    let mut acc: BTreeMap<Key, Acc> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.step == Step::Overhead) {
        for (i, m) in s.metrics.iter().enumerate() {
            let key = (s.target.clone(), s.workload.clone(), m.name.clone());
            let a = acc.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Acc {
                    unit: m.unit.clone(),
                    hib: m.higher_is_better,
                    headline: i == 0,
                    kept: vec![],
                    discarded: vec![],
                }
            });
            if s.discarded {
                a.discarded.push(m.value);
            } else {
                a.kept.push((s.position, m.value));
            }
        }
    }
    // The values a result is made of, and the discarded ones it shows beside them.
    type Kept = Vec<(Option<Position>, f64)>;
    let used = |a: &Acc, metric: &str| -> (Kept, Vec<f64>) {
        if a.kept.is_empty() && metric.starts_with(crate::agent::counts::PREFIX) {
            (a.discarded.iter().map(|&v| (None, v)).collect(), vec![])
        } else {
            (a.kept.clone(), a.discarded.clone())
        }
    };
    order
        .into_iter()
        .filter_map(|key| {
            let a = &acc[&key];
            let (kept_at, discarded) = used(a, &key.2);
            if kept_at.is_empty() {
                return None;
            }
            let kept: Vec<f64> = kept_at.iter().map(|&(_, v)| v).collect();
            let s = stats::summarize(&kept);
            let base = (key.0 != BASELINE)
                .then(|| acc.get(&(BASELINE.to_string(), key.1.clone(), key.2.clone())))
                .flatten()
                .map(|b| used(b, &key.2).0)
                .filter(|b| !b.is_empty());
            let (ratio, rlo, rhi, rlevel, pairs) = match base {
                Some(b) => {
                    let (r, ci, pairs) = ratio_to_native(&kept_at, &b, a.hib);
                    let (lo, hi) = if ci.exists() {
                        (ci.low, ci.high)
                    } else {
                        (r, r)
                    };
                    (Some(r), Some(lo), Some(hi), Some(ci.level), pairs)
                }
                None => (None, None, None, None, None),
            };
            let (ci_low, ci_high) = if s.ci.exists() {
                (s.ci.low, s.ci.high)
            } else {
                (s.median, s.median)
            };
            Some(ResultEntry {
                target: key.0.clone(),
                workload: key.1.clone(),
                metric: key.2.clone(),
                headline: a.headline,
                unit: a.unit.clone(),
                higher_is_better: a.hib,
                n: s.n,
                median: s.median,
                mean: s.mean,
                min: s.min,
                max: s.max,
                stddev: s.stddev,
                cov: s.cov,
                ci_low,
                ci_high,
                ci_level: s.ci.level,
                noisy: s.noisy,
                ratio_to_native: ratio,
                ratio_ci_low: rlo,
                ratio_ci_high: rhi,
                ratio_ci_level: rlevel,
                ratio_pairs: pairs,
                samples: kept,
                discarded,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: &str, rep: u32, v: f64) -> SampleRecord {
        SampleRecord {
            target: target.into(),
            workload: "w".into(),
            rep,
            discarded: rep == 0,
            at: String::new(),
            elapsed_s: 1.0,
            metrics: vec![
                Metric::higher("throughput", "MB/s", v),
                Metric::lower("time", "s", 1.0 / v),
            ],
            ..Default::default()
        }
    }

    /// Each target sample is paired with native's nearest sample of its round;
    /// from `PAIRED_MIN` pairs on, the ratio is the pairs' and says how many.
    #[test]
    fn a_target_sample_pairs_with_the_native_one_next_to_it() {
        let at = |round, slot| Some(Position { round, slot });
        let mut ss = vec![];
        for round in 0..8u32 {
            // The host's speed this round: both members of a pair share it.
            let speed = if round % 2 == 0 { 100.0 } else { 140.0 };
            let mut n = sample("native", round, speed);
            n.position = at(round, 1);
            let mut t = sample("ns", round, speed * 0.9);
            t.position = at(round, 2);
            // A native sample further away in the same round is not the partner.
            let mut far = sample("native", round + 100, speed * 3.0);
            far.position = at(round, 9);
            ss.extend([n, t, far]);
        }
        let rs = derive_results(&ss);
        let ns = rs
            .iter()
            .find(|r| r.target == "ns" && r.metric == "throughput")
            .unwrap();
        assert_eq!(
            ns.ratio_pairs,
            Some(7),
            "rounds 1–7: round 0 is the warm-up"
        );
        assert!((ns.ratio_to_native.unwrap() - 0.9).abs() < 1e-9);
        assert!((ns.ratio_ci_low.unwrap() - 0.9).abs() < 1e-9);
        let time = rs
            .iter()
            .find(|r| r.target == "ns" && r.metric == "time")
            .unwrap();
        assert!((time.ratio_to_native.unwrap() - 0.9).abs() < 1e-9);
        // Without positions (runs stored before pairing): unpaired, no count.
        for s in &mut ss {
            s.position = None;
        }
        let ns = derive_results(&ss)
            .into_iter()
            .find(|r| r.target == "ns" && r.metric == "throughput")
            .unwrap();
        assert_eq!(ns.ratio_pairs, None);
        assert!(ns.ratio_to_native.unwrap() < 0.5, "the far ones weigh in");
    }

    /// Counts come from the counted warm-up alone: they must reach the results
    /// (and the diagnosis), while a warm-up's headline stays out.
    #[test]
    fn counts_measured_on_the_warm_up_reach_the_results() {
        let mut ss = vec![];
        for (rep, v) in [(0, 1.0), (1, 100.0), (2, 110.0)] {
            let mut s = sample("native", rep, v);
            if rep == 0 {
                s.metrics
                    .push(Metric::lower("count.syscalls", "per MB", 3906.0));
            }
            ss.push(s);
        }
        let rs = derive_results(&ss);
        let get = |m: &str| rs.iter().find(|r| r.metric == m);
        let count = get("count.syscalls").expect("the warm-up's count");
        assert_eq!((count.n, count.median), (1, 3906.0));
        assert_eq!(count.samples, vec![3906.0]);
        assert!(count.discarded.is_empty());
        assert_eq!(get("throughput").unwrap().samples, vec![100.0, 110.0]);
        // Any other metric seen only on a warm-up has no result.
        ss[0].metrics.push(Metric::lower("other", "s", 1.0));
        assert!(derive_results(&ss).iter().all(|r| r.metric != "other"));
    }

    #[test]
    fn results_drop_warmup_take_median_and_normalize_to_native() {
        let mut ss = vec![];
        for (rep, v) in [(0, 1.0), (1, 100.0), (2, 110.0), (3, 90.0)] {
            ss.push(sample("native", rep, v));
        }
        for (rep, v) in [(0, 1.0), (1, 50.0), (2, 55.0), (3, 45.0)] {
            ss.push(sample("other", rep, v));
        }
        let rs = derive_results(&ss);
        assert_eq!(rs.len(), 4);
        let nat = &rs[0];
        assert_eq!(
            (nat.target.as_str(), nat.metric.as_str()),
            ("native", "throughput")
        );
        assert!(nat.headline);
        assert_eq!(nat.median, 100.0);
        assert_eq!(nat.samples, vec![100.0, 110.0, 90.0]);
        assert_eq!(nat.discarded, vec![1.0]);
        assert_eq!(nat.ratio_to_native, None);
        // 3 kept samples: the median's interval is their range, at its real 75%.
        assert_eq!((nat.n, nat.ci_low, nat.ci_high), (3, 90.0, 110.0));
        assert!((nat.ci_level - 0.75).abs() < 1e-12);
        let other = rs
            .iter()
            .find(|r| r.target == "other" && r.metric == "throughput")
            .unwrap();
        // The median of the 9 pairwise ratios (50/100, 55/110, 45/90 among them).
        assert!((other.ratio_to_native.unwrap() - 0.5).abs() < 1e-12);
        // 3 and 3: the range of the 9 pairwise ratios, at 1 − 2/20 = 90%.
        assert!((other.ratio_ci_level.unwrap() - 0.9).abs() < 1e-12);
        assert!((other.ratio_ci_low.unwrap() - 45.0 / 110.0).abs() < 1e-12);
        assert!((other.ratio_ci_high.unwrap() - 55.0 / 90.0).abs() < 1e-12);
        assert!(!other.about_native() && other.significantly_slower());
        let time = rs
            .iter()
            .find(|r| r.target == "other" && r.metric == "time")
            .unwrap();
        assert!(!time.headline);
        // Lower is better: native time / other time = 0.01 / 0.02 = 0.5.
        assert!((time.ratio_to_native.unwrap() - 0.5).abs() < 1e-9);
    }
}
