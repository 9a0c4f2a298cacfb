//! `virtmark study`: the whole method in one run — overhead, scalability and
//! isolation for a set of targets — stored as one run with one report.

use anyhow::Result;

use super::session::{check_targets, Session};
use super::{isolate, resolve_overhead, scale, Finished, RunOptions};
use crate::plan::Plan;

/// Run the three steps on the plan's targets, in one session.
pub fn study(mut plan: Plan, opts: &RunOptions) -> Result<Finished> {
    let sp = plan.scale.clone().unwrap_or_default();
    let iso = plan.isolation.clone().unwrap_or_default();
    plan.scale = Some(sp.clone());
    plan.isolation = Some(iso.clone());
    resolve_overhead(&mut plan)?;
    let targets = plan.run.targets.clone().unwrap_or_default();
    let kinds = check_targets(&targets, plan.run.peer.as_deref())?;
    let mut s = Session::open(&plan, &targets, opts, true)?;
    eprintln!("virtmark: study {}: step 1 of 3, overhead", s.run_id());
    super::overhead(&mut s, &plan, &kinds)?;
    if !s.is_interrupted() {
        eprintln!("virtmark: study {}: step 2 of 3, scalability", s.run_id());
        scale::scale_step(&mut s, &plan, &sp, &kinds)?;
    }
    if !s.is_interrupted() {
        // Misbehaving on the host itself needs the explicit flag: without it the
        // isolation step leaves native out (the other steps keep it).
        let mut iso_plan = plan.clone();
        let keep: Vec<usize> = (0..targets.len())
            .filter(|&i| iso.allow_host_stress || targets[i] != "native")
            .collect();
        iso_plan.run.targets = Some(keep.iter().map(|&i| targets[i].clone()).collect());
        let iso_kinds: Vec<_> = keep.iter().map(|&i| kinds[i].clone()).collect();
        if iso_kinds.is_empty() {
            eprintln!(
                "virtmark: study {}: no target for the isolation step (native only runs it with --allow-host-stress)",
                s.run_id()
            );
        } else {
            eprintln!("virtmark: study {}: step 3 of 3, isolation", s.run_id());
            let iso_plan = isolate::isolation_plan(iso_plan)?;
            isolate::isolate_step(&mut s, &iso_plan, &iso, &iso_kinds)?;
        }
    }
    s.finish()
}
