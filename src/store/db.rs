//! The SQLite results database. Every sample is committed in its own transaction
//! as it arrives, so an interrupted run loses nothing already measured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::user;
use crate::results::{FailureRecord, RunRecord, RunStatus, SampleRecord, TargetRecord};

/// Version of the database layout.
const DB_SCHEMA: i64 = 3;

/// Changes from one layout version to the next: `MIGRATIONS[i]` takes i + 1 to i + 2.
const MIGRATIONS: &[&str] = &[
    // 1 → 2: the scalability and isolation steps.
    "ALTER TABLE samples ADD COLUMN step TEXT NOT NULL DEFAULT 'overhead';
     ALTER TABLE samples ADD COLUMN instances INTEGER;
     ALTER TABLE samples ADD COLUMN instance INTEGER;
     ALTER TABLE samples ADD COLUMN stressor TEXT;
     ALTER TABLE failures ADD COLUMN step TEXT NOT NULL DEFAULT 'overhead';
     ALTER TABLE failures ADD COLUMN instances INTEGER;
     ALTER TABLE failures ADD COLUMN instance INTEGER;
     ALTER TABLE failures ADD COLUMN stressor TEXT;",
    // 2 → 3: each sample's place in the shuffled order; per target, skipped
    // console lines and restarts.
    "ALTER TABLE samples ADD COLUMN round INTEGER;
     ALTER TABLE samples ADD COLUMN slot INTEGER;
     ALTER TABLE targets ADD COLUMN skipped_lines INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE targets ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    hostname TEXT NOT NULL,
    targets TEXT NOT NULL,
    workloads TEXT NOT NULL,
    run_dir TEXT,
    command TEXT NOT NULL,
    version TEXT NOT NULL,
    git_revision TEXT NOT NULL,
    host_json TEXT NOT NULL,
    plan_toml TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    startup_s REAL,
    fingerprint_json TEXT,
    skipped_lines INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    target TEXT NOT NULL,
    workload TEXT NOT NULL,
    rep INTEGER NOT NULL,
    discarded INTEGER NOT NULL,
    at TEXT NOT NULL,
    elapsed_s REAL NOT NULL,
    notes_json TEXT NOT NULL,
    step TEXT NOT NULL DEFAULT 'overhead',
    instances INTEGER,
    instance INTEGER,
    stressor TEXT,
    round INTEGER,
    slot INTEGER
);
CREATE TABLE IF NOT EXISTS sample_metrics (
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    higher_is_better INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (sample_id, position)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT NOT NULL REFERENCES runs(id),
    target TEXT NOT NULL,
    workload TEXT NOT NULL,
    rep INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    step TEXT NOT NULL DEFAULT 'overhead',
    instances INTEGER,
    instance INTEGER,
    stressor TEXT
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id);
";

fn parse_step(s: &str) -> crate::results::Step {
    match s {
        "scale" => crate::results::Step::Scale,
        "isolation" => crate::results::Step::Isolation,
        _ => crate::results::Step::Overhead,
    }
}

/// The default database path: `$VIRTMARK_DB`, else `<data dir>/virtmark/results.db`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRTMARK_DB") {
        return PathBuf::from(p);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("virtmark")
        .join("results.db")
}

/// An open results database.
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// One line of `virtmark history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Start time.
    pub started: String,
    /// Status.
    pub status: String,
    /// Host name.
    pub hostname: String,
    /// Targets, comma-separated.
    pub targets: String,
    /// Workloads, comma-separated.
    pub workloads: String,
    /// Samples stored.
    pub samples: i64,
    /// Run directory, when known.
    pub run_dir: Option<String>,
}

