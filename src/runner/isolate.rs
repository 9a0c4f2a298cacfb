//! The isolation step (Xu et al. 2008; Matthews et al. 2007): k instances of a
//! target run a well-behaved request/response load (`rr-paced`) against the peer;
//! first all behave (the baseline), then, for each stressor, instance 0 misbehaves
//! while the others keep going. Reported: % degradation of the good-response rate
//! of the misbehaving instance and the mean over the well-behaved ones, a
//! well-behaved instance that returned nothing counted as a 100% loss (DNR), and
//! the host's scheduling lag during each round. The figures are derived from the
//! stored samples by [`crate::results::steps::isolation_entries`].
//!
//! A stressor starts before the first repetition of its round and is stopped
//! after the last (its own time bound is only a safety net past the round's
//! deadline); it dies with its instance; on `native` its process is in the
//! ledger.

use std::time::Duration;

use anyhow::Result;

use super::progress::{self, Progress};
use super::scale::{barrier_round, Outcome};
use super::session::{check_targets, Agent, InstanceSpec, Session};
use super::{now_rfc3339, Finished, RunOptions};
use crate::error::user;
use crate::plan::{IsolationPlan, Plan};
use crate::protocol::{Request, Response};
use crate::results::steps::{self, SCHED_LAG};
use crate::results::{FailureRecord, SampleRecord, Step};
use crate::stressors::{StressParams, DESTRUCTIVE, FLOODS};
use crate::targets::TargetKind;
use crate::workloads::Metric;

pub use crate::results::steps::{BASELINE, GOOD_WORKLOAD};

/// Whether a target can run without memory and task limits (`--no-limits`):
/// the container targets, whose limits are cgroups virtmark sets.
fn can_lift_limits(target: &str) -> Result<(), String> {
    match target {
        "native" => Err("native has no limits to lift: it is the host itself".into()),
        "ns" | "lxc" | "gvisor" => Ok(()),
        t if t.starts_with("oci:") => Ok(()),
        t => Err(format!(
            "{t} cannot run without limits: its memory is the machine's size, or its limits are not virtmark's"
        )),
    }
}

