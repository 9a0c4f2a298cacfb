//! The scalability step: n instances of one target start, wait at a barrier and
//! run the same workload together, for n = 1, 2, 4, … (Camargos et al. 2008). Each
//! instance gets the memory total divided by n. Reported per n: per-instance
//! throughput, aggregate (mean per instance × n, as the studies computed it, and
//! the plain sum), Jain's fairness index, and the knee of the aggregate.

use std::time::Duration;

use anyhow::Result;

use super::conn::ConnError;
use super::progress::{self, Progress};
use super::session::{check_targets, Agent, InstanceSpec, Session};
use super::{needs_peer, now_rfc3339, Finished, RunOptions};
use crate::plan::{Plan, ScalePlan};
use crate::protocol::{Request, Response};
use crate::results::{Aggregate, Dnr, FailureRecord, SampleRecord, ScaleEntry, Spread, Step};
use crate::stats;
use crate::workloads;

/// Growth below which adding instances no longer pays (the knee).
pub const KNEE_GROWTH: f64 = 0.05;

/// One barrier round's raw outcome for one instance.
pub(crate) enum Outcome {
    Sample(SampleRecord),
    Dnr(String),
}

/// Start `agents` together: each gets `run_workload` with a barrier, answers
/// `ready`, then all get `go` in one tight loop. Returns each instance's outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) fn barrier_round(
    s: &Session,
    agents: &mut [Option<Agent>],
    first_id: u64,
    workload: &str,
    plan: &Plan,
    deadline: Duration,
    make_sample: &dyn Fn(
        usize,
        Vec<crate::workloads::Metric>,
        Vec<String>,
        f64,
        Option<f64>,
    ) -> SampleRecord,
) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = agents.iter().map(|_| None).collect();
    let mut reqs: Vec<Option<Request>> = agents.iter().map(|_| None).collect();
    for (i, a) in agents.iter_mut().enumerate() {
        let Some(agent) = a.as_mut() else {
            out[i] = Some(Outcome::Dnr("the instance did not start".into()));
            continue;
        };
        let req = Request::RunWorkload {
            id: first_id + i as u64,
            workload: workload.to_string(),
            params: plan.params.get(workload).cloned().unwrap_or_default(),
            duration: plan.run.duration,
            preset: plan.run.preset,
            peer: agent.peer(),
            barrier: true,
        };
        if let Err(e) = agent.conn.send(&req) {
            out[i] = Some(Outcome::Dnr(e.to_string()));
            continue;
        }
        reqs[i] = Some(req);
    }
    // Everyone ready?
    for (i, a) in agents.iter_mut().enumerate() {
        let (Some(agent), Some(req)) = (a.as_mut(), reqs[i].as_ref()) else {
            continue;
        };
        match agent
            .conn
            .wait(req, Duration::from_secs(60), &s.interrupted, |_, _| {})
        {
            Ok(Response::Ready { .. }) => {}
            Ok(Response::Error { kind, message, .. }) => {
                out[i] = Some(Outcome::Dnr(format!("{kind}: {message}")));
                reqs[i] = None;
            }
            Ok(other) => {
                out[i] = Some(Outcome::Dnr(format!("unexpected answer {other:?}")));
                reqs[i] = None;
            }
            Err(e) => {
                out[i] = Some(Outcome::Dnr(format!("{e} at the barrier")));
                reqs[i] = None;
            }
        }
    }
    // Release together: every instance sleeps until the same instant, a little
    // after the last `go` is written (1 ms per instance, at least 10 ms).
    let lead = Duration::from_millis(10 + agents.len() as u64);
    let at = (std::time::SystemTime::now() + lead)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .ok();
    for (i, a) in agents.iter_mut().enumerate() {
        if let (Some(agent), Some(_)) = (a.as_mut(), reqs[i].as_ref()) {
            let _ = agent.conn.send(&Request::Go {
                id: first_id + i as u64,
                at,
            });
        }
    }
    for (i, a) in agents.iter_mut().enumerate() {
        let (Some(agent), Some(req)) = (a.as_mut(), reqs[i].as_ref()) else {
            continue;
        };
        out[i] = Some(
            match agent.conn.wait(req, deadline, &s.interrupted, |_, _| {}) {
                Ok(Response::Sample {
                    metrics,
                    notes,
                    elapsed_s,
                    started_at,
                    ..
                }) => Outcome::Sample(make_sample(i, metrics, notes, elapsed_s, started_at)),
                Ok(Response::Error { kind, message, .. }) => {
                    Outcome::Dnr(format!("{kind}: {message}"))
                }
                Ok(other) => Outcome::Dnr(format!("unexpected answer {other:?}")),
                Err(e @ ConnError::Interrupted) => Outcome::Dnr(e.to_string()),
                Err(e) => {
                    // Stuck or gone: it takes no further part.
                    if let Some(dead) = a.take() {
                        dead.kill();
                    }
                    Outcome::Dnr(format!("{e}"))
                }
            },
        );
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Dnr("no answer".into())))
        .collect()
}

