//! The isolation step (Xu et al. 2008; Matthews et al. 2007): k instances of a
//! target run a well-behaved request/response load (`rr-paced`) against the peer;
//! first all behave (the baseline), then, for each stressor, instance 0 misbehaves
//! while the others keep going. Reported: % degradation of the good-response rate
//! of the misbehaving instance and the mean over the well-behaved ones; DNR where
//! an instance returned nothing.

use std::time::Duration;

use anyhow::Result;

use super::progress::{self, Progress};
use super::scale::{barrier_round, Outcome};
use super::session::{check_targets, Agent, InstanceSpec, Session};
use super::{now_rfc3339, Finished, RunOptions};
use crate::error::user;
use crate::plan::{IsolationPlan, Plan};
use crate::protocol::{Request, Response};
use crate::results::{
    Degradation, DegradationPair, FailureRecord, IsolationEntry, SampleRecord, Step,
};
use crate::stats;
use crate::stressors::{StressParams, DESTRUCTIVE};
use crate::targets::TargetKind;

/// The well-behaved workload.
pub const GOOD_WORKLOAD: &str = "rr-paced";
/// Name of the all-well-behaved round.
pub const BASELINE: &str = "none";

/// Refuse destructive stressors on `native` without the flag.
pub fn check_safety(targets: &[String], iso: &IsolationPlan) -> Result<()> {
    if iso.allow_host_stress || !targets.iter().any(|t| t == "native") {
        return Ok(());
    }
    let bad: Vec<&str> = iso
        .stressors
        .iter()
        .map(String::as_str)
        .filter(|s| DESTRUCTIVE.contains(s))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(user(format!(
        "refusing the {} stressor(s) on native: they would hit this host itself, with no \
         cgroup or VM limit around them; run them in a target (ns, oci:runc, uml, …), leave \
         them out with --stressors cpu,udp-send,udp-recv, or pass --allow-host-stress to run \
         them bounded anyway",
        bad.join(", ")
    )))
}

/// Run the isolation step for every target of the plan.
pub fn isolate(mut plan: Plan, opts: &RunOptions) -> Result<Finished> {
    let iso = plan.isolation.clone().unwrap_or_default();
    plan.isolation = Some(iso.clone());
    if plan.run.targets.is_none() {
        plan.run.targets = Some(crate::targets::available_targets());
    }
    plan.run.workloads = Some(vec![GOOD_WORKLOAD.into()]);
    let plan = isolation_plan(plan)?;
    let target_names = plan.run.targets.clone().unwrap_or_default();
    check_safety(&target_names, &iso)?;
    let kinds = check_targets(&target_names, plan.run.peer.as_deref())?;
    let mut s = Session::open(&plan, &target_names, opts, true)?;
    isolate_step(&mut s, &plan, &iso, &kinds)?;
    s.finish()
}

/// The plan the isolation rounds run with: the window as duration, the offered
/// rate as `rr-paced`'s parameter.
pub fn isolation_plan(mut plan: Plan) -> Result<Plan> {
    let iso = plan.isolation.clone().unwrap_or_default();
    plan.run.duration = Some(iso.window(plan.run.preset));
    let p = plan.params.entry(GOOD_WORKLOAD.into()).or_default();
    p.rate.get_or_insert(iso.rate);
    plan.validate("plan")?;
    Ok(plan)
}

