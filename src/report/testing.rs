//! Synthetic runs for the report's tests and its size benchmark. They are made up
//! (`command` says so) and are never written to a results store by virtmark.

use crate::fingerprint::Fingerprint;
use crate::plan::Plan;
use crate::plan::{IsolationPlan, ScalePlan};
use crate::results::{
    derive_results, Aggregate, Degradation, DegradationPair, Dnr, FailureRecord, IsolationEntry,
    Provenance, RunRecord, RunStatus, SampleRecord, ScaleEntry, Spread, TargetRecord,
    SCHEMA_VERSION,
};
use crate::workloads::Metric;

/// Target names used by synthetic runs, native first.
pub const TARGETS: &[&str] = &[
    "native", "ns", "oci:crun", "oci:runc", "lxc", "gvisor", "uml", "qemu:tcg",
];

/// A synthetic run: `targets` targets (≤ 8) × `workloads` workloads (`dd-zero`, then
/// `w01`, `w02`, …) × `reps` repetitions (the first discarded), with seeded noise,
/// a secondary metric, and one DNR (the last target on the second workload) when
/// there are at least two of each.
pub fn synthetic_run(targets: usize, workloads: usize, reps: u32) -> RunRecord {
    let targets: Vec<&str> = TARGETS.iter().copied().take(targets.clamp(1, 8)).collect();
    let names: Vec<String> = (0..workloads)
        .map(|j| {
            if j == 0 {
                "dd-zero".to_string()
            } else {
                format!("w{j:02}")
            }
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(42);
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for rep in 0..reps {
        for (j, w) in names.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                if t > 0 && t == targets.len() - 1 && j == 1 {
                    failures.push(FailureRecord {
                        target: target.to_string(),
                        workload: w.clone(),
                        rep,
                        kind: "deadline".into(),
                        message: "no answer within 10m".into(),
                        ..Default::default()
                    });
                    continue;
                }
                let base = 100.0 * (j + 1) as f64;
                let factor = 1.0 - 0.11 * t as f64 * (1.0 + (j % 3) as f64 * 0.2);
                let noise = 1.0 + (rng.f64() - 0.5) * 0.04 * (1 + (t + j) % 4) as f64;
                let v = (base * factor.max(0.05) * noise).max(0.01);
                samples.push(SampleRecord {
                    target: target.to_string(),
                    workload: w.clone(),
                    rep,
                    discarded: rep == 0,
                    at: format!("2026-01-01T00:{:02}:{:02}Z", rep, (j * 8 + t) % 60),
                    elapsed_s: 1.0,
                    metrics: vec![
                        Metric::higher("throughput", "MB/s", v),
                        Metric::lower("time", "s", 100.0 / v),
                    ],
                    ..Default::default()
                });
            }
        }
    }
    let mut plan = Plan::default();
    plan.run.reps = reps;
    plan.run.targets = Some(targets.iter().map(|t| t.to_string()).collect());
    plan.run.workloads = Some(names.clone());
    let host = Fingerprint {
        hostname: "testhost".into(),
        kernel: "6.1.0-test".into(),
        cpu_model: "Test CPU @ 2.0GHz".into(),
        cpus: 2,
        memory_bytes: 24 << 30,
        clocksource: "tsc".into(),
        virtualization: "none".into(),
        ..Default::default()
    };
    let results = derive_results(&samples);
    RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: "20260101-000000-test".into(),
        started: "2026-01-01T00:00:00Z".into(),
        finished: Some("2026-01-01T00:10:00Z".into()),
        status: RunStatus::Complete,
        virtmark: Provenance {
            version: "0.1.0".into(),
            git_revision: "synthetic".into(),
        },
        command: "synthetic run for tests".into(),
        host: host.clone(),
        plan,
        targets: targets
            .iter()
            .map(|t| TargetRecord {
                name: t.to_string(),
                fingerprint: Some(host.clone()),
                startup_s: Some(0.05),
                ..Default::default()
            })
            .collect(),
        samples,
        failures,
        results,
        scale: vec![],
        isolation: vec![],
        diagnosis: vec![],
    }
}

