//! What every step shares: the results database, the run directory, the ledger,
//! the peer on loopback, and starting / greeting / stopping target instances.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::conn::AgentConn;
use super::{interrupt_flag, new_run_id, now_rfc3339, Finished, RunOptions};
use crate::error::user;
use crate::fingerprint::{self, Fingerprint};
use crate::plan::Plan;
use crate::protocol::{Request, Response};
use crate::results::{
    derive_results, FailureRecord, Provenance, RunRecord, RunStatus, SampleRecord, TargetRecord,
    SCHEMA_VERSION,
};
use crate::store::db::Db;
use crate::store::rundir::RunDir;
use crate::targets::ledger::{self, Ledger, Resource};
use crate::targets::peer::PeerProcess;
use crate::targets::{self, Instance, StartEnv, TargetKind};

/// Check target names and that each is available here; errors exit 2. `peer`
/// (`--peer`) tells remote targets where the peer runs.
pub fn check_targets(names: &[String], peer: Option<&str>) -> Result<Vec<TargetKind>> {
    names
        .iter()
        .map(|t| {
            let mut kind = targets::parse(t).map_err(user)?;
            if let TargetKind::Ssh(s) = &mut kind {
                s.peer = peer.map(String::from);
            }
            targets::driver(&kind)
                .available()
                .map_err(|why| user(format!("target {t} is not available here: {why}")))?;
            Ok(kind)
        })
        .collect()
}

/// Default parent of every run's scratch directory: `/var/tmp`, on the machine's disk
/// where `/tmp` is often a tmpfs.
pub const DEFAULT_SCRATCH_BASE: &str = "/var/tmp";

/// The parent of this run's scratch directory, where every target's storage lives
/// (native and container scratch, VM disk images): `$VIRTMARK_SCRATCH` or
/// [`DEFAULT_SCRATCH_BASE`]. One real file system for every target, so that disk
/// ratios compare layers, not devices; a directory held in memory is refused, since
/// every disk workload would measure memory there.
pub fn scratch_base() -> Result<PathBuf> {
    let base = std::env::var_os("VIRTMARK_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SCRATCH_BASE));
    std::fs::create_dir_all(&base)
        .with_context(|| format!("creating the scratch base {}", base.display()))?;
    let st = fingerprint::storage::of(&base);
    if st.in_memory() {
        return Err(user(format!(
            "scratch base {} is on {} (in memory): disk workloads would measure memory; \
             set VIRTMARK_SCRATCH to a directory on a disk",
            base.display(),
            st.statfs_type
        )));
    }
    Ok(base)
}

/// One attempt of the overhead step: (target, workload, repetition).
pub type CellKey = (String, String, u32);

/// What an attempt stored before a resume.
#[derive(Debug, Clone)]
pub enum Stored {
    /// A sample.
    Sample(SampleRecord),
    /// A failure.
    Failure(FailureRecord),
}

/// One open run: everything is stored as it arrives.
pub struct Session {
    /// The results database.
    pub db: Db,
    /// The run directory.
    pub dir: RunDir,
    /// Every resource created, recorded first.
    pub ledger: Arc<Ledger>,
    /// The run as recorded so far.
    pub record: RunRecord,
    /// Set on Ctrl-C.
    pub interrupted: Arc<AtomicBool>,
    /// Attempts stored before a resume: replayed in order, not run again.
    pub done: BTreeMap<CellKey, Stored>,
    exe: PathBuf,
    scratch_root: PathBuf,
    peer: Option<PeerProcess>,
    host_cpus: usize,
    toolchain: bool,
    /// `--native-unbounded`: native runs without the targets' envelope.
    native_unbounded: bool,
    finished: bool,
}

/// A started target instance with its agent greeted.
pub struct Agent {
    /// Target name.
    pub name: String,
    /// The channel.
    pub conn: AgentConn,
    /// The instance (teardown on drop).
    pub instance: Instance,
    /// Seen from inside.
    pub fingerprint: Fingerprint,
    /// Start to hello, seconds.
    pub startup_s: f64,
}

impl Agent {
    /// Ask the agent to exit, then tear the instance down.
    pub fn stop(mut self) {
        let _ = self.conn.request(
            &Request::Shutdown,
            Duration::from_secs(5),
            &AtomicBool::new(false),
            |_, _| {},
        );
        self.kill();
    }

    /// Tear the instance down at once.
    pub fn kill(mut self) {
        if let Err(e) = self.instance.teardown.teardown() {
            eprintln!("virtmark: warning: tearing down {}: {e:#}", self.name);
        }
    }

    /// The peer address to give the agent.
    pub fn peer(&self) -> Option<String> {
        self.instance.peer.clone()
    }
}

/// How to start one instance.
pub struct InstanceSpec<'a> {
    /// Target name.
    pub name: &'a str,
    /// Parsed target.
    pub kind: &'a TargetKind,
    /// Index among the run's instances (distinct addresses, names).
    pub index: usize,
    /// Memory for it, bytes.
    pub memory: u64,
    /// Host CPUs it is pinned to (None: not pinned).
    pub cpuset: Option<Vec<usize>>,
    /// How many CPUs it gets (None: every host CPU, or the cpuset's size).
    pub cpus: Option<usize>,
    /// Without memory and task limits (`isolate --no-limits`).
    pub unlimited: bool,
    /// A CPU share of its own even with every CPU (the isolation step).
    pub cpu_share: bool,
}

