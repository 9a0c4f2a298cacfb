//! The scalability and isolation figures, derived from the stored samples and
//! failures alone, so that the runner, the database and every report compute them
//! the same way.
//!
//! Every instance counts: an instance that returned no result in a kept repetition
//! (DNR) counts as zero throughput there, and as a 100% loss of its good responses
//! (marked DNR) in the isolation step. The figures over the instances that finished
//! are kept beside, labelled, for the reader who wants the studies' view.

use std::collections::BTreeSet;

use super::{
    Aggregate, Degradation, DegradationPair, Dnr, FailureRecord, InstanceCounts, IsolationEntry,
    SampleRecord, ScaleEntry, Spread, Step,
};
use crate::plan::ScalePlan;
use crate::stats;

/// Growth below which adding instances no longer pays (the knee).
pub const KNEE_GROWTH: f64 = 0.05;
/// The well-behaved workload of the isolation step.
pub const GOOD_WORKLOAD: &str = "rr-paced";
/// Name of the isolation step's all-well-behaved round.
pub const BASELINE: &str = "none";
/// Workload name of the host's scheduling-lag samples taken during isolation rounds.
pub const SCHED_LAG: &str = "host-sched-lag";
/// Failure kind of an instance that did not start: it failed every repetition.
pub const NOT_STARTED: &str = "target_failed";

/// Unix time in a sample's note `key=value`.
pub fn note_time(s: &SampleRecord, key: &str) -> Option<f64> {
    s.notes.iter().find_map(|n| {
        n.strip_prefix(key)?
            .strip_prefix('=')?
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
    })
}

