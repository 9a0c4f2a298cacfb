//! The overhead step: run every workload of the plan in every target, repeated and
//! interleaved, committing each sample as it arrives.
//!
//! Order: for each repetition, for each workload, for each target — so slow drift
//! of the machine spreads over every workload and every target alike.

pub mod conn;
mod progress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::error::user;
use crate::fingerprint;
use crate::plan::Plan;
use crate::protocol::{Request, Response};
use crate::results::{
    derive_results, FailureRecord, Provenance, RunRecord, RunStatus, SampleRecord, TargetRecord,
    SCHEMA_VERSION,
};
use crate::store::db::Db;
use crate::store::rundir::RunDir;
use crate::targets::ledger::{Ledger, Resource};
use crate::targets::{self, Instance, StartEnv};
use crate::workloads;
use conn::{AgentConn, ConnError};
use progress::Progress;

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

struct Live {
    name: String,
    kind: targets::TargetKind,
    instance: Option<Instance>,
    conn: Option<AgentConn>,
    dead: Option<String>,
}

impl Live {
    fn stop(&mut self) {
        self.conn = None;
        if let Some(mut i) = self.instance.take() {
            if let Err(e) = i.teardown.teardown() {
                eprintln!("virtmark: warning: tearing down {}: {e:#}", self.name);
            }
        }
    }
}

