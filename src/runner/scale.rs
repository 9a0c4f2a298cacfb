//! The scalability step: n instances of one target start, make their set-up,
//! wait at a barrier and measure the same workload together, for n = 1, 2, 4, …
//! (Camargos et al. 2008). Each instance gets its share of memory (the studies'
//! split by default). The figures per n (per-instance throughput, aggregate with
//! every instance counted, fairness, knee, the windows' alignment) are derived
//! from the stored samples by [`crate::results::steps::scale_entries`].

use std::time::Duration;

use anyhow::Result;

use super::conn::ConnError;
use super::progress::{self, Progress};
use super::session::{check_targets, Agent, InstanceSpec, Session};
use super::{needs_peer, now_rfc3339, Finished, RunOptions};
use crate::plan::{Plan, ScalePlan};
use crate::protocol::{Request, Response};
use crate::results::steps::{self, NOT_STARTED};
use crate::results::{Dnr, FailureRecord, SampleRecord, Step};
use crate::workloads;

pub use crate::results::steps::KNEE_GROWTH;

/// One barrier round's raw outcome for one instance.
pub(crate) enum Outcome {
    Sample(SampleRecord),
    Dnr(String),
}

/// Start `agents` together in two phases: each gets `run_workload` with a
/// barrier, makes its set-up and answers `ready`; then all get `go` in one tight
/// loop, and measure. Returns each instance's outcome; a sample's notes say when
/// its measured window started and ended (`started_at=`, `ended_at=`, Unix
/// seconds) and which CPUs its fingerprint showed (`cpus=`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn barrier_round(
    s: &Session,
    agents: &mut [Option<Agent>],
    first_id: u64,
    workload: &str,
    plan: &Plan,
    deadline: Duration,
    make_sample: &dyn Fn(usize, Vec<crate::workloads::Metric>, Vec<String>, f64) -> SampleRecord,
) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = agents.iter().map(|_| None).collect();
    let mut reqs: Vec<Option<Request>> = agents.iter().map(|_| None).collect();
    for (i, a) in agents.iter_mut().enumerate() {
        let Some(agent) = a.as_mut() else {
            out[i] = Some(Outcome::Dnr(
                "the instance is down (it did not start, or died earlier)".into(),
            ));
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
            count: false,
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
        // The set-up (a table, a connection) comes before `ready`: the same
        // deadline as the workload itself.
        match agent.conn.wait(req, deadline, &s.interrupted, |_, _| {}) {
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
                out[i] = Some(Outcome::Dnr(format!(
                    "{e} in its set-up, before the barrier"
                )));
                reqs[i] = None;
                // Stuck or gone: it takes no further part.
                if !matches!(e, ConnError::Interrupted) {
                    if let Some(dead) = a.take() {
                        dead.kill();
                    }
                }
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
        let cpus = agent.fingerprint.cpu.affinity_list.clone();
        out[i] = Some(
            match agent.conn.wait(req, deadline, &s.interrupted, |_, _| {}) {
                Ok(Response::Sample {
                    metrics,
                    notes,
                    elapsed_s,
                    started_at,
                    ended_at,
                    ..
                }) => {
                    let mut sample = make_sample(i, metrics, notes, elapsed_s);
                    sample
                        .notes
                        .extend(super::window_notes(started_at, ended_at));
                    if !cpus.is_empty() {
                        sample.notes.push(format!("cpus={cpus}"));
                    }
                    Outcome::Sample(sample)
                }
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
            let memory = sp.memory_for(n);
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
                    unlimited: false,
                    cpu_share: false,
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
                            kind: NOT_STARTED.into(),
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
                let make = |i: usize, metrics, notes: Vec<String>, elapsed_s| {
                    let mut notes = notes;
                    if sp.pin {
                        // The host CPU it was given; its fingerprint's `cpus=` is
                        // what it saw from inside.
                        notes.push(format!("pinned_to={}", i % host_cpus));
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
    s.record.scale = steps::scale_entries(
        &s.record.samples,
        &s.record.failures,
        sp,
        plan.run.discard,
        w.higher_is_better,
    );
    Ok(())
}