/// Run the scalability step for every target of the plan.
pub fn scale(mut plan: Plan, opts: &RunOptions) -> Result<Finished> {
    let sp: ScalePlan = plan.scale.clone().unwrap_or_default();
    plan.scale = Some(sp.clone());
    if plan.run.targets.is_none() {
        plan.run.targets = Some(crate::targets::available_targets());
    }
    plan.run.workloads = Some(vec![sp.workload.clone()]);
    plan.run.duration = Some(plan.duration());
    plan.validate("plan")?;
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let kinds = check_targets(&target_names, plan.run.peer.as_deref())?;
    let mut s = Session::open(
        &plan,
        &target_names,
        opts,
        needs_peer(std::slice::from_ref(&sp.workload)),
    )?;
    scale_step(&mut s, &plan, &sp, &kinds)?;
    s.finish()
}

/// The scalability step inside an open session.
pub fn scale_step(
    s: &mut Session,
    plan: &Plan,
    sp: &ScalePlan,
    kinds: &[crate::targets::TargetKind],
) -> Result<()> {
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let w = workloads::find(&sp.workload).expect("validated");
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "virtmark: scale {}: {} on {} with n = {:?}, {} repetition(s) each, memory {} in total",
        s.run_id(),
        sp.workload,
        target_names.join(", "),
        sp.instances,
        plan.run.reps,
        sp.memory_total
    );
    let progress = Progress::new(
        target_names.len() as u64 * sp.instances.len() as u64 * u64::from(plan.run.reps),
    );
    let deadline = plan.run.deadline.get();
    let mut next_id = 1u64;

    'targets: for (ti, tname) in target_names.iter().enumerate() {
        for &n in &sp.instances {
            if s.is_interrupted() {
                break 'targets;
            }
            let memory = sp.memory_total.bytes() / u64::from(n);
            let mut agents: Vec<Option<Agent>> = Vec::new();
            let mut start_dnr: Vec<Dnr> = Vec::new();
            for i in 0..n as usize {
                progress.start_item(tname, &format!("{} start {}/{n}", sp.workload, i + 1), 0, 1);
                let spec = InstanceSpec {
                    name: tname,
                    kind: &kinds[ti],
                    index: i,
                    memory,
                    cpuset: sp.pin.then(|| vec![i % host_cpus]),
                    cpus: plan.run.cpus.map(|c| c as usize),
                };
                match s.start(&spec) {
                    Ok(a) => {
                        s.note_target(tname, &a.fingerprint, a.startup_s)?;
                        agents.push(Some(a));
                    }
                    Err(e) => {
                        let reason = format!("did not start at {} MiB: {e:#}", memory >> 20);
                        s.store_failure(FailureRecord {
                            step: Step::Scale,
                            instances: Some(n),
                            instance: Some(i as u32),
                            target: tname.clone(),
                            workload: sp.workload.clone(),
                            rep: 0,
                            kind: "target_failed".into(),
                            message: reason.clone(),
                            stressor: None,
                        })?;
                        start_dnr.push(Dnr {
                            instance: i as u32,
                            reason,
                        });
                        agents.push(None);
                    }
                }
            }
            for rep in 0..plan.run.reps {
                if s.is_interrupted() {
                    break;
                }
                progress.start_item(tname, &format!("{} ×{n}", sp.workload), rep, plan.run.reps);
                let make = |i: usize, metrics, notes, elapsed_s, started_at: Option<f64>| {
                    let mut notes: Vec<String> = notes;
                    if let Some(t) = started_at {
                        notes.push(format!("started_at={t:.6}"));
                    }
                    SampleRecord {
                        step: Step::Scale,
                        instances: Some(n),
                        instance: Some(i as u32),
                        stressor: None,
                        target: tname.clone(),
                        workload: sp.workload.clone(),
                        rep,
                        discarded: rep < plan.run.discard,
                        position: None,
                        at: now_rfc3339(),
                        elapsed_s,
                        metrics,
                        notes,
                    }
                };
                let outcomes =
                    barrier_round(s, &mut agents, next_id, &sp.workload, plan, deadline, &make);
                next_id += u64::from(n);
                let mut shown = None;
                for (i, o) in outcomes.into_iter().enumerate() {
                    match o {
                        Outcome::Sample(sample) => {
                            shown.get_or_insert_with(|| progress::describe(&sample));
                            s.store_sample(sample)?;
                        }
                        Outcome::Dnr(why) => {
                            if start_dnr.iter().any(|d| d.instance == i as u32) {
                                continue;
                            }
                            s.store_failure(FailureRecord {
                                step: Step::Scale,
                                instances: Some(n),
                                instance: Some(i as u32),
                                target: tname.clone(),
                                workload: sp.workload.clone(),
                                rep,
                                kind: "dnr".into(),
                                message: why,
                                stressor: None,
                            })?;
                        }
                    }
                }
                progress.finish_item(&shown.unwrap_or_else(|| "no result".into()));
            }
            for a in agents.into_iter().flatten() {
                a.stop();
            }
        }
    }
    progress.done();
    let entries = scale_entries(
        &s.record.samples,
        &s.record.failures,
        sp,
        w.higher_is_better,
    );
    s.record.scale = entries;
    Ok(())
}