/// Run a plan: the overhead step.
pub fn run(mut plan: Plan, opts: &RunOptions) -> Result<Finished> {
    // Resolve every default so the stored plan is exact.
    if plan.run.targets.is_none() {
        plan.run.targets = Some(targets::available_targets());
    }
    if plan.run.workloads.is_none() {
        plan.run.workloads = Some(plan.workload_names());
    }
    plan.run.duration = Some(plan.duration());
    plan.validate("plan")?;
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let workload_names = plan.workload_names();
    let mut kinds = Vec::new();
    for t in &target_names {
        let mut kind = targets::parse(t).map_err(user)?;
        if let targets::TargetKind::Ssh(s) = &mut kind {
            s.peer = plan.run.peer.clone();
        }
        targets::driver(&kind)
            .available()
            .map_err(|why| user(format!("target {t} is not available here: {why}")))?;
        kinds.push(kind);
    }

    let interrupted = interrupt_flag();
    let mut db = Db::open(&opts.db)?;
    let run_id = new_run_id();
    let mut dir = RunDir::create(&opts.out, &run_id, &plan.to_toml())?;
    let exe = std::env::current_exe().context("locating the virtmark binary")?;
    let ledger = Arc::new(Ledger::create(dir.path(), &run_id)?);
    let scratch_root = std::env::temp_dir().join(format!("virtmark-{run_id}"));
    ledger.record(&Resource::Dir {
        path: scratch_root.clone(),
    })?;

    let mut record = RunRecord {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.clone(),
        started: now_rfc3339(),
        finished: None,
        status: RunStatus::Running,
        virtmark: Provenance::current(),
        command: opts.command.clone(),
        host: fingerprint::collect(),
        plan: plan.clone(),
        targets: target_names
            .iter()
            .map(|n| TargetRecord {
                name: n.clone(),
                fingerprint: None,
                startup_s: None,
            })
            .collect(),
        samples: vec![],
        failures: vec![],
        results: vec![],
    };
    db.insert_run(&record, dir.path())?;
    eprintln!(
        "virtmark: run {run_id}: {} workload(s) × {} target(s) × {} repetition(s), first {} discarded",
        workload_names.len(),
        target_names.len(),
        plan.run.reps,
        plan.run.discard
    );

    let needs_peer = workload_names
        .iter()
        .any(|w| workloads::find(w).is_some_and(|w| w.needs_peer));
    let peer = if needs_peer {
        Some(targets::peer::PeerProcess::start(
            &exe,
            "127.0.0.1:0",
            &dir.path().join("peer.log"),
            None,
        )?)
    } else {
        None
    };
    if let Some(p) = &peer {
        ledger.record_process(p.pid())?;
    }

    let mut live: Vec<Live> = target_names
        .iter()
        .zip(kinds)
        .map(|(n, k)| Live {
            name: n.clone(),
            kind: k,
            instance: None,
            conn: None,
            dead: None,
        })
        .collect();
    let dir_path = dir.path().to_path_buf();
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env_for = |name: &str, index: usize| StartEnv {
        index: (index + 1).min(250) as u8,
        ledger: ledger.clone(),
        tag: format!("{}{}", &run_id[run_id.len() - 4..], short_tag(name)),
        cpus: host_cpus,
        memory: 2 << 30,
        exe: &exe,
        scratch: scratch_root.join(name.replace([':', '/'], "_")),
        log: dir_path.join(format!("agent-{}.log", name.replace([':', '/'], "_"))),
        peer: peer.as_ref().map(|p| p.addr),
    };

    let deadline = plan.run.deadline.get();
    let total = plan.run.reps as u64 * workload_names.len() as u64 * live.len() as u64;
    let progress = Progress::new(total, plan.duration().get(), &workload_names);
    let mut skip: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut next_id = 1u64;
    let mut outcome: Result<()> = Ok(());

    'reps: for rep in 0..plan.run.reps {
        for wname in &workload_names {
            for (ti, t) in live.iter_mut().enumerate() {
                if interrupted.load(Ordering::SeqCst) {
                    break 'reps;
                }
                progress.start_item(&t.name, wname, rep, plan.run.reps);
                let key = (t.name.clone(), wname.clone());
                let tname = t.name.clone();
                let fail = |kind: &str, message: String| FailureRecord {
                    target: tname.clone(),
                    workload: wname.clone(),
                    rep,
                    kind: kind.into(),
                    message,
                };
                if let Some(why) = t.dead.clone().or_else(|| skip.get(&key).cloned()) {
                    progress.finish_item(&format!("{} {wname}: skipped ({why})", t.name));
                    continue;
                }
                if t.conn.is_none() {
                    match start_target(t, &env_for(&t.name, ti), &interrupted) {
                        Ok((fp, startup)) => {
                            let tr = &mut record.targets[ti];
                            tr.startup_s = Some(startup);
                            tr.fingerprint = Some(fp);
                            db.upsert_target(&run_id, tr)?;
                        }
                        Err(e) => {
                            let msg = format!("{e:#}");
                            t.stop();
                            t.dead = Some(msg.clone());
                            let f = fail("target_failed", msg);
                            db.insert_failure(&run_id, &f)?;
                            progress.warn(&format!("{}: {}", t.name, f.message));
                            record.failures.push(f);
                            continue;
                        }
                    }
                }
                let id = next_id;
                next_id += 1;
                let req = Request::RunWorkload {
                    id,
                    workload: wname.clone(),
                    params: plan.params.get(wname).cloned().unwrap_or_default(),
                    duration: plan.run.duration,
                    preset: plan.run.preset,
                    peer: t.instance.as_ref().and_then(|i| i.peer.clone()),
                };
                let conn = t.conn.as_mut().expect("started above");
                let answer = conn.request(&req, deadline, &interrupted, |f, m| {
                    progress.sub(f, m);
                });
                match answer {
                    Ok(Response::Sample {
                        metrics,
                        notes,
                        elapsed_s,
                        ..
                    }) => {
                        let s = SampleRecord {
                            target: t.name.clone(),
                            workload: wname.clone(),
                            rep,
                            discarded: rep < plan.run.discard,
                            at: now_rfc3339(),
                            elapsed_s,
                            metrics,
                            notes,
                        };
                        db.insert_sample(&run_id, &s)?;
                        dir.append_sample(&run_id, &s)?;
                        progress.finish_item(&progress::describe(&s));
                        record.samples.push(s);
                    }
                    Ok(Response::Error { kind, message, .. }) => {
                        if kind == "unavailable" || kind == "unknown_workload" {
                            skip.insert(key, message.clone());
                        }
                        let f = fail(&kind, message);
                        db.insert_failure(&run_id, &f)?;
                        progress.warn(&format!(
                            "{} {wname} rep {}: {}",
                            t.name,
                            rep + 1,
                            f.message
                        ));
                        record.failures.push(f);
                    }
                    Ok(other) => {
                        let f = fail("protocol", format!("unexpected answer {other:?}"));
                        db.insert_failure(&run_id, &f)?;
                        record.failures.push(f);
                    }
                    Err(ConnError::Interrupted) => break 'reps,
                    Err(e) => {
                        // DNR: the agent is stuck or gone; restart it for the next sample.
                        let f = fail(e.kind(), format!("{e} (DNR); restarting the target"));
                        db.insert_failure(&run_id, &f)?;
                        progress.warn(&format!(
                            "{} {wname} rep {}: {}",
                            t.name,
                            rep + 1,
                            f.message
                        ));
                        record.failures.push(f);
                        t.stop();
                    }
                }
            }
        }
    }
    progress.done();

    for t in &mut live {
        if let Some(c) = t.conn.as_mut() {
            let _ = c.request(
                &Request::Shutdown,
                Duration::from_secs(5),
                &AtomicBool::new(false),
                |_, _| {},
            );
        }
        t.stop();
    }
    drop(live);
    drop(peer);
    match Arc::try_unwrap(ledger) {
        Ok(l) => {
            for p in l.close()? {
                eprintln!("virtmark: warning: could not remove {p}");
            }
        }
        Err(_) => eprintln!("virtmark: warning: ledger still in use; run `virtmark cleanup`"),
    }

    let was_interrupted = interrupted.load(Ordering::SeqCst);
    record.status = if was_interrupted {
        RunStatus::Partial
    } else {
        RunStatus::Complete
    };
    record.finished = Some(now_rfc3339());
    record.results = derive_results(&record.samples);
    dir.write_results(&record)?;
    if let Err(e) = db.finish_run(
        &run_id,
        record.status,
        record.finished.as_deref().unwrap_or(""),
    ) {
        outcome = Err(e);
    }
    outcome?;
    if was_interrupted {
        eprintln!(
            "virtmark: interrupted: kept {} sample(s); the run is stored as partial",
            record.samples.len()
        );
    }
    Ok(Finished {
        record,
        dir: dir.path().to_path_buf(),
    })
}