/// Mean, smallest and largest of `xs`, `None` when empty.
fn spread(xs: &[f64]) -> Option<Spread> {
    (!xs.is_empty()).then(|| Spread {
        mean: stats::mean(xs),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// One instance's figure over the kept repetitions: the median over them, a
/// repetition with no result counted as `zero`; whether it returned a result in
/// every one; and why not (the last failure's message).
struct PerInstance {
    value: f64,
    finished: bool,
    started: bool,
    reason: Option<String>,
}

/// Gather instance `i`'s figure from `samples` (already narrowed to one group)
/// over `reps`; `value` reads a sample's figure.
fn per_instance(
    samples: &[&SampleRecord],
    failures: &[&FailureRecord],
    i: u32,
    reps: &BTreeSet<u32>,
    value: &dyn Fn(&SampleRecord) -> Option<f64>,
) -> PerInstance {
    let mine: Vec<&FailureRecord> = failures
        .iter()
        .copied()
        .filter(|f| f.instance == Some(i))
        .collect();
    let started = !mine.iter().any(|f| f.kind == NOT_STARTED);
    let mut vals = Vec::new();
    let mut all = true;
    for r in reps {
        let got = samples
            .iter()
            .filter(|s| s.instance == Some(i) && s.rep == *r)
            .find_map(|s| value(s));
        if got.is_none() {
            all = false;
        }
        vals.push(got.unwrap_or(0.0));
    }
    let finished = started && all && !reps.is_empty();
    let reason = (!finished).then(|| {
        mine.last()
            .map(|f| f.message.clone())
            .unwrap_or_else(|| "no result in a kept repetition".into())
    });
    PerInstance {
        value: if vals.is_empty() {
            0.0
        } else {
            stats::median(&vals)
        },
        finished,
        started,
        reason,
    }
}

/// The kept repetitions of a group: every repetition from `discard` on that any
/// sample or failure of it names (a start failure names repetition 0 only).
fn kept_reps(
    samples: &[&SampleRecord],
    failures: &[&FailureRecord],
    discard: u32,
) -> BTreeSet<u32> {
    let mut reps: BTreeSet<u32> = samples
        .iter()
        .filter(|s| !s.discarded)
        .map(|s| s.rep)
        .chain(
            failures
                .iter()
                .filter(|f| f.kind != NOT_STARTED)
                .map(|f| f.rep),
        )
        .filter(|&r| r >= discard)
        .collect();
    if reps.is_empty() {
        // Nothing but start failures: one repetition in which nobody ran.
        reps.insert(discard);
    }
    reps
}

/// Largest gap between the starts of the measured windows in one repetition, ms,
/// over the repetitions; and the smallest overlap of the windows: the part of the
/// span from the first start to the last end during which every instance that
/// returned a result was measuring (1 = fully together, 0 = never all at once).
fn alignment(samples: &[&SampleRecord], reps: &BTreeSet<u32>) -> (Option<f64>, Option<f64>) {
    let mut spread_ms: Option<f64> = None;
    let mut overlap: Option<f64> = None;
    for r in reps {
        let windows: Vec<(f64, Option<f64>)> = samples
            .iter()
            .filter(|s| s.rep == *r)
            .filter_map(|s| Some((note_time(s, "started_at")?, note_time(s, "ended_at"))))
            .collect();
        if windows.len() < 2 {
            continue;
        }
        let first = windows.iter().map(|w| w.0).fold(f64::INFINITY, f64::min);
        let last = windows
            .iter()
            .map(|w| w.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let gap = (last - first) * 1e3;
        spread_ms = Some(spread_ms.map_or(gap, |g| g.max(gap)));
        let ends: Option<Vec<f64>> = windows.iter().map(|w| w.1).collect();
        if let Some(ends) = ends {
            let first_end = ends.iter().copied().fold(f64::INFINITY, f64::min);
            let last_end = ends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = last_end - first;
            let f = if span > 0.0 {
                ((first_end - last) / span).clamp(0.0, 1.0)
            } else {
                1.0
            };
            overlap = Some(overlap.map_or(f, |o| o.min(f)));
        }
    }
    (spread_ms, overlap)
}

/// Derive the scale entries from the stored samples and failures: one per target
/// and n, in the order targets first appear. `discard` is the plan's number of
/// warm-up repetitions.
pub fn scale_entries(
    samples: &[SampleRecord],
    failures: &[FailureRecord],
    sp: &ScalePlan,
    discard: u32,
    higher_is_better: bool,
) -> Vec<ScaleEntry> {
    let mut targets: Vec<&str> = Vec::new();
    let scale_samples = samples.iter().filter(|s| s.step == Step::Scale);
    let scale_failures = failures.iter().filter(|f| f.step == Step::Scale);
    for t in scale_samples
        .clone()
        .map(|s| s.target.as_str())
        .chain(scale_failures.clone().map(|f| f.target.as_str()))
    {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let throughput = |s: &SampleRecord| {
        let v = s.metrics.first()?.value;
        Some(if higher_is_better {
            v
        } else if v > 0.0 {
            1.0 / v
        } else {
            return None;
        })
    };
    let mut out = Vec::new();
    for t in targets {
        let of_target: Vec<&SampleRecord> =
            scale_samples.clone().filter(|s| s.target == t).collect();
        let (metric, unit) = of_target
            .iter()
            .find_map(|s| s.metrics.first())
            .map(|m| {
                let unit = if m.higher_is_better {
                    m.unit.clone()
                } else {
                    format!("1/{}", m.unit)
                };
                (m.name.clone(), unit)
            })
            .unwrap_or_default();
        let mut rows: Vec<ScaleEntry> = Vec::new();
        for &n in &sp.instances {
            let of_n: Vec<&SampleRecord> = of_target
                .iter()
                .copied()
                .filter(|s| s.instances == Some(n))
                .collect();
            let failed: Vec<&FailureRecord> = scale_failures
                .clone()
                .filter(|f| f.target == t && f.instances == Some(n))
                .collect();
            if of_n.is_empty() && failed.is_empty() {
                continue;
            }
            let reps = kept_reps(&of_n, &failed, discard);
            let kept: Vec<&SampleRecord> = of_n
                .iter()
                .copied()
                .filter(|s| !s.discarded && reps.contains(&s.rep))
                .collect();
            let per: Vec<PerInstance> = (0..n)
                .map(|i| per_instance(&kept, &failed, i, &reps, &throughput))
                .collect();
            let all: Vec<f64> = per.iter().map(|p| p.value).collect();
            let done: Vec<f64> = per.iter().filter(|p| p.finished).map(|p| p.value).collect();
            let dnr: Vec<Dnr> = per
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    Some(Dnr {
                        instance: i as u32,
                        reason: p.reason.clone()?,
                    })
                })
                .collect();
            let total: f64 = all.iter().sum();
            let fairness = stats::jain_fairness(&all);
            let (barrier_spread_ms, window_overlap) = alignment(&kept, &reps);
            rows.push(ScaleEntry {
                target: t.to_string(),
                workload: sp.workload.clone(),
                metric: metric.clone(),
                unit: unit.clone(),
                instances: n,
                memory_per_instance: sp.memory_for(n),
                pinned: sp.pin,
                per_instance: spread(&all),
                per_instance_finished: spread(&done),
                aggregate: Some(Aggregate {
                    mean_times_n: total,
                    sum: total,
                    finished_mean_times_n: (!done.is_empty())
                        .then(|| stats::mean(&done) * f64::from(n)),
                }),
                fairness: fairness.is_finite().then_some(fairness),
                past_knee: false,
                barrier_spread_ms,
                window_overlap,
                counts: InstanceCounts {
                    planned: n,
                    started: per.iter().filter(|p| p.started).count() as u32,
                    finished: done.len() as u32,
                    failed: n - done.len() as u32,
                },
                dnr,
            });
        }
        let aggs: Vec<f64> = rows
            .iter()
            .map(|r| r.aggregate.map_or(0.0, |a| a.mean_times_n))
            .collect();
        if let Some(k) = stats::knee(&aggs, KNEE_GROWTH) {
            for r in rows.iter_mut().skip(k) {
                r.past_knee = true;
            }
        }
        out.extend(rows);
    }
    out
}

/// The isolation samples and failures of one (target, round).
struct Round<'a> {
    samples: Vec<&'a SampleRecord>,
    failures: Vec<&'a FailureRecord>,
    reps: BTreeSet<u32>,
}

impl<'a> Round<'a> {
    fn of(
        samples: &'a [SampleRecord],
        failures: &'a [FailureRecord],
        target: &str,
        stressor: &str,
        discard: u32,
    ) -> Round<'a> {
        let samples: Vec<&SampleRecord> = samples
            .iter()
            .filter(|s| {
                s.step == Step::Isolation
                    && s.target == target
                    && s.workload == GOOD_WORKLOAD
                    && s.stressor.as_deref() == Some(stressor)
            })
            .collect();
        let failures: Vec<&FailureRecord> = failures
            .iter()
            .filter(|f| {
                f.step == Step::Isolation
                    && f.target == target
                    && f.stressor.as_deref() == Some(stressor)
            })
            .collect();
        let reps = kept_reps(&samples, &failures, discard);
        let samples = samples
            .into_iter()
            .filter(|s| !s.discarded && reps.contains(&s.rep))
            .collect();
        Round {
            samples,
            failures,
            reps,
        }
    }

    fn instance(&self, i: u32, metric: &str) -> PerInstance {
        let pick = |s: &SampleRecord| s.metrics.iter().find(|m| m.name == metric).map(|m| m.value);
        per_instance(&self.samples, &self.failures, i, &self.reps, &pick)
    }

    /// Mean over instances `is` of the metric, over those that finished.
    fn mean_finished(&self, is: &[u32], metric: &str) -> Option<f64> {
        let v: Vec<f64> = is
            .iter()
            .map(|&i| self.instance(i, metric))
            .filter(|p| p.finished)
            .map(|p| p.value)
            .collect();
        (!v.is_empty()).then(|| stats::mean(&v))
    }
}

/// % lost by one instance: `Dnr` when it returned nothing under stress (or in the
/// baseline), else the loss with its failed repetitions counted as zero.
fn degradation(base: &PerInstance, stressed: &PerInstance) -> Degradation {
    if !base.finished || base.value <= 0.0 {
        return Degradation::Dnr {
            dnr: format!(
                "no baseline result: {}",
                base.reason.as_deref().unwrap_or("zero good responses")
            ),
        };
    }
    if !stressed.finished && stressed.value == 0.0 {
        return Degradation::Dnr {
            dnr: stressed
                .reason
                .clone()
                .unwrap_or_else(|| "no result under stress".into()),
        };
    }
    Degradation::Percent((base.value - stressed.value) / base.value * 100.0)
}

/// Derive the isolation entries of one target: one per stressor named in `notes`
/// (with what the stressor did), in that order. `discard` is the plan's number of
/// warm-up repetitions.
pub fn isolation_entries(
    samples: &[SampleRecord],
    failures: &[FailureRecord],
    target: &str,
    instances: u32,
    discard: u32,
    notes: &[(String, Vec<String>)],
) -> Vec<IsolationEntry> {
    let base = Round::of(samples, failures, target, BASELINE, discard);
    let good: Vec<u32> = (1..instances).collect();
    notes
        .iter()
        .filter(|(st, _)| st != BASELINE)
        .map(|(st, n)| {
            let round = Round::of(samples, failures, target, st, discard);
            let rate = |r: &Round, i| r.instance(i, "good_rate");
            let misbehaving = degradation(&rate(&base, 0), &rate(&round, 0));
            let per_good: Vec<(u32, Degradation)> = good
                .iter()
                .map(|&i| (i, degradation(&rate(&base, i), &rate(&round, i))))
                .collect();
            let all: Vec<f64> = per_good
                .iter()
                .map(|(_, d)| match d {
                    Degradation::Percent(p) => *p,
                    Degradation::Dnr { .. } => 100.0,
                })
                .collect();
            let finished: Vec<f64> = per_good
                .iter()
                .filter_map(|(_, d)| match d {
                    Degradation::Percent(p) => Some(*p),
                    Degradation::Dnr { .. } => None,
                })
                .collect();
            let well_behaved_dnr: Vec<Dnr> = per_good
                .iter()
                .filter_map(|(i, d)| match d {
                    Degradation::Dnr { dnr } => Some(Dnr {
                        instance: *i,
                        reason: dnr.clone(),
                    }),
                    Degradation::Percent(_) => None,
                })
                .collect();
            let well_behaved = if all.is_empty() {
                Degradation::Dnr {
                    dnr: "no well-behaved instance".into(),
                }
            } else {
                Degradation::Percent(stats::mean(&all))
            };
            let finished_count =
                (0..instances).filter(|&i| rate(&round, i).finished).count() as u32;
            let started = (0..instances).filter(|&i| rate(&round, i).started).count() as u32;
            let lag: Vec<f64> = samples
                .iter()
                .filter(|s| {
                    s.step == Step::Isolation
                        && s.target == target
                        && s.workload == SCHED_LAG
                        && s.stressor.as_deref() == Some(st.as_str())
                        && !s.discarded
                })
                .filter_map(|s| s.metrics.first().map(|m| m.value))
                .collect();
            IsolationEntry {
                target: target.into(),
                stressor: st.clone(),
                instances,
                degradation: DegradationPair {
                    misbehaving,
                    well_behaved,
                },
                well_behaved_finished: (finished.len() < all.len() && !finished.is_empty())
                    .then(|| stats::mean(&finished)),
                well_behaved_dnr,
                counts: InstanceCounts {
                    planned: instances,
                    started,
                    finished: finished_count,
                    failed: instances - finished_count,
                },
                baseline_rate: [
                    base.mean_finished(&[0], "good_rate"),
                    base.mean_finished(&good, "good_rate"),
                ],
                stressed_rate: [
                    round.mean_finished(&[0], "good_rate"),
                    round.mean_finished(&good, "good_rate"),
                ],
                well_behaved_p99_us: [
                    round.mean_finished(&good, "p99_latency"),
                    base.mean_finished(&good, "p99_latency"),
                ],
                host_sched_lag_ms: (!lag.is_empty())
                    .then(|| lag.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                stressor_notes: n.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::Metric;

    fn scale_sample(n: u32, i: u32, rep: u32, v: f64, start: f64, end: f64) -> SampleRecord {
        SampleRecord {
            step: Step::Scale,
            instances: Some(n),
            instance: Some(i),
            target: "t".into(),
            workload: "w".into(),
            rep,
            metrics: vec![Metric::higher("throughput", "MB/s", v)],
            notes: vec![format!("started_at={start}"), format!("ended_at={end}")],
            ..Default::default()
        }
    }

    fn plan(instances: Vec<u32>) -> ScalePlan {
        ScalePlan {
            workload: "w".into(),
            instances,
            ..ScalePlan::default()
        }
    }

    #[test]
    fn an_instance_killed_mid_step_counts_as_zero_in_the_aggregate() {
        // n = 2: instance 0 gives 100 in both repetitions; instance 1 dies in
        // repetition 1 and does not come back.
        let samples = vec![
            scale_sample(2, 0, 0, 100.0, 10.0, 11.0),
            scale_sample(2, 1, 0, 100.0, 10.0, 11.0),
            scale_sample(2, 0, 1, 100.0, 20.0, 21.0),
        ];
        let failures = vec![FailureRecord {
            step: Step::Scale,
            instances: Some(2),
            instance: Some(1),
            target: "t".into(),
            workload: "w".into(),
            rep: 1,
            kind: "agent_exited".into(),
            message: "the agent closed its channel".into(),
            ..Default::default()
        }];
        let e = &scale_entries(&samples, &failures, &plan(vec![2]), 1, true)[0];
        // Kept: repetition 1 only. Instance 1 gives 0 there.
        let a = e.aggregate.unwrap();
        assert_eq!(a.mean_times_n, 100.0, "{e:?}");
        assert_eq!(a.finished_mean_times_n, Some(200.0));
        assert_eq!(e.per_instance.unwrap().min, 0.0);
        assert_eq!(
            e.counts,
            InstanceCounts {
                planned: 2,
                started: 2,
                finished: 1,
                failed: 1
            }
        );
        assert_eq!(e.dnr.len(), 1);
        assert_eq!(e.dnr[0].instance, 1);
        assert!(e.dnr[0].reason.contains("closed"));
        assert!((e.fairness.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_step_where_nobody_started_has_a_zero_aggregate_and_ends_the_curve() {
        let mut samples = Vec::new();
        for rep in 0..2 {
            samples.push(scale_sample(1, 0, rep, 100.0, 1.0, 2.0));
        }
        let failures: Vec<FailureRecord> = (0..2)
            .map(|i| FailureRecord {
                step: Step::Scale,
                instances: Some(2),
                instance: Some(i),
                target: "t".into(),
                workload: "w".into(),
                kind: NOT_STARTED.into(),
                message: "did not start at 1019 MiB".into(),
                ..Default::default()
            })
            .collect();
        let es = scale_entries(&samples, &failures, &plan(vec![1, 2]), 1, true);
        assert_eq!(es.len(), 2);
        assert_eq!(es[1].aggregate.unwrap().mean_times_n, 0.0);
        assert_eq!(es[1].aggregate.unwrap().finished_mean_times_n, None);
        assert_eq!(es[1].counts.started, 0);
        assert_eq!(es[1].dnr.len(), 2);
        assert!(es[1].past_knee);
        assert_eq!(es[1].fairness, None);
    }

    #[test]
    fn windows_give_the_spread_of_starts_and_their_overlap() {
        // Starts 10.0 and 10.1, ends 11.0 and 11.1: together 0.9 s of 1.1 s.
        let samples = vec![
            scale_sample(2, 0, 0, 1.0, 10.0, 11.0),
            scale_sample(2, 1, 0, 1.0, 10.1, 11.1),
        ];
        let e = &scale_entries(&samples, &[], &plan(vec![2]), 0, true)[0];
        assert!((e.barrier_spread_ms.unwrap() - 100.0).abs() < 1e-6);
        assert!((e.window_overlap.unwrap() - 0.9 / 1.1).abs() < 1e-9);
        // Disjoint windows never overlap.
        let samples = vec![
            scale_sample(2, 0, 0, 1.0, 10.0, 11.0),
            scale_sample(2, 1, 0, 1.0, 12.0, 13.0),
        ];
        let e = &scale_entries(&samples, &[], &plan(vec![2]), 0, true)[0];
        assert_eq!(e.window_overlap, Some(0.0));
    }

    fn iso_sample(st: &str, i: u32, rep: u32, rate: f64) -> SampleRecord {
        SampleRecord {
            step: Step::Isolation,
            instances: Some(3),
            instance: Some(i),
            stressor: Some(st.into()),
            target: "t".into(),
            workload: GOOD_WORKLOAD.into(),
            rep,
            metrics: vec![
                Metric::higher("good_rate", "resp/s", rate),
                Metric::lower("p99_latency", "us", 100.0),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_starved_neighbour_is_a_dnr_at_100_percent_in_the_well_behaved_mean() {
        let mut samples = Vec::new();
        for i in 0..3 {
            samples.push(iso_sample(BASELINE, i, 0, 500.0));
        }
        // Under the stressor: instance 0 at 250, instance 1 at 500, instance 2 gone.
        samples.push(iso_sample("fork", 0, 0, 250.0));
        samples.push(iso_sample("fork", 1, 0, 500.0));
        let failures = vec![FailureRecord {
            step: Step::Isolation,
            instances: Some(3),
            instance: Some(2),
            stressor: Some("fork".into()),
            target: "t".into(),
            workload: GOOD_WORKLOAD.into(),
            kind: "deadline".into(),
            message: "no answer within 61s".into(),
            ..Default::default()
        }];
        let notes = vec![(BASELINE.to_string(), vec![]), ("fork".to_string(), vec![])];
        let e = &isolation_entries(&samples, &failures, "t", 3, 0, &notes)[0];
        assert_eq!(e.degradation.misbehaving, Degradation::Percent(50.0));
        assert_eq!(e.degradation.well_behaved, Degradation::Percent(50.0));
        assert_eq!(e.well_behaved_finished, Some(0.0));
        assert_eq!(e.well_behaved_dnr.len(), 1);
        assert_eq!(e.well_behaved_dnr[0].instance, 2);
        assert!(e.well_behaved_dnr[0].reason.contains("no answer"));
        assert_eq!(e.counts.finished, 2);
        assert_eq!(e.counts.failed, 1);
    }
}
