//! The three steps of the method. [`run`] is the overhead step: every workload of
//! the plan in every target, repeated and interleaved, each sample committed as it
//! arrives. Order: for each repetition, for each workload, for each target — so
//! slow drift of the machine spreads over every workload and every target alike.
//! [`scale`] runs n instances at once.

pub mod conn;
pub mod isolate;
pub mod progress;
pub mod scale;
pub mod session;
pub mod study;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;

use crate::plan::Plan;
use crate::protocol::{Request, Response};
use crate::results::{FailureRecord, RunRecord, SampleRecord};
use crate::targets;
use crate::workloads;
use conn::ConnError;
use progress::Progress;
use session::{check_targets, Agent, InstanceSpec, Session};

/// Where a run goes.
pub struct RunOptions {
    /// Parent of the run directory.
    pub out: PathBuf,
    /// Results database.
    pub db: PathBuf,
    /// The command line, for provenance.
    pub command: String,
}

/// The outcome of a run.
pub struct Finished {
    /// Everything measured.
    pub record: RunRecord,
    /// The run directory.
    pub dir: PathBuf,
}

/// Now, as RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A new run id: UTC date and time plus four random hex digits.
pub fn new_run_id() -> String {
    let t = now_rfc3339(); // 2026-11-22T08:59:01Z
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}-{:04x}",
        &compact[..8],
        &compact[8..14],
        fastrand::u16(..)
    )
}

/// Set by Ctrl-C / SIGTERM: stop after the current request, keep what was measured.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: leave now. Children die with us (PDEATHSIG).
                std::process::exit(130);
            }
        });
        flag
    })
    .clone()
}

/// The default parent directory of run directories.
pub fn default_out() -> &'static Path {
    Path::new("virtmark-results")
}

/// Whether any of these workloads needs the peer.
pub fn needs_peer(workload_names: &[String]) -> bool {
    workload_names
        .iter()
        .any(|w| workloads::find(w).is_some_and(|w| w.needs_peer))
}

/// Default memory of a target instance: 2 GiB, as the studies gave their guests.
pub const DEFAULT_MEMORY: u64 = 2 << 30;

/// Run a plan: the overhead step.
pub fn run(mut plan: Plan, opts: &RunOptions) -> Result<Finished> {
    resolve_overhead(&mut plan)?;
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let workload_names = plan.workload_names();
    let kinds = check_targets(&target_names, plan.run.peer.as_deref())?;
    let mut s = Session::open(&plan, &target_names, opts, needs_peer(&workload_names))?;
    overhead(&mut s, &plan, &kinds)?;
    s.finish()
}

/// Resolve every default of the overhead step so the stored plan is exact.
pub fn resolve_overhead(plan: &mut Plan) -> Result<()> {
    if plan.run.targets.is_none() {
        plan.run.targets = Some(targets::available_targets());
    }
    if plan.run.workloads.is_none() {
        plan.run.workloads = Some(plan.workload_names());
    }
    plan.run.duration = Some(plan.duration());
    plan.validate("plan")?;
    Ok(())
}

/// The overhead step inside an open session.
pub fn overhead(s: &mut Session, plan: &Plan, kinds: &[targets::TargetKind]) -> Result<()> {
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let workload_names = plan.workload_names();
    eprintln!(
        "virtmark: run {}: {} workload(s) × {} target(s) × {} repetition(s), first {} discarded",
        s.run_id(),
        workload_names.len(),
        target_names.len(),
        plan.run.reps,
        plan.run.discard
    );

    let mut agents: Vec<Option<Agent>> = target_names.iter().map(|_| None).collect();
    let mut dead: Vec<Option<String>> = target_names.iter().map(|_| None).collect();
    let deadline = plan.run.deadline.get();
    let total = plan.run.reps as u64 * workload_names.len() as u64 * target_names.len() as u64;
    let progress = Progress::new(total);
    let mut skip: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut next_id = 1u64;

    'reps: for rep in 0..plan.run.reps {
        for wname in &workload_names {
            for (ti, tname) in target_names.iter().enumerate() {
                if s.is_interrupted() {
                    break 'reps;
                }
                progress.start_item(tname, wname, rep, plan.run.reps);
                let fail = |kind: &str, message: String| FailureRecord {
                    target: tname.clone(),
                    workload: wname.clone(),
                    rep,
                    kind: kind.into(),
                    message,
                    ..Default::default()
                };
                if let Some(why) = dead[ti]
                    .clone()
                    .or_else(|| skip.get(&(ti, wname.clone())).cloned())
                {
                    progress.finish_item(&format!("skipped ({why})"));
                    continue;
                }
                if agents[ti].is_none() {
                    let spec = InstanceSpec {
                        name: tname,
                        kind: &kinds[ti],
                        index: ti,
                        memory: plan.run.memory.map_or(DEFAULT_MEMORY, |m| m.bytes()),
                        cpuset: None,
                        cpus: plan.run.cpus.map(|c| c as usize),
                        unlimited: false,
                        cpu_share: false,
                    };
                    match s.start(&spec) {
                        Ok(a) => {
                            s.note_target(tname, &a.fingerprint, a.startup_s)?;
                            agents[ti] = Some(a);
                        }
                        Err(e) => {
                            let msg = format!("{e:#}");
                            dead[ti] = Some(msg.clone());
                            progress.warn(&format!("{tname}: {msg}"));
                            s.store_failure(fail("target_failed", msg))?;
                            continue;
                        }
                    }
                }
                let agent = agents[ti].as_mut().expect("started above");
                let id = next_id;
                next_id += 1;
                let req = Request::RunWorkload {
                    id,
                    workload: wname.clone(),
                    params: plan.params.get(wname).cloned().unwrap_or_default(),
                    duration: plan.run.duration,
                    preset: plan.run.preset,
                    peer: agent.peer(),
                    barrier: false,
                };
                let answer = agent
                    .conn
                    .request(&req, deadline, &s.interrupted, |f, m| progress.sub(f, m));
                match answer {
                    Ok(Response::Sample {
                        metrics,
                        notes,
                        elapsed_s,
                        ..
                    }) => {
                        let sample = SampleRecord {
                            target: tname.clone(),
                            workload: wname.clone(),
                            rep,
                            discarded: rep < plan.run.discard,
                            at: now_rfc3339(),
                            elapsed_s,
                            metrics,
                            notes,
                            ..Default::default()
                        };
                        progress.finish_item(&progress::describe(&sample));
                        s.store_sample(sample)?;
                    }
                    Ok(Response::Error { kind, message, .. }) => {
                        if kind == "unavailable" || kind == "unknown_workload" {
                            skip.insert((ti, wname.clone()), message.clone());
                        }
                        progress.warn(&format!("{tname} {wname} rep {}: {message}", rep + 1));
                        s.store_failure(fail(&kind, message))?;
                    }
                    Ok(other) => {
                        s.store_failure(fail("protocol", format!("unexpected answer {other:?}")))?;
                    }
                    Err(ConnError::Interrupted) => break 'reps,
                    Err(e) => {
                        // DNR: the agent is stuck or gone; restart it for the next sample.
                        let msg = format!("{e} (DNR); restarting the target");
                        progress.warn(&format!("{tname} {wname} rep {}: {msg}", rep + 1));
                        s.store_failure(fail(e.kind(), msg))?;
                        if let Some(a) = agents[ti].take() {
                            a.kill();
                        }
                    }
                }
            }
        }
    }
    progress.done();
    for a in agents.into_iter().flatten() {
        a.stop();
    }
    Ok(())
}