/// Refuse destructive stressors on `native` without the flag, and `--no-limits`
/// on targets that have no limits virtmark could lift.
pub fn check_safety(targets: &[String], iso: &IsolationPlan) -> Result<()> {
    if iso.no_limits {
        for t in targets {
            can_lift_limits(t).map_err(|why| {
                user(format!(
                    "refusing --no-limits for {t}: {why}; it applies to ns, oci:crun, oci:runc, lxc and gvisor"
                ))
            })?;
        }
    }
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
            unlimited: iso.no_limits,
            // With limits, each instance also gets its own CPU share, as a VM
            // gets its vCPUs; --no-limits lifts that too.
            cpu_share: !iso.no_limits,
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
            let mut stressing = false;
            let round_start = std::time::Instant::now();
            if stressor != BASELINE {
                match refusal(
                    &stressor,
                    &kinds[ti],
                    agents[0].as_ref().map(|a| &a.fingerprint),
                ) {
                    Some(why) => notes.push(format!("{stressor} refused: {why}")),
                    None => {
                        let params = stress_params(
                            iso,
                            &kinds[ti],
                            round_deadline,
                            plan.run.reps,
                            agents[0].as_ref(),
                        );
                        let (note, started) = start_stressor(
                            s,
                            &mut agents[0],
                            stress_id,
                            &stressor,
                            params,
                            kinds[ti] == TargetKind::Native,
                        );
                        notes.push(note);
                        stressing = started;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
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
                let make = |i: usize, metrics, notes, elapsed_s| SampleRecord {
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
                let lag = LagProbe::start();
                let outcomes = barrier_round(
                    s,
                    &mut agents,
                    next_id,
                    GOOD_WORKLOAD,
                    plan,
                    round_deadline,
                    &make,
                );
                let (lag_ms, lag_s) = lag.stop();
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
                // The host's own responsiveness during the repetition.
                s.store_sample(SampleRecord {
                    step: Step::Isolation,
                    instances: Some(iso.instances),
                    instance: None,
                    stressor: Some(stressor.clone()),
                    target: tname.clone(),
                    workload: SCHED_LAG.into(),
                    rep,
                    discarded: rep < plan.run.discard,
                    position: None,
                    at: now_rfc3339(),
                    elapsed_s: lag_s,
                    metrics: vec![Metric::lower("max_lag", "ms", lag_ms)],
                    notes: vec![format!(
                        "a host thread asking for {} ms sleeps, largest overshoot",
                        LagProbe::TICK.as_millis()
                    )],
                })?;
                progress.finish_item(&shown.unwrap_or_else(|| "no result".into()));
            }
            if stressing {
                let ran = round_start.elapsed().as_secs_f64();
                notes.push(stop_stressor(s, &mut agents[0], stress_id, ran));
            }
            all_notes.push((stressor, notes));
        }
        for a in agents.into_iter().flatten() {
            a.stop();
        }
        s.record.isolation.extend(steps::isolation_entries(
            &s.record.samples,
            &s.record.failures,
            tname,
            iso.instances,
            plan.run.discard,
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

/// Why a stressor must not run in this instance, if it must not: on `ssh:`
/// targets, the destructive ones unless the remote agent sits in a cgroup with
/// memory and task limits, and the UDP floods unless the remote reaches a peer of
/// the user's (`--peer`) rather than this host's loopback through the tunnel.
fn refusal(
    stressor: &str,
    kind: &TargetKind,
    fingerprint: Option<&crate::fingerprint::Fingerprint>,
) -> Option<String> {
    let TargetKind::Ssh(t) = kind else {
        return None;
    };
    let fingerprint = fingerprint?;
    if DESTRUCTIVE.contains(&stressor) {
        let cg = &fingerprint.cgroup;
        if cg.memory_max.is_none() || cg.pids_max.is_none() {
            return Some(format!(
                "ssh:{}: the remote agent has no cgroup memory and task limits (memory {}, tasks {}): \
                 the {stressor} stressor would hit the remote host itself; run the agent there in a \
                 limited container or VM",
                t.host,
                cg.memory_max.map_or("unlimited".into(), |m| format!("{} MiB", m >> 20)),
                cg.pids_max.map_or("unlimited".into(), |p| p.to_string()),
            ));
        }
    }
    if FLOODS.contains(&stressor) && t.peer.is_none() {
        return Some(format!(
            "ssh:{}: the peer is reached through the ssh tunnel, so the {stressor} flood would aim at \
             this host's loopback, not at the instance's own network path; give --peer ADDR, a peer \
             the remote host reaches directly",
            t.host
        ));
    }
    None
}

/// A host thread that asks for short sleeps and keeps the largest overshoot:
/// how long a runnable host task waited for a CPU while the step ran.
struct LagProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
    start: std::time::Instant,
}

impl LagProbe {
    const TICK: Duration = Duration::from_millis(10);

    fn start() -> LagProbe {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                std::thread::sleep(Self::TICK);
                worst = worst.max(t.elapsed().saturating_sub(Self::TICK));
            }
            worst.as_secs_f64() * 1e3
        });
        LagProbe {
            stop,
            thread,
            start: std::time::Instant::now(),
        }
    }

    /// The largest lag, ms, and how long the probe ran, s.
    fn stop(self) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ran = self.start.elapsed().as_secs_f64();
        (self.thread.join().unwrap_or(f64::NAN), ran)
    }
}

/// Bounds of a stressor. It is stopped when its round ends; its own duration is
/// only a safety net past every repetition's deadline, so it cannot expire while
/// the round still measures. Memory and processes are capped past the target's
/// own limits (so that the limit, not the cap, stops it), and tightly on `native`.
fn stress_params(
    iso: &IsolationPlan,
    kind: &TargetKind,
    round_deadline: Duration,
    reps: u32,
    agent0: Option<&Agent>,
) -> StressParams {
    let native = *kind == TargetKind::Native;
    StressParams {
        duration_ms: ((round_deadline + Duration::from_secs(5)) * reps.max(1)
            + Duration::from_secs(30))
        .as_millis() as u64,
        threads: None,
        // Twice the instance's memory: the cgroup limit stops it first, and with
        // --no-limits this cap is what bounds it.
        memory_cap: Some(if native {
            iso.memory.bytes().min(1 << 30)
        } else {
            iso.memory.bytes() * 2
        }),
        // Past the container's task limit (4096), so that the limit stops it;
        // on native and without limits, 32 spinning processes: enough to crowd
        // the neighbours, few enough that the host stays responsive (64 took a
        // host thread's scheduling lag past 500 ms on the loaded CI machine).
        pids_cap: Some(if native || iso.no_limits { 32 } else { 8192 }),
        peer: agent0.and_then(Agent::peer),
        dir: None,
    }
}