/// Synthetic scalability entries for `targets` at n = 1, 2, 4, 8, 16: the first
/// target scales up to n = 4 then flattens (a knee at 4); the second flattens from
/// n = 2; the third (when present) loses one instance at n = 8 and every instance
/// at n = 16 (DNR: could not start at its memory share).
pub fn synthetic_scale(targets: &[&str]) -> Vec<ScaleEntry> {
    let mut out = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        for n in [1u32, 2, 4, 8, 16] {
            let cap = [4.0, 2.0, 8.0][ti % 3];
            let agg = 1000.0 * (n as f64).min(cap) * (1.0 - 0.08 * ti as f64);
            let mut dnr = Vec::new();
            if ti == 2 && n >= 8 {
                let lost = if n == 16 { n } else { 1 };
                for i in n - lost..n {
                    dnr.push(Dnr {
                        instance: i,
                        reason: format!("could not start at {} MiB", 2039 / n),
                    });
                }
            }
            let ok = n - dnr.len() as u32;
            let mean = agg / n as f64;
            // Every instance counts: a DNR is zero in the aggregate (as the
            // results model derives it), the finished-only figure beside.
            let (per_instance, aggregate, fairness) = if ok == 0 {
                (
                    Some(Spread {
                        mean: 0.0,
                        min: 0.0,
                        max: 0.0,
                    }),
                    Some(Aggregate {
                        mean_times_n: 0.0,
                        sum: 0.0,
                        finished_mean_times_n: None,
                    }),
                    None,
                )
            } else {
                (
                    Some(Spread {
                        mean: mean * ok as f64 / n as f64,
                        min: if ok < n {
                            0.0
                        } else {
                            mean * (1.0 - 0.02 * n as f64)
                        },
                        max: mean * (1.0 + 0.015 * n as f64),
                    }),
                    Some(Aggregate {
                        mean_times_n: mean * ok as f64,
                        sum: mean * ok as f64,
                        finished_mean_times_n: (ok < n).then_some(mean * n as f64),
                    }),
                    Some(1.0 - 0.002 * n as f64),
                )
            };
            out.push(ScaleEntry {
                target: t.to_string(),
                workload: "dd-zero".into(),
                metric: "throughput".into(),
                unit: "MB/s".into(),
                instances: n,
                memory_per_instance: (2039u64 << 20) / n as u64,
                pinned: false,
                per_instance,
                per_instance_finished: None,
                aggregate,
                fairness,
                past_knee: false,
                barrier_spread_ms: (n > 1).then_some(0.5 * n as f64),
                window_overlap: None,
                counts: crate::results::InstanceCounts {
                    planned: n,
                    started: ok,
                    finished: ok,
                    failed: n - ok,
                },
                dnr,
            });
        }
    }
    // past_knee as the runner computes it: grew < 5% from the previous n, and at
    // every n after.
    for t in targets {
        let idx: Vec<usize> = (0..out.len()).filter(|&i| out[i].target == *t).collect();
        let aggs: Vec<Option<f64>> = idx
            .iter()
            .map(|&i| out[i].aggregate.map(|a| a.mean_times_n))
            .collect();
        for j in (1..idx.len()).rev() {
            let flat = matches!((aggs[j - 1], aggs[j]), (Some(a), Some(b)) if b < a * 1.05);
            let later = j + 1 == idx.len() || out[idx[j + 1]].past_knee || aggs[j + 1].is_none();
            out[idx[j]].past_knee = flat && later;
        }
    }
    out
}

/// Synthetic isolation entries for `targets` under the `cpu`, `memory` and `fork`
/// stressors: degradation grows with the target's index; the last target's
/// misbehaving instance is a DNR under `memory` (killed by the OOM killer).
pub fn synthetic_isolation(targets: &[&str]) -> Vec<IsolationEntry> {
    let mut out = Vec::new();
    for (si, st) in ["cpu", "memory", "fork"].iter().enumerate() {
        for (ti, t) in targets.iter().enumerate() {
            let wb = 1.5 * (ti as f64 + 1.0) * (si as f64 + 1.0);
            let mb = 4.0 * wb;
            let dnr = ti + 1 == targets.len() && *st == "memory";
            out.push(IsolationEntry {
                target: t.to_string(),
                stressor: st.to_string(),
                instances: 4,
                degradation: DegradationPair {
                    misbehaving: if dnr {
                        Degradation::Dnr {
                            dnr: "killed by signal 9 (the OOM killer)".into(),
                        }
                    } else {
                        Degradation::Percent(mb)
                    },
                    well_behaved: Degradation::Percent(wb),
                },
                baseline_rate: [Some(500.0), Some(500.0)],
                stressed_rate: [
                    (!dnr).then_some(500.0 * (1.0 - mb / 100.0)),
                    Some(500.0 * (1.0 - wb / 100.0)),
                ],
                well_behaved_p99_us: [Some(120.0 * (1.0 + wb / 10.0)), Some(120.0)],
                well_behaved_finished: None,
                well_behaved_dnr: vec![],
                counts: crate::results::InstanceCounts {
                    planned: 4,
                    started: 4,
                    finished: if dnr { 3 } else { 4 },
                    failed: u32::from(dnr),
                },
                host_sched_lag_ms: None,
                stressor_notes: vec![format!("{st} started"), format!("stressor {st}: done")],
            });
        }
    }
    out
}

/// A synthetic `virtmark study`: the overhead run of [`synthetic_run`] plus the
/// scalability and isolation entries above for its non-native targets (native
/// too for scalability).
pub fn synthetic_study(targets: usize, workloads: usize, reps: u32) -> RunRecord {
    let mut run = synthetic_run(targets, workloads, reps);
    let names: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    run.scale = synthetic_scale(&names);
    let others: Vec<&str> = names.iter().copied().filter(|t| *t != "native").collect();
    run.isolation = synthetic_isolation(&others);
    run.plan.scale = Some(ScalePlan::default());
    run.plan.isolation = Some(IsolationPlan::default());
    run.command = "synthetic study for tests".into();
    run
}

/// A synthetic `virtmark isolate` run: no overhead samples, isolation entries only.
pub fn synthetic_isolation_run(targets: &[&str]) -> RunRecord {
    let mut run = synthetic_run(1, 1, 2);
    run.samples.clear();
    run.failures.clear();
    run.results.clear();
    run.targets.retain(|_| false);
    for t in targets {
        run.targets.push(TargetRecord {
            name: t.to_string(),
            fingerprint: Some(run.host.clone()),
            startup_s: Some(0.05),
            ..Default::default()
        });
    }
    run.plan.run.targets = Some(targets.iter().map(|t| t.to_string()).collect());
    run.plan.run.workloads = Some(vec!["rr-paced".into()]);
    run.plan.isolation = Some(IsolationPlan::default());
    run.isolation = synthetic_isolation(targets);
    run.command = "synthetic isolation run for tests".into();
    run
}
