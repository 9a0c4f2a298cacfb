//! Synthetic runs for the report's tests and its size benchmark. They are made up
//! (`command` says so) and are never written to a results store by virtmark.

use crate::fingerprint::Fingerprint;
use crate::plan::Plan;
use crate::results::{
    derive_results, FailureRecord, Provenance, RunRecord, RunStatus, SampleRecord, TargetRecord,
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
            })
            .collect(),
        samples,
        failures,
        results,
        scale: vec![],
        isolation: vec![],
    }
}