fn db_error(path: &Path, e: rusqlite::Error) -> anyhow::Error {
    use rusqlite::ErrorCode::*;
    let code = e.sqlite_error_code();
    match code {
        Some(DatabaseBusy) | Some(DatabaseLocked) => user(format!(
            "results database {} is locked by another process: wait for it to finish or choose another with --db",
            path.display()
        )),
        Some(NotADatabase) | Some(DatabaseCorrupt) => user(format!(
            "results database {} is damaged or not a virtmark database ({e}): move it aside or choose another with --db",
            path.display()
        )),
        Some(CannotOpen) | Some(ReadOnly) | Some(PermissionDenied) => user(format!(
            "cannot write results database {}: {e}: choose a writable path with --db",
            path.display()
        )),
        _ => anyhow::Error::new(e).context(format!("results database {}", path.display())),
    }
}

impl Db {
    /// Open (creating if needed) the database at `path` and check its layout.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                user(format!(
                    "cannot create directory {} for the results database: {e}: choose another with --db",
                    dir.display()
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(|e| db_error(path, e))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.init()?;
        Ok(db)
    }

    /// Open an existing database read-only (history, reports).
    pub fn open_existing(path: &Path) -> Result<Db> {
        if !path.exists() {
            return Err(user(format!(
                "no results database at {}: run `virtmark run` first or choose one with --db",
                path.display()
            )));
        }
        Db::open(path)
    }

    fn init(&self) -> Result<()> {
        let p = &self.path;
        // Reading the layout first detects a damaged file before anything is written.
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(p, e))?;
        if existing.is_some() {
            let v: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| db_error(p, e))?;
            match v.as_deref().map(str::parse::<i64>) {
                Some(Ok(DB_SCHEMA)) => return Ok(()),
                Some(Ok(n)) if (1..DB_SCHEMA).contains(&n) => {
                    let steps: String = MIGRATIONS[(n - 1) as usize..].concat();
                    self.conn
                        .execute_batch(&format!(
                            "BEGIN; {steps}; UPDATE meta SET value = '{DB_SCHEMA}' WHERE key = 'schema'; COMMIT;"
                        ))
                        .map_err(|e| db_error(p, e))?;
                    return Ok(());
                }
                Some(Ok(n)) if n > DB_SCHEMA => {
                    return Err(user(format!(
                        "results database {} has layout version {n}, newer than this virtmark understands ({DB_SCHEMA}): upgrade virtmark or choose another with --db",
                        p.display()
                    )))
                }
                _ => {
                    return Err(user(format!(
                        "results database {} is not a virtmark database (no layout version): choose another with --db",
                        p.display()
                    )))
                }
            }
        }
        let other_tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| db_error(p, e))?;
        if other_tables > 0 {
            return Err(user(format!(
                "{} is an SQLite database of something else: choose another with --db",
                p.display()
            )));
        }
        self.conn
            .execute_batch(&format!(
                "BEGIN; {SCHEMA} INSERT INTO meta(key, value) VALUES ('schema', '{DB_SCHEMA}'); COMMIT;"
            ))
            .map_err(|e| db_error(p, e))?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record the start of a run (before any sample).
    pub fn insert_run(&self, run: &RunRecord, run_dir: &Path) -> Result<()> {
        let plan_toml = run.plan.to_toml();
        self.conn
            .execute(
                "INSERT INTO runs (id, started, finished, status, hostname, targets, workloads, run_dir, command, version, git_revision, host_json, plan_toml)
                 VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run.run_id,
                    run.started,
                    run.status.as_str(),
                    run.host.hostname,
                    run.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","),
                    run.plan.workload_names().join(","),
                    run_dir.display().to_string(),
                    run.command,
                    run.virtmark.version,
                    run.virtmark.git_revision,
                    serde_json::to_string(&run.host)?,
                    plan_toml,
                ],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Record a target's fingerprint and start-up time.
    pub fn upsert_target(&self, run_id: &str, t: &TargetRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO targets (run_id, name, startup_s, fingerprint_json, skipped_lines, restarts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run_id,
                    t.name,
                    t.startup_s,
                    t.fingerprint.as_ref().map(serde_json::to_string).transpose()?,
                    t.skipped_lines as i64,
                    t.restarts as i64,
                ],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Commit one sample and its metrics in one transaction.
    pub fn insert_sample(&mut self, run_id: &str, s: &SampleRecord) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db_error(&path, e))?;
        tx.execute(
            "INSERT INTO samples (run_id, target, workload, rep, discarded, at, elapsed_s, notes_json, step, instances, instance, stressor, round, slot) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                run_id,
                s.target,
                s.workload,
                s.rep,
                s.discarded,
                s.at,
                s.elapsed_s,
                serde_json::to_string(&s.notes)?,
                s.step.as_str(),
                s.instances,
                s.instance,
                s.stressor,
                s.position.map(|p| p.round),
                s.position.map(|p| p.slot),
            ],
        )
        .map_err(|e| db_error(&path, e))?;
        let sid = tx.last_insert_rowid();
        for (i, m) in s.metrics.iter().enumerate() {
            tx.execute(
                "INSERT INTO sample_metrics (sample_id, position, name, unit, higher_is_better, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![sid, i as i64, m.name, m.unit, m.higher_is_better, m.value],
            )
            .map_err(|e| db_error(&path, e))?;
        }
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(())
    }

    /// Record a DNR.
    pub fn insert_failure(&self, run_id: &str, f: &FailureRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO failures (run_id, target, workload, rep, kind, message, step, instances, instance, stressor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![run_id, f.target, f.workload, f.rep, f.kind, f.message, f.step.as_str(), f.instances, f.instance, f.stressor],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Mark a run finished.
    pub fn finish_run(&self, run_id: &str, status: RunStatus, finished: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, finished = ?3 WHERE id = ?1",
                params![run_id, status.as_str(), finished],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Stored runs, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<RunSummary>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT r.id, r.started, r.status, r.hostname, r.targets, r.workloads, r.run_dir,
                        (SELECT count(*) FROM samples s WHERE s.run_id = r.id)
                 FROM runs r ORDER BY r.started DESC, r.id DESC LIMIT ?1",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(RunSummary {
                    id: r.get(0)?,
                    started: r.get(1)?,
                    status: r.get(2)?,
                    hostname: r.get(3)?,
                    targets: r.get(4)?,
                    workloads: r.get(5)?,
                    run_dir: r.get(6)?,
                    samples: r.get(7)?,
                })
            })
            .map_err(|e| db_error(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Every sample of a run, in the order stored.
    pub fn samples(&self, run_id: &str) -> Result<Vec<SampleRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, target, workload, rep, discarded, at, elapsed_s, notes_json, step, instances, instance, stressor, round, slot FROM samples WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let mut ms = self
            .conn
            .prepare(
                "SELECT name, unit, higher_is_better, value FROM sample_metrics WHERE sample_id = ?1 ORDER BY position",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let heads = st
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    SampleRecord {
                        target: r.get(1)?,
                        workload: r.get(2)?,
                        rep: r.get(3)?,
                        discarded: r.get(4)?,
                        at: r.get(5)?,
                        elapsed_s: r.get(6)?,
                        metrics: vec![],
                        notes: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                        step: parse_step(&r.get::<_, String>(8)?),
                        instances: r.get(9)?,
                        instance: r.get(10)?,
                        stressor: r.get(11)?,
                        position: match (r.get::<_, Option<u32>>(12)?, r.get::<_, Option<u32>>(13)?)
                        {
                            (Some(round), Some(slot)) => {
                                Some(crate::results::Position { round, slot })
                            }
                            _ => None,
                        },
                    },
                ))
            })
            .map_err(|e| db_error(&self.path, e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error(&self.path, e))?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, mut s) in heads {
            s.metrics = ms
                .query_map([id], |r| {
                    Ok(crate::workloads::Metric {
                        name: r.get(0)?,
                        unit: r.get(1)?,
                        higher_is_better: r.get(2)?,
                        value: r.get(3)?,
                    })
                })
                .map_err(|e| db_error(&self.path, e))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| db_error(&self.path, e))?;
            out.push(s);
        }
        Ok(out)
    }

    /// The newest run's id, if any.
    pub fn latest_run_id(&self) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Ids of the newest runs, newest first (for error messages).
    pub fn recent_ids(&self, limit: usize) -> Result<Vec<String>> {
        Ok(self.history(limit)?.into_iter().map(|r| r.id).collect())
    }

    /// Every DNR of a run, in the order stored.
    pub fn failures(&self, run_id: &str) -> Result<Vec<FailureRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT target, workload, rep, kind, message, step, instances, instance, stressor FROM failures WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let rows = st
            .query_map([run_id], |r| {
                Ok(FailureRecord {
                    target: r.get(0)?,
                    workload: r.get(1)?,
                    rep: r.get(2)?,
                    kind: r.get(3)?,
                    message: r.get(4)?,
                    step: parse_step(&r.get::<_, String>(5)?),
                    instances: r.get(6)?,
                    instance: r.get(7)?,
                    stressor: r.get(8)?,
                })
            })
            .map_err(|e| db_error(&self.path, e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Rebuild a whole run from the database (statistics recomputed from the
    /// samples); `None` when no run has this id. The run directory it was written
    /// to, if recorded, comes along.
    pub fn load_run(&self, run_id: &str) -> Result<Option<(RunRecord, Option<PathBuf>)>> {
        struct Head {
            started: String,
            finished: Option<String>,
            status: String,
            targets: String,
            run_dir: Option<String>,
            command: String,
            version: String,
            git_revision: String,
            host_json: String,
            plan_toml: String,
        }
        let head = self
            .conn
            .query_row(
                "SELECT started, finished, status, targets, run_dir, command, version, git_revision, host_json, plan_toml
                 FROM runs WHERE id = ?1",
                [run_id],
                |r| {
                    Ok(Head {
                        started: r.get(0)?,
                        finished: r.get(1)?,
                        status: r.get(2)?,
                        targets: r.get(3)?,
                        run_dir: r.get(4)?,
                        command: r.get(5)?,
                        version: r.get(6)?,
                        git_revision: r.get(7)?,
                        host_json: r.get(8)?,
                        plan_toml: r.get(9)?,
                    })
                },
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))?;
        let Some(h) = head else {
            return Ok(None);
        };
        let damaged = |what: &str, e: &dyn std::fmt::Display| {
            user(format!(
                "run {run_id} in {}: stored {what} is damaged ({e})",
                self.path.display()
            ))
        };
        let host =
            serde_json::from_str(&h.host_json).map_err(|e| damaged("host fingerprint", &e))?;
        // A stored plan is history: parse it without checking it against today's catalog.
        let plan: crate::plan::Plan =
            toml::from_str(&h.plan_toml).map_err(|e| damaged("plan", &e))?;
        let status = match h.status.as_str() {
            "complete" => RunStatus::Complete,
            "partial" => RunStatus::Partial,
            _ => RunStatus::Running,
        };
        // Targets in the order the run listed them, fingerprints from their table.
        let mut st = self
            .conn
            .prepare("SELECT name, startup_s, fingerprint_json, skipped_lines, restarts FROM targets WHERE run_id = ?1")
            .map_err(|e| db_error(&self.path, e))?;
        let stored = st
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<f64>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| db_error(&self.path, e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error(&self.path, e))?;
        let mut targets: Vec<TargetRecord> = h
            .targets
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|name| TargetRecord {
                name: name.to_string(),
                ..Default::default()
            })
            .collect();
        for (name, startup_s, fp, skipped, restarts) in stored {
            let (skipped_lines, restarts) = (skipped.max(0) as u64, restarts.max(0) as u64);
            let fingerprint = fp
                .map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| damaged("target fingerprint", &e))?;
            match targets.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    t.startup_s = startup_s;
                    t.fingerprint = fingerprint;
                    t.skipped_lines = skipped_lines;
                    t.restarts = restarts;
                }
                None => targets.push(TargetRecord {
                    name,
                    fingerprint,
                    startup_s,
                    skipped_lines,
                    restarts,
                }),
            }
        }
        let samples = self.samples(run_id)?;
        let failures = self.failures(run_id)?;
        let results = crate::results::derive_results(&samples);
        // The other steps' tables are derived from the samples too.
        let scale = match &plan.scale {
            Some(sp) => {
                let hib = crate::workloads::find(&sp.workload).is_none_or(|w| w.higher_is_better);
                crate::results::steps::scale_entries(&samples, &failures, sp, plan.run.discard, hib)
            }
            None => vec![],
        };
        let isolation = match &plan.isolation {
            Some(iso) => {
                let stressors: Vec<(String, Vec<String>)> =
                    iso.stressors.iter().map(|s| (s.clone(), vec![])).collect();
                targets
                    .iter()
                    .flat_map(|t| {
                        crate::results::steps::isolation_entries(
                            &samples,
                            &failures,
                            &t.name,
                            iso.instances,
                            plan.run.discard,
                            &stressors,
                        )
                    })
                    .collect()
            }
            None => vec![],
        };
        let record = RunRecord {
            schema_version: crate::results::SCHEMA_VERSION,
            run_id: run_id.to_string(),
            started: h.started,
            finished: h.finished,
            status,
            virtmark: crate::results::Provenance {
                version: h.version,
                git_revision: h.git_revision,
            },
            command: h.command,
            host,
            plan,
            targets,
            samples,
            failures,
            results,
            scale,
            isolation,
            diagnosis: vec![],
        };
        let mut record = record;
        record.diagnosis = crate::results::diagnosis::diagnose(&record.results);
        Ok(Some((record, h.run_dir.map(PathBuf::from))))
    }

    /// Number of runs stored.
    pub fn run_count(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .map_err(|e| db_error(&self.path, e))
            .context("counting runs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.db");
        std::fs::write(&p, b"this is not sqlite, just some text that is long enough to be a header....................................").unwrap();
        let before = std::fs::read(&p).unwrap();
        let Err(e) = Db::open(&p) else {
            panic!("a junk file was accepted as a database")
        };
        assert_eq!(crate::error::exit_code(&e), 2, "{e:#}");
        assert!(
            format!("{e:#}").contains("damaged or not a virtmark database"),
            "{e:#}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    #[test]
    fn a_database_of_layout_1_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.db");
        {
            let c = Connection::open(&p).unwrap();
            // Layout 1: samples and failures without the step columns.
            c.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema', '1');
                 CREATE TABLE samples (id INTEGER PRIMARY KEY, run_id TEXT, target TEXT, workload TEXT,
                   rep INTEGER, discarded INTEGER, at TEXT, elapsed_s REAL, notes_json TEXT);
                 CREATE TABLE failures (run_id TEXT, target TEXT, workload TEXT, rep INTEGER,
                   kind TEXT, message TEXT);
                 CREATE TABLE targets (run_id TEXT, name TEXT, startup_s REAL, fingerprint_json TEXT,
                   PRIMARY KEY (run_id, name));
                 INSERT INTO samples VALUES (1, 'r', 'native', 'dd-zero', 0, 0, 't', 1.0, '[]');",
            )
            .unwrap();
        }
        let db = Db::open(&p).unwrap();
        let (v, step): (String, String) = db
            .conn
            .query_row(
                "SELECT (SELECT value FROM meta WHERE key='schema'), step FROM samples",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((v.as_str(), step.as_str()), ("3", "overhead"));
    }

    #[test]
    fn a_locked_database_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.db");
        drop(Db::open(&p).unwrap());
        let holder = Connection::open(&p).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        let db = Db::open(&p);
        let e = match db {
            Err(e) => e,
            Ok(db) => db
                .finish_run("x", RunStatus::Complete, "now")
                .expect_err("locked"),
        };
        assert!(format!("{e:#}").contains("locked"), "{e:#}");
        assert_eq!(crate::error::exit_code(&e), 2);
    }
}