/// Derive the scale entries from the stored samples (pure: reports recompute it).
pub fn scale_entries(
    samples: &[SampleRecord],
    failures: &[FailureRecord],
    sp: &ScalePlan,
    higher_is_better: bool,
) -> Vec<ScaleEntry> {
    let mut targets: Vec<String> = Vec::new();
    for s in samples.iter().filter(|s| s.step == Step::Scale) {
        if !targets.contains(&s.target) {
            targets.push(s.target.clone());
        }
    }
    for f in failures.iter().filter(|f| f.step == Step::Scale) {
        if !targets.contains(&f.target) {
            targets.push(f.target.clone());
        }
    }
    let mut out = Vec::new();
    for t in &targets {
        let mut rows: Vec<ScaleEntry> = Vec::new();
        for &n in &sp.instances {
            let of_n: Vec<&SampleRecord> = samples
                .iter()
                .filter(|s| s.step == Step::Scale && &s.target == t && s.instances == Some(n))
                .collect();
            let failed: Vec<&FailureRecord> = failures
                .iter()
                .filter(|f| f.step == Step::Scale && &f.target == t && f.instances == Some(n))
                .collect();
            if of_n.is_empty() && failed.is_empty() {
                continue;
            }
            let (metric, unit) = of_n
                .first()
                .and_then(|s| s.metrics.first())
                .map(|m| {
                    let unit = if m.higher_is_better {
                        m.unit.clone()
                    } else {
                        format!("1/{}", m.unit)
                    };
                    (m.name.clone(), unit)
                })
                .unwrap_or_default();
            let mut per: Vec<f64> = Vec::new();
            let mut dnr: Vec<Dnr> = Vec::new();
            let mut starts_by_rep: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
            for i in 0..n {
                let kept: Vec<f64> = of_n
                    .iter()
                    .filter(|s| s.instance == Some(i) && !s.discarded)
                    .filter_map(|s| s.metrics.first().map(|m| m.value))
                    .collect();
                for s in of_n
                    .iter()
                    .filter(|s| s.instance == Some(i) && !s.discarded)
                {
                    if let Some(t) = s
                        .notes
                        .iter()
                        .find_map(|n| n.strip_prefix("started_at=")?.parse::<f64>().ok())
                    {
                        starts_by_rep.entry(s.rep).or_default().push(t);
                    }
                }
                if kept.is_empty() {
                    let reason = failed
                        .iter()
                        .rev()
                        .find(|f| f.instance == Some(i))
                        .map(|f| f.message.clone())
                        .unwrap_or_else(|| "no kept sample".into());
                    dnr.push(Dnr {
                        instance: i,
                        reason,
                    });
                    continue;
                }
                let m = stats::median(&kept);
                per.push(if higher_is_better { m } else { 1.0 / m });
            }
            let spread = (!per.is_empty()).then(|| Spread {
                mean: stats::mean(&per),
                min: per.iter().copied().fold(f64::INFINITY, f64::min),
                max: per.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
            let barrier_spread_ms = starts_by_rep
                .values()
                .filter(|v| v.len() > 1)
                .map(|v| {
                    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (hi - lo) * 1e3
                })
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.max(x)))
                });
            rows.push(ScaleEntry {
                target: t.clone(),
                workload: sp.workload.clone(),
                metric,
                unit,
                instances: n,
                memory_per_instance: sp.memory_total.bytes() / u64::from(n),
                pinned: sp.pin,
                per_instance: spread,
                aggregate: spread.map(|sp| Aggregate {
                    mean_times_n: sp.mean * f64::from(n),
                    sum: per.iter().sum(),
                }),
                fairness: (!per.is_empty()).then(|| stats::jain_fairness(&per)),
                past_knee: false,
                barrier_spread_ms,
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