/// Start a target, greet its agent and take its fingerprint. Returns the
/// fingerprint and the time from "start target" to "agent answers hello".
fn start_target(
    t: &mut Live,
    env: &StartEnv,
    interrupted: &AtomicBool,
) -> Result<(fingerprint::Fingerprint, f64)> {
    let t0 = Instant::now();
    let mut inst = targets::driver(&t.kind).start(env)?;
    let to = std::mem::replace(&mut inst.to_agent, Box::new(std::io::sink()));
    let from = std::mem::replace(&mut inst.from_agent, Box::new(std::io::empty()));
    t.instance = Some(inst);
    let mut conn = AgentConn::new(to, from);
    let hello = conn
        .request(
            &Request::Hello,
            Duration::from_secs(120),
            interrupted,
            |_, _| {},
        )
        .with_context(|| format!("{}: the agent did not greet", t.name))?;
    let startup = t0.elapsed().as_secs_f64();
    if !matches!(hello, Response::Hello { .. }) {
        anyhow::bail!("{}: unexpected answer to hello: {hello:?}", t.name);
    }
    let fp = match conn
        .request(
            &Request::Fingerprint,
            Duration::from_secs(30),
            interrupted,
            |_, _| {},
        )
        .with_context(|| format!("{}: no fingerprint", t.name))?
    {
        Response::Fingerprint { fingerprint } => *fingerprint,
        other => anyhow::bail!("{}: unexpected answer to fingerprint: {other:?}", t.name),
    };
    t.conn = Some(conn);
    Ok((fp, startup))
}

/// A short, name-safe tag for a target (`oci:crun` → `oc`), for resource names.
fn short_tag(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(4)
        .collect()
}

/// The default parent directory of run directories.
pub fn default_out() -> &'static Path {
    Path::new("virtmark-results")
}