/// The isolation step inside an open session; `plan` comes from [`isolation_plan`].
pub fn isolate_step(
    s: &mut Session,
    plan: &Plan,
    iso: &IsolationPlan,
    kinds: &[TargetKind],
) -> Result<()> {
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let window = iso.window(plan.run.preset);
    eprintln!(
        "virtmark: isolate {}: {} instance(s) of {} at {}/s each, stressors {}; {} round(s) of {} each",
        s.run_id(),
        iso.instances,
        target_names.join(", "),
        iso.rate,
        iso.stressors.join(", "),
        plan.run.reps,
        window
    );
    let rounds_per_target = (1 + iso.stressors.len() as u64) * u64::from(plan.run.reps);
    let progress = Progress::new(target_names.len() as u64 * rounds_per_target);
    let round_deadline = window.get() + Duration::from_secs(60);
    let mut next_id = 1u64;

    'targets: for (ti, tname) in target_names.iter().enumerate() {
        let spec = |i: usize| InstanceSpec {
            name: tname,
            kind: &kinds[ti],
            index: i,
            memory: iso.memory.bytes(),
            cpuset: None,
            cpus: plan.run.cpus.map(|c| c as usize),
        };
        let mut agents: Vec<Option<Agent>> = Vec::new();
        for i in 0..iso.instances as usize {
            agents.push(start_instance(s, &spec(i), tname)?);
        }
        let mut all_notes: Vec<(String, Vec<String>)> = Vec::new();
        let rounds = std::iter::once(BASELINE.to_string()).chain(iso.stressors.iter().cloned());
        for stressor in rounds {
            if s.is_interrupted() {
                break 'targets;
            }
            // Replace instances that died in the previous round.
            for (i, a) in agents.iter_mut().enumerate() {
                if a.is_none() {
                    *a = start_instance(s, &spec(i), tname)?;
                }
            }
            let mut notes = Vec::new();
            let stress_id = next_id;
            next_id += 1;
            if stressor != BASELINE {
                let params = stress_params(
                    iso,
                    &kinds[ti],
                    window.get(),
                    plan.run.reps,
                    agents[0].as_ref(),
                );
                notes.push(start_stressor(
                    s,
                    &mut agents[0],
                    stress_id,
                    &stressor,
                    params,
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            for rep in 0..plan.run.reps {
                if s.is_interrupted() {
                    break;
                }
                progress.start_item(
                    tname,
                    &format!("{GOOD_WORKLOAD} with {stressor}"),
                    rep,
                    plan.run.reps,
                );
                let make =
                    |i: usize, metrics, notes, elapsed_s, _started: Option<f64>| SampleRecord {
                        step: Step::Isolation,
                        instances: Some(iso.instances),
                        instance: Some(i as u32),
                        stressor: Some(stressor.clone()),
                        target: tname.clone(),
                        workload: GOOD_WORKLOAD.into(),
                        rep,
                        discarded: rep < plan.run.discard,
                        position: None,
                        at: now_rfc3339(),
                        elapsed_s,
                        metrics,
                        notes,
                    };
                let outcomes = barrier_round(
                    s,
                    &mut agents,
                    next_id,
                    GOOD_WORKLOAD,
                    plan,
                    round_deadline,
                    &make,
                );
                next_id += u64::from(iso.instances);
                let mut shown = None;
                for (i, o) in outcomes.into_iter().enumerate() {
                    match o {
                        Outcome::Sample(sample) => {
                            if i == 1 || shown.is_none() {
                                shown =
                                    Some(format!("instance {i}: {}", progress::describe(&sample)));
                            }
                            s.store_sample(sample)?;
                        }
                        Outcome::Dnr(why) => s.store_failure(FailureRecord {
                            step: Step::Isolation,
                            instances: Some(iso.instances),
                            instance: Some(i as u32),
                            stressor: Some(stressor.clone()),
                            target: tname.clone(),
                            workload: GOOD_WORKLOAD.into(),
                            rep,
                            kind: "dnr".into(),
                            message: why,
                        })?,
                    }
                }
                progress.finish_item(&shown.unwrap_or_else(|| "no result".into()));
            }
            if stressor != BASELINE {
                notes.push(stop_stressor(s, &mut agents[0], stress_id));
            }
            all_notes.push((stressor, notes));
        }
        for a in agents.into_iter().flatten() {
            a.stop();
        }
        s.record.isolation.extend(isolation_entries(
            &s.record.samples,
            tname,
            iso.instances,
            &all_notes,
        ));
    }
    progress.done();
    Ok(())
}

fn start_instance(s: &mut Session, spec: &InstanceSpec, tname: &str) -> Result<Option<Agent>> {
    match s.start(spec) {
        Ok(a) => {
            s.note_target(tname, &a.fingerprint, a.startup_s)?;
            Ok(Some(a))
        }
        Err(e) => {
            eprintln!("virtmark: warning: {tname} instance {}: {e:#}", spec.index);
            Ok(None)
        }
    }
}

/// Bounds of a stressor: its duration covers every round plus a margin; memory
/// and processes are capped past the target's own limits (so that the limit, not
/// the cap, stops it), and tightly on `native`.
fn stress_params(
    iso: &IsolationPlan,
    kind: &TargetKind,
    window: Duration,
    reps: u32,
    agent0: Option<&Agent>,
) -> StressParams {
    let native = *kind == TargetKind::Native;
    let per_round = window + Duration::from_secs(3);
    StressParams {
        duration_ms: (per_round * reps + Duration::from_secs(5)).as_millis() as u64,
        threads: None,
        memory_cap: Some(if native {
            iso.memory.bytes().min(1 << 30)
        } else {
            iso.memory.bytes() * 2
        }),
        pids_cap: Some(if native { 256 } else { 8192 }),
        peer: agent0.and_then(Agent::peer),
        dir: None,
    }
}

fn start_stressor(
    s: &Session,
    agent: &mut Option<Agent>,
    id: u64,
    stressor: &str,
    params: StressParams,
) -> String {
    let Some(a) = agent.as_mut() else {
        return format!("{stressor}: not started, instance 0 is down");
    };
    let req = Request::StartStressor {
        id,
        stressor: stressor.into(),
        params,
    };
    match a
        .conn
        .request(&req, Duration::from_secs(20), &s.interrupted, |_, _| {})
    {
        Ok(Response::StressorStarted { pid, .. }) => format!("{stressor} started (pid {pid})"),
        Ok(Response::Error { message, .. }) => format!("{stressor} refused: {message}"),
        Ok(other) => format!("{stressor}: unexpected answer {other:?}"),
        Err(e) => format!("{stressor}: instance 0 did not answer: {e}"),
    }
}

fn stop_stressor(s: &Session, agent: &mut Option<Agent>, id: u64) -> String {
    let Some(a) = agent.as_mut() else {
        return "instance 0 died under the stressor (DNR); restarted for the next".into();
    };
    match a.conn.request(
        &Request::StopStressor { id },
        Duration::from_secs(20),
        &s.interrupted,
        |_, _| {},
    ) {
        Ok(Response::StressorStopped { report, status, .. }) => match report {
            Some(r) => format!(
                "stressor {}: {} {} in {:.1} s{}; {status}",
                r.kind,
                crate::report::fmt_num(r.amount),
                r.unit,
                r.ran_s,
                r.limit.map(|l| format!(" ({l})")).unwrap_or_default()
            ),
            None => format!("stressor ended without a report: {status}"),
        },
        Ok(Response::Error { message, .. }) => format!("stop: {message}"),
        Ok(other) => format!("stop: unexpected answer {other:?}"),
        Err(e) => {
            // The orchestrator's own deadline: the whole instance goes.
            if let Some(dead) = agent.take() {
                dead.kill();
            }
            format!("instance 0 did not answer stop ({e}): killed and restarted")
        }
    }
}

fn rate_of(
    samples: &[SampleRecord],
    target: &str,
    stressor: &str,
    i: u32,
    metric: &str,
) -> Option<f64> {
    let kept: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.step == Step::Isolation
                && s.target == target
                && s.stressor.as_deref() == Some(stressor)
                && s.instance == Some(i)
                && !s.discarded
        })
        .filter_map(|s| s.metrics.iter().find(|m| m.name == metric).map(|m| m.value))
        .collect();
    (!kept.is_empty()).then(|| stats::median(&kept))
}

