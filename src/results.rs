//! The results model: plain serde data from which every format is derived
//! (`results.json`, `samples.csv`, the database, the terminal table). Statistics
//! are derived from the raw samples by [`derive_results`], never stored alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::plan::Plan;
use crate::stats;
use crate::workloads::Metric;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Target name (`native`).
    pub name: String,
    /// Its fingerprint, seen from inside by the agent.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Time from "start target" to "agent answers hello", seconds.
    #[serde(default)]
    pub startup_s: Option<f64>,
}

/// One raw measurement: one execution of one workload in one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Repetition index, from 0.
    pub rep: u32,
    /// Discarded as warm-up.
    pub discarded: bool,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
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
    /// Bootstrap 95% CI of the median, low end.
    pub ci_low: f64,
    /// Bootstrap 95% CI of the median, high end.
    pub ci_high: f64,
    /// CoV above 5%.
    pub noisy: bool,
    /// Median normalized against native (1.0 = native, higher is better); null for
    /// native itself or when native has no result.
    pub ratio_to_native: Option<f64>,
    /// Bootstrap 95% CI of the ratio, low end.
    pub ratio_ci_low: Option<f64>,
    /// Bootstrap 95% CI of the ratio, high end.
    pub ratio_ci_high: Option<f64>,
    /// The kept raw samples, in repetition order.
    pub samples: Vec<f64>,
    /// The discarded warm-up samples.
    pub discarded: Vec<f64>,
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
    /// Statistics per (target, workload, metric), derived from `samples`.
    pub results: Vec<ResultEntry>,
}

/// The target every other is normalized against.
pub const BASELINE: &str = "native";

/// Derive statistics for every (target, workload, metric) from the samples, in the
/// order targets and workloads first appear.
pub fn derive_results(samples: &[SampleRecord]) -> Vec<ResultEntry> {
    // (target, workload, metric) -> (unit, hib, headline, kept, discarded)
    type Key = (String, String, String);
    struct Acc {
        unit: String,
        hib: bool,
        headline: bool,
        kept: Vec<f64>,
        discarded: Vec<f64>,
    }
    let mut order: Vec<Key> = Vec::new();
    let mut acc: BTreeMap<Key, Acc> = BTreeMap::new();
    for s in samples {
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
                a.kept.push(m.value);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let a = &acc[&key];
            if a.kept.is_empty() {
                return None;
            }
            let s = stats::summarize(&a.kept);
            let base = (key.0 != BASELINE)
                .then(|| acc.get(&(BASELINE.to_string(), key.1.clone(), key.2.clone())))
                .flatten()
                .filter(|b| !b.kept.is_empty());
            let (ratio, rlo, rhi) = match base {
                Some(b) => {
                    let (r, lo, hi) = stats::bootstrap_ratio_ci(&a.kept, &b.kept, a.hib);
                    (Some(r), Some(lo), Some(hi))
                }
                None => (None, None, None),
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
                ci_low: s.ci_low,
                ci_high: s.ci_high,
                noisy: s.noisy,
                ratio_to_native: ratio,
                ratio_ci_low: rlo,
                ratio_ci_high: rhi,
                samples: a.kept.clone(),
                discarded: a.discarded.clone(),
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
            notes: vec![],
        }
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
        let other = rs
            .iter()
            .find(|r| r.target == "other" && r.metric == "throughput")
            .unwrap();
        assert_eq!(other.ratio_to_native, Some(0.5));
        let time = rs
            .iter()
            .find(|r| r.target == "other" && r.metric == "time")
            .unwrap();
        assert!(!time.headline);
        // Lower is better: native time / other time = 0.01 / 0.02 = 0.5.
        assert!((time.ratio_to_native.unwrap() - 0.5).abs() < 1e-9);
    }
}
