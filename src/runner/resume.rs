//! `virtmark run --resume RUN`: continue an overhead run that was interrupted
//! (Ctrl-C, a crash, `kill -9`) from its stored plan and samples. Only the
//! (target, workload, repetition) attempts without an outcome are run, in the
//! plan's order and with its seed; the run keeps its id, directory, plan and
//! earlier samples and ends `complete` with the statistics of all of them.
//!
//! The rounds and their order are a function of the plan's seed and of what each
//! (target, workload) has measured; [`super::overhead`] replays every stored
//! attempt into that state in the slot where it comes up, instead of running it,
//! so the rounds that follow have the order they would have had.

use std::collections::BTreeMap;

use anyhow::Result;

use super::session::{check_targets, CellKey, Session, Stored};
use super::{needs_peer, overhead, Finished, RunOptions};
use crate::error::user;
use crate::results::{RunRecord, RunStatus, Step};
use crate::store::db::Db;
use crate::targets::ledger;

/// The overhead attempts `record` stored, by (target, workload, repetition): its
/// samples, and its failures except a target that failed to start (that attempt
/// never ran; the resumed run tries the target again).
pub fn stored_attempts(record: &RunRecord) -> BTreeMap<CellKey, Stored> {
    let failures = record
        .failures
        .iter()
        .filter(|f| f.step == Step::Overhead && f.kind != "target_failed")
        .map(|f| {
            (
                (f.target.clone(), f.workload.clone(), f.rep),
                Stored::Failure(f.clone()),
            )
        });
    let samples = record
        .samples
        .iter()
        .filter(|s| s.step == Step::Overhead)
        .map(|s| {
            (
                (s.target.clone(), s.workload.clone(), s.rep),
                Stored::Sample(s.clone()),
            )
        });
    // A sample wins over a failure of the same attempt.
    failures.chain(samples).collect()
}

/// Continue run `run_id` of the database in `opts`.
pub fn resume(run_id: &str, opts: &RunOptions) -> Result<Finished> {
    let db = Db::open_existing(&opts.db)?;
    let (record, dir) = db.load_run(run_id)?.ok_or_else(|| {
        user(format!(
            "no run {run_id:?} in {} (see `virtmark history`)",
            opts.db.display()
        ))
    })?;
    drop(db);
    if record.status == RunStatus::Complete {
        return Err(user(format!(
            "run {run_id} is complete already: nothing to resume"
        )));
    }
    let plan = record.plan.clone();
    if plan.scale.is_some()
        || plan.isolation.is_some()
        || record.samples.iter().any(|s| s.step != Step::Overhead)
    {
        return Err(user(format!(
            "run {run_id} is not an overhead run (`virtmark run`): only those can be resumed"
        )));
    }
    let dir = dir.filter(|d| d.is_dir()).ok_or_else(|| {
        user(format!(
            "the run directory of {run_id} is gone: it holds the run's plan and samples file"
        ))
    })?;
    // The run must be over, and what it left behind removed, before it goes on.
    let cleaned = ledger::cleanup_run(run_id)?;
    if !cleaned.alive.is_empty() {
        return Err(user(format!(
            "run {run_id} is still going (its process is alive): stop it first"
        )));
    }
    for why in &cleaned.refused {
        eprintln!("virtmark: refused {why}");
    }
    for p in &cleaned.problems {
        eprintln!("virtmark: could not remove {p}");
    }
    if !cleaned.refused.is_empty() || !cleaned.problems.is_empty() {
        return Err(user(format!(
            "run {run_id} left resources that cleanup could not remove: see above"
        )));
    }
    plan.validate("stored plan")?;
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let kinds = check_targets(&target_names, plan.run.peer.as_deref())?;
    let done = stored_attempts(&record);
    eprintln!(
        "virtmark: resuming run {run_id}: {} stored attempt(s) replayed, the rest of the plan runs",
        done.len()
    );
    let mut s = Session::reopen(record, &dir, opts, needs_peer(&plan.workload_names()), done)?;
    overhead(&mut s, &plan, &kinds)?;
    s.finish()
}