fn degradation(base: Option<f64>, stressed: Option<f64>) -> Degradation {
    match (base, stressed) {
        (Some(b), Some(s)) if b > 0.0 => Degradation::Percent((b - s) / b * 100.0),
        (None, _) => Degradation::Dnr {
            dnr: "no baseline result".into(),
        },
        (_, None) => Degradation::Dnr {
            dnr: "no result under stress".into(),
        },
        _ => Degradation::Dnr {
            dnr: "zero baseline".into(),
        },
    }
}

/// Derive the isolation entries of one target from its samples (pure).
pub fn isolation_entries(
    samples: &[SampleRecord],
    target: &str,
    instances: u32,
    notes: &[(String, Vec<String>)],
) -> Vec<IsolationEntry> {
    let mean_of = |xs: Vec<Option<f64>>| -> Option<f64> {
        let v: Vec<f64> = xs.into_iter().flatten().collect();
        (!v.is_empty()).then(|| stats::mean(&v))
    };
    notes
        .iter()
        .filter(|(st, _)| st != BASELINE)
        .map(|(st, n)| {
            let b0 = rate_of(samples, target, BASELINE, 0, "good_rate");
            let s0 = rate_of(samples, target, st, 0, "good_rate");
            let good: Vec<u32> = (1..instances).collect();
            let wb_deg: Vec<Degradation> = good
                .iter()
                .map(|&i| {
                    degradation(
                        rate_of(samples, target, BASELINE, i, "good_rate"),
                        rate_of(samples, target, st, i, "good_rate"),
                    )
                })
                .collect();
            let pct: Vec<f64> = wb_deg
                .iter()
                .filter_map(|d| match d {
                    Degradation::Percent(p) => Some(*p),
                    Degradation::Dnr { .. } => None,
                })
                .collect();
            let well_behaved = if pct.is_empty() {
                Degradation::Dnr {
                    dnr: "no well-behaved instance returned a result".into(),
                }
            } else {
                Degradation::Percent(stats::mean(&pct))
            };
            IsolationEntry {
                target: target.into(),
                stressor: st.clone(),
                instances,
                degradation: DegradationPair {
                    misbehaving: degradation(b0, s0),
                    well_behaved,
                },
                baseline_rate: [
                    b0,
                    mean_of(
                        good.iter()
                            .map(|&i| rate_of(samples, target, BASELINE, i, "good_rate"))
                            .collect(),
                    ),
                ],
                stressed_rate: [
                    s0,
                    mean_of(
                        good.iter()
                            .map(|&i| rate_of(samples, target, st, i, "good_rate"))
                            .collect(),
                    ),
                ],
                well_behaved_p99_us: [
                    mean_of(
                        good.iter()
                            .map(|&i| rate_of(samples, target, st, i, "p99_latency"))
                            .collect(),
                    ),
                    mean_of(
                        good.iter()
                            .map(|&i| rate_of(samples, target, BASELINE, i, "p99_latency"))
                            .collect(),
                    ),
                ],
                stressor_notes: n.clone(),
            }
        })
        .collect()
}
