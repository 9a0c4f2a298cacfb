//! Test fixtures: made-up runs for the recommendation's tests, stored in a
//! (temporary) results database exactly the way `virtmark run` stores a run.
//! Their `command` says they are fixtures; virtmark itself never writes them.

use std::path::Path;

use anyhow::Result;

use crate::fingerprint::Fingerprint;
use crate::plan::Plan;
use crate::results::{
    derive_results, Provenance, RunRecord, RunStatus, SampleRecord, TargetRecord, BASELINE,
    SCHEMA_VERSION,
};
use crate::store::db::Db;
use crate::workloads::Metric;

/// The `command` every fixture run records.
pub const COMMAND: &str = "test fixture: made-up samples for virtmark recommend's tests";

/// Multipliers of the kept repetitions (the first repetition is warm-up):
/// about ±1% of spread, so each ratio's interval is a few percent wide.
const NATIVE_NOISE: [f64; 4] = [0.90, 1.00, 1.01, 0.99];
const TARGET_NOISE: [f64; 4] = [0.80, 1.005, 0.995, 1.0];

/// A complete overhead run on host `host`: native plus each `(target, workload,
/// ratio)`, four repetitions each (the first discarded), whose median ratio to
/// native is `ratio`. Workloads take their real headline metric.
pub fn run(run_id: &str, host: &str, ratios: &[(&str, &str, f64)]) -> RunRecord {
    let mut targets: Vec<String> = vec![BASELINE.to_string()];
    let mut workloads: Vec<String> = vec![];
    for (t, w, _) in ratios {
        if !targets.iter().any(|x| x == t) {
            targets.push(t.to_string());
        }
        if !workloads.iter().any(|x| x == w) {
            workloads.push(w.to_string());
        }
    }
    let metric = |w: &str, v: f64| match crate::workloads::find(w) {
        Some(wl) if wl.higher_is_better => Metric::higher(wl.metric, wl.unit, v),
        Some(wl) => Metric::lower(wl.metric, wl.unit, v),
        None => Metric::higher("value", "1", v),
    };
    let hib = |w: &str| crate::workloads::find(w).is_none_or(|wl| wl.higher_is_better);
    let mut samples = vec![];
    for rep in 0..4u32 {
        for w in &workloads {
            let base = 1000.0;
            samples.push(SampleRecord {
                target: BASELINE.into(),
                workload: w.clone(),
                rep,
                discarded: rep == 0,
                at: format!("2026-11-30T00:00:{rep:02}Z"),
                elapsed_s: 1.0,
                metrics: vec![metric(w, base * NATIVE_NOISE[rep as usize])],
                ..Default::default()
            });
            for (t, _, r) in ratios.iter().filter(|(_, x, _)| x == w) {
                // A lower-is-better metric (time) divides by the ratio.
                let v = if hib(w) { base * r } else { base / r };
                samples.push(SampleRecord {
                    target: t.to_string(),
                    workload: w.clone(),
                    rep,
                    discarded: rep == 0,
                    at: format!("2026-11-30T00:00:{rep:02}Z"),
                    elapsed_s: 1.0,
                    metrics: vec![metric(w, v * TARGET_NOISE[rep as usize])],
                    ..Default::default()
                });
            }
        }
    }
    let mut plan = Plan::default();
    plan.run.reps = 4;
    plan.run.targets = Some(targets.clone());
    plan.run.workloads = Some(workloads);
    let host = Fingerprint {
        hostname: host.into(),
        kernel: "6.1.0-fixture".into(),
        cpu_model: "fixture CPU".into(),
        cpus: 2,
        ..Default::default()
    };
    RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.into(),
        started: "2026-11-30T00:00:00Z".into(),
        finished: Some("2026-11-30T00:01:00Z".into()),
        status: RunStatus::Complete,
        virtmark: Provenance {
            version: env!("CARGO_PKG_VERSION").into(),
            git_revision: "fixture".into(),
        },
        command: COMMAND.into(),
        host,
        plan,
        targets: targets
            .iter()
            .map(|t| TargetRecord {
                name: t.clone(),
                fingerprint: None,
                startup_s: None,
                ..Default::default()
            })
            .collect(),
        results: derive_results(&samples),
        samples,
        failures: vec![],
        scale: vec![],
        isolation: vec![],
        diagnosis: vec![],
    }
}

/// Store `run` in the database at `db_path` the way a run is stored: the run
/// row, each target, each sample in its own transaction, then its end.
pub fn store(db_path: &Path, run: &RunRecord, run_dir: &Path) -> Result<()> {
    let mut db = Db::open(db_path)?;
    db.insert_run(run, run_dir)?;
    for t in &run.targets {
        db.upsert_target(&run.run_id, t)?;
    }
    for s in &run.samples {
        db.insert_sample(&run.run_id, s)?;
    }
    for f in &run.failures {
        db.insert_failure(&run.run_id, f)?;
    }
    db.finish_run(
        &run.run_id,
        run.status,
        run.finished.as_deref().unwrap_or(&run.started),
    )?;
    Ok(())
}