impl Session {
    /// Open the database, create the run directory and the ledger, record the run
    /// and, when `needs_peer`, start the peer on loopback.
    pub fn open(
        plan: &Plan,
        targets: &[String],
        opts: &RunOptions,
        needs_peer: bool,
    ) -> Result<Session> {
        let db = Db::open(&opts.db)?;
        let run_id = new_run_id();
        let dir = RunDir::create(&opts.out, &run_id, &plan.to_toml())?;
        let record = RunRecord {
            schema_version: SCHEMA_VERSION,
            run_id,
            started: now_rfc3339(),
            finished: None,
            status: RunStatus::Running,
            virtmark: Provenance::current(),
            command: opts.command.clone(),
            host: fingerprint::collect(),
            plan: plan.clone(),
            targets: targets
                .iter()
                .map(|n| TargetRecord {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect(),
            samples: vec![],
            failures: vec![],
            results: vec![],
            scale: vec![],
            isolation: vec![],
            diagnosis: vec![],
        };
        db.insert_run(&record, dir.path())?;
        Session::attach(db, dir, record, needs_peer, BTreeMap::new())
    }

    /// Reopen a stored run that did not complete (`virtmark run --resume`): its
    /// record (with the samples and failures it has), its run directory, and the
    /// cells it has an outcome for already, which the step skips. The run gets a
    /// new ledger and scratch root; the previous ledger is kept beside it.
    pub fn reopen(
        mut record: RunRecord,
        dir: &std::path::Path,
        opts: &RunOptions,
        needs_peer: bool,
        done: BTreeMap<CellKey, Stored>,
    ) -> Result<Session> {
        let db = Db::open(&opts.db)?;
        let old = dir.join("ledger.jsonl");
        if std::fs::symlink_metadata(&old).is_ok() {
            let kept = dir.join(format!(
                "ledger-{}.jsonl",
                now_rfc3339().replace([':', '-'], "")
            ));
            std::fs::rename(&old, &kept)
                .with_context(|| format!("keeping {} as {}", old.display(), kept.display()))?;
        }
        let run_dir = RunDir::open(dir)?;
        record.status = RunStatus::Running;
        record.finished = None;
        db.finish_run(&record.run_id, RunStatus::Running, "")?;
        Session::attach(db, run_dir, record, needs_peer, done)
    }

    /// The ledger, the scratch root and the peer of a run being recorded.
    fn attach(
        db: Db,
        dir: RunDir,
        record: RunRecord,
        needs_peer: bool,
        done: BTreeMap<CellKey, Stored>,
    ) -> Result<Session> {
        let interrupted = interrupt_flag();
        let run_id = record.run_id.clone();
        let exe = std::env::current_exe().context("locating the virtmark binary")?;
        // The scratch root: an unguessable name, mode 0700, never a directory or
        // link that someone else made first; everything of the run's scratch is
        // made inside it.
        let scratch_root = ledger::unguessable(&scratch_base()?, &format!("virtmark-{run_id}-"));
        let ledger = Arc::new(Ledger::create(dir.path(), &run_id, Some(&scratch_root))?);
        ledger.record(&Resource::Dir {
            path: scratch_root.clone(),
        })?;
        ledger::create_private_dir(&scratch_root)
            .with_context(|| format!("creating scratch directory {}", scratch_root.display()))?;
        let peer = if needs_peer {
            let p = PeerProcess::start(&exe, "127.0.0.1:0", &dir.path().join("peer.log"), None)?;
            ledger.record_process(p.pid())?;
            Some(p)
        } else {
            None
        };
        let plan = &record.plan;
        let toolchain = plan
            .workload_names()
            .iter()
            .chain(plan.scale.as_ref().map(|s| &s.workload))
            .any(|w| crate::workloads::needs_host_toolchain(w));
        let native_unbounded = plan.run.native_unbounded.unwrap_or(false);
        Ok(Session {
            db,
            dir,
            ledger,
            record,
            interrupted,
            exe,
            scratch_root,
            peer,
            host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            toolchain,
            done,
            native_unbounded,
            finished: false,
        })
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Start an instance, greet its agent and take its fingerprint. An instance
    /// whose agent gave no answer at all to the greeting (a guest whose boot
    /// hung: once in about ten runs of the VM tests here, a QEMU TCG guest never
    /// greeted in 120 s, where it takes seconds) is torn down and started once
    /// more, with a warning; one that answered wrongly or closed its channel
    /// is not, as that would only fail again.
    pub fn start(&self, spec: &InstanceSpec) -> Result<Agent> {
        match self.start_once(spec) {
            Err(e) if !self.is_interrupted() && never_greeted(&e) => {
                eprintln!("virtmark: warning: {e:#}; starting {} once more", spec.name);
                self.start_once(spec).with_context(|| {
                    format!("{} failed to start twice; the first time: {e:#}", spec.name)
                })
            }
            other => other,
        }
    }

    fn start_once(&self, spec: &InstanceSpec) -> Result<Agent> {
        let safe = spec.name.replace([':', '/', '@'], "_");
        let suffix = if spec.index > 0 {
            format!("-{}", spec.index)
        } else {
            String::new()
        };
        let rid = &self.record.run_id;
        let env = StartEnv {
            index: (spec.index + 1).min(250) as u8,
            ledger: self.ledger.clone(),
            tag: format!(
                "{}{}{}",
                &rid[rid.len() - 4..],
                safe.chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(4)
                    .collect::<String>(),
                spec.index
            ),
            cpus: spec
                .cpus
                .or(spec.cpuset.as_ref().map(Vec::len))
                .unwrap_or(self.host_cpus),
            cpuset: spec.cpuset.clone(),
            unlimited: spec.unlimited,
            cpu_share: spec.cpu_share,
            memory: spec.memory,
            exe: &self.exe,
            scratch: self.scratch_root.join(format!("{safe}{suffix}")),
            log: self.dir.path().join(format!("agent-{safe}{suffix}.log")),
            peer: self.peer.as_ref().map(|p| p.addr),
            toolchain: self.toolchain,
            native_unbounded: self.native_unbounded,
        };
        let t0 = Instant::now();
        let mut instance = targets::driver(spec.kind).start(&env)?;
        let to = std::mem::replace(&mut instance.to_agent, Box::new(std::io::sink()));
        let from = std::mem::replace(&mut instance.from_agent, Box::new(std::io::empty()));
        let mut conn = AgentConn::new(to, from);
        let hello = conn
            .request(
                &Request::Hello,
                Duration::from_secs(120),
                &self.interrupted,
                |_, _| {},
            )
            .with_context(|| format!("{}: the agent did not greet", spec.name))?;
        let startup_s = t0.elapsed().as_secs_f64();
        if !matches!(hello, Response::Hello { .. }) {
            anyhow::bail!("{}: unexpected answer to hello: {hello:?}", spec.name);
        }
        let fingerprint = match conn
            .request(
                &Request::Fingerprint,
                Duration::from_secs(30),
                &self.interrupted,
                |_, _| {},
            )
            .with_context(|| format!("{}: no fingerprint", spec.name))?
        {
            Response::Fingerprint { fingerprint } => *fingerprint,
            other => anyhow::bail!("{}: unexpected answer to fingerprint: {other:?}", spec.name),
        };
        Ok(Agent {
            name: spec.name.to_string(),
            conn,
            instance,
            fingerprint,
            startup_s,
        })
    }

    /// Record a target's fingerprint and start-up time (first instance of it).
    pub fn note_target(&mut self, name: &str, fp: &Fingerprint, startup_s: f64) -> Result<()> {
        if let Some(tr) = self.record.targets.iter_mut().find(|t| t.name == name) {
            if tr.fingerprint.is_none() {
                tr.fingerprint = Some(fp.clone());
                tr.startup_s = Some(startup_s);
                self.db.upsert_target(&self.record.run_id, tr)?;
            }
        }
        Ok(())
    }

    /// Record what a target's channel lost so far: lines skipped as console noise,
    /// and restarts after a DNR (stored only when they change).
    pub fn note_channel(&mut self, name: &str, skipped_lines: u64, restarts: u64) -> Result<()> {
        if let Some(tr) = self.record.targets.iter_mut().find(|t| t.name == name) {
            if (tr.skipped_lines, tr.restarts) != (skipped_lines, restarts) {
                tr.skipped_lines = skipped_lines;
                tr.restarts = restarts;
                self.db.upsert_target(&self.record.run_id, tr)?;
            }
        }
        Ok(())
    }

    /// Commit a sample (database, CSV) and keep it.
    pub fn store_sample(&mut self, s: SampleRecord) -> Result<()> {
        self.db.insert_sample(&self.record.run_id, &s)?;
        self.dir.append_sample(&self.record.run_id, &s)?;
        self.record.samples.push(s);
        Ok(())
    }

    /// Commit a DNR and keep it.
    pub fn store_failure(&mut self, f: FailureRecord) -> Result<()> {
        self.db.insert_failure(&self.record.run_id, &f)?;
        self.record.failures.push(f);
        Ok(())
    }

    /// Stop the peer, remove everything in the ledger, derive the statistics and
    /// write `results.json`; mark the run complete, or partial when interrupted.
    pub fn finish(&mut self) -> Result<Finished> {
        let status = if self.is_interrupted() {
            RunStatus::Partial
        } else {
            RunStatus::Complete
        };
        let done = self.close(status)?;
        if status == RunStatus::Partial {
            eprintln!(
                "virtmark: interrupted: kept {} sample(s); the run is stored as partial",
                done.record.samples.len()
            );
        }
        Ok(done)
    }

    fn close(&mut self, status: RunStatus) -> Result<Finished> {
        self.finished = true;
        drop(self.peer.take());
        for p in self.ledger.close_now()? {
            eprintln!("virtmark: warning: could not remove {p}");
        }
        let record = &mut self.record;
        record.status = status;
        record.finished = Some(now_rfc3339());
        record.results = derive_results(&record.samples);
        record.diagnosis = crate::results::diagnosis::diagnose(&record.results);
        self.dir.write_results(record)?;
        self.db.finish_run(
            &record.run_id,
            record.status,
            record.finished.as_deref().unwrap_or(""),
        )?;
        Ok(Finished {
            record: record.clone(),
            dir: self.dir.path().to_path_buf(),
        })
    }
}

impl Drop for Session {
    /// A step that failed half-way: remove what the run created and keep what it
    /// measured, as a partial run.
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.close(RunStatus::Partial) {
                eprintln!("virtmark: warning: closing the run after an error: {e:#}");
            }
        }
    }
}

/// Whether `e` says an agent never answered its greeting: the hello request
/// ran out of time, with nothing read.
fn never_greeted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<super::conn::ConnError>(),
            Some(super::conn::ConnError::Deadline(_))
        )
    }) && format!("{e:#}").contains("did not greet")
}

#[cfg(test)]
mod tests {
    use super::super::conn::ConnError;
    use super::*;

    #[test]
    fn only_a_greeting_with_no_answer_in_time_is_tried_again() {
        let greet = |e: ConnError| {
            Err::<(), _>(e)
                .context("qemu:tcg: the agent did not greet")
                .unwrap_err()
        };
        assert!(never_greeted(&greet(ConnError::Deadline(
            Duration::from_secs(120)
        ))));
        assert!(!never_greeted(&greet(ConnError::Closed)));
        let fingerprint = Err::<(), _>(ConnError::Deadline(Duration::from_secs(30)))
            .context("qemu:tcg: no fingerprint")
            .unwrap_err();
        assert!(!never_greeted(&fingerprint));
        assert!(!never_greeted(&anyhow::anyhow!(
            "qemu:tcg: the agent did not greet"
        )));
    }
}