/// Ask instance 0 to start the stressor; on `native` its process goes into the
/// ledger (elsewhere it lives inside the instance, whose own ledger entries
/// remove it). Returns the note and whether it runs.
fn start_stressor(
    s: &Session,
    agent: &mut Option<Agent>,
    id: u64,
    stressor: &str,
    params: StressParams,
    native: bool,
) -> (String, bool) {
    let Some(a) = agent.as_mut() else {
        return (
            format!("{stressor}: not started, instance 0 is down"),
            false,
        );
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
        Ok(Response::StressorStarted { pid, .. }) => {
            let mut note = format!("{stressor} started (pid {pid})");
            if native {
                if let Err(e) = s.ledger.record_process(pid) {
                    note.push_str(&format!("; not in the ledger: {e:#}"));
                }
            }
            (note, true)
        }
        Ok(Response::Error { message, .. }) => (format!("{stressor} refused: {message}"), false),
        Ok(other) => (format!("{stressor}: unexpected answer {other:?}"), false),
        Err(e) => (format!("{stressor}: instance 0 did not answer: {e}"), false),
    }
}

/// Stop the stressor at the end of its round, which lasted `round_s`; say so
/// when it had ended before the round did.
fn stop_stressor(s: &Session, agent: &mut Option<Agent>, id: u64, round_s: f64) -> String {
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
                "stressor {}: {} {} in {:.1} s{}; {status}{}",
                r.kind,
                crate::units::fmt_num(r.amount),
                r.unit,
                r.ran_s,
                r.limit.map(|l| format!(" ({l})")).unwrap_or_default(),
                if r.ran_s + 1.0 < round_s {
                    format!("; it ended {:.1} s before its round", round_s - r.ran_s)
                } else {
                    String::new()
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;

    fn ssh(peer: Option<&str>) -> TargetKind {
        let mut k = crate::targets::parse("ssh:user@remote").unwrap();
        if let TargetKind::Ssh(t) = &mut k {
            t.peer = peer.map(String::from);
        }
        k
    }

    #[test]
    fn ssh_refuses_destructive_stressors_without_remote_limits_and_tunnelled_floods() {
        let mut fp = Fingerprint::default();
        for st in ["memory", "fork", "disk"] {
            let why = refusal(st, &ssh(None), Some(&fp)).expect(st);
            assert!(why.contains("no cgroup memory and task limits"), "{why}");
        }
        assert_eq!(refusal("cpu", &ssh(Some("10.0.0.1:7000")), Some(&fp)), None);
        let why = refusal("udp-recv", &ssh(None), Some(&fp)).unwrap();
        assert!(why.contains("this host's loopback"), "{why}");
        assert_eq!(
            refusal("udp-send", &ssh(Some("10.0.0.1:7000")), Some(&fp)),
            None
        );
        // A limited remote may run them.
        fp.cgroup.memory_max = Some(512 << 20);
        fp.cgroup.pids_max = Some(4096);
        assert_eq!(refusal("fork", &ssh(None), Some(&fp)), None);
        // Other targets are never refused here.
        assert_eq!(
            refusal("fork", &crate::targets::parse("ns").unwrap(), None),
            None
        );
    }

    #[test]
    fn no_limits_applies_to_containers_only() {
        let iso = IsolationPlan {
            no_limits: true,
            ..IsolationPlan::default()
        };
        for t in ["ns", "oci:crun", "oci:runc", "lxc", "gvisor"] {
            assert!(check_safety(&[t.to_string()], &iso).is_ok(), "{t}");
        }
        for t in ["native", "uml", "qemu:tcg", "ssh:remote"] {
            let e = check_safety(&[t.to_string()], &iso).unwrap_err();
            assert!(
                format!("{e:#}").contains("refusing --no-limits"),
                "{t}: {e:#}"
            );
        }
    }
}
