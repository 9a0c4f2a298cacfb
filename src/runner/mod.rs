//! The three steps of the method. [`run`] is the overhead step: every workload of
//! the plan in every target, repeated in rounds, each sample committed as it
//! arrives. Each round rotates the workloads and shuffles the targets from the
//! plan's seed ([`round_order`]), so no target has a fixed place (after a slow
//! one, say) and slow drift of the machine spreads over all of them alike.
//! [`scale`] runs n instances at once.

pub mod conn;
pub mod isolate;
pub mod progress;
pub mod resume;
pub mod scale;
pub mod session;
pub mod study;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Result;

use crate::plan::Plan;
use crate::protocol::{Request, Response};
use crate::results::{FailureRecord, Position, RunRecord, SampleRecord, BASELINE};
use crate::stats;
use crate::targets;
use crate::workloads;
use crate::workloads::Params;
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
    // Before the run's own duration is filled in: whether one was given decides
    // the duration of the workloads that have one of their own.
    resolve_workload_params(plan);
    plan.run.duration = Some(plan.duration());
    plan.run.max_time = Some(plan.run.max_time());
    if plan.run.seed.is_none() {
        plan.run.seed = Some(fastrand::u32(..));
    }
    plan.validate("plan")?;
    Ok(())
}

/// Resolve every workload's sizes once, from the plan and this machine, into the
/// plan: it is stored with the run and each target receives the same parameters,
/// instead of each target deriving them from what it sees of itself (its MemTotal,
/// its CPUs). The envelope is what every target gets: `--memory` (default
/// [`DEFAULT_MEMORY`]) and `--cpus` (default every host CPU).
pub fn resolve_workload_params(plan: &mut Plan) {
    let memory = plan.run.memory.map_or(DEFAULT_MEMORY, |m| m.bytes());
    let cpus = plan.run.cpus.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |c| c as usize,
    );
    let host = workloads::Host::here(memory, cpus);
    for name in plan.workload_names() {
        let given = plan.params.get(&name).cloned().unwrap_or_default();
        let resolved = workloads::resolve_params(
            &name,
            plan.run.preset,
            &given,
            &host,
            plan.run.duration,
            plan.run.max_time,
        );
        if resolved != Params::default() {
            plan.params.insert(name, resolved);
        }
    }
}

/// The order of one round: every workload once, starting from workload
/// `round mod W` (rotated), and within each workload the targets in an order
/// shuffled from the seed, the round and the workload. Only `(workload, target)`
/// pairs for which `active` holds are kept, so a replay with the same seed visits
/// the remaining pairs in the same relative order.
pub fn round_order(
    seed: u32,
    round: u32,
    workloads: usize,
    targets: usize,
    mut active: impl FnMut(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for k in 0..workloads {
        let wi = (k + round as usize) % workloads;
        let mut rng = fastrand::Rng::with_seed(
            (u64::from(seed) << 32 | u64::from(round))
                ^ (wi as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut ts: Vec<usize> = (0..targets).collect();
        rng.shuffle(&mut ts);
        out.extend(
            ts.into_iter()
                .filter(|&ti| active(wi, ti))
                .map(|ti| (wi, ti)),
        );
    }
    out
}

/// Put native next to every other target: within each workload of a round's
/// `order` (from [`round_order`], native's own place dropped), the other targets
/// keep their shuffled order and go in twos around one native sample, `a N b`,
/// the last one alone as `a N` or `N a` by a coin from the seed. Every target
/// sample then has a native sample of the same workload measured just before or
/// after it, which [`crate::results::ratio_to_native`] pairs it with. Native runs
/// once for every two others (it costs ⌈k/2⌉ samples a workload instead of 1)
/// whatever its own caps, as long as `native_live(workload)`; alone, when no other
/// target of the workload runs, only where `order` has it. Without native (not in
/// the plan, or not live for that workload) the order is unchanged.
pub fn pair_with_native(
    order: &[(usize, usize)],
    native: Option<usize>,
    seed: u32,
    round: u32,
    native_live: impl Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let Some(n) = native else {
        return order.to_vec();
    };
    let mut out = Vec::with_capacity(order.len() * 3 / 2 + 1);
    for block in order.chunk_by(|a, b| a.0 == b.0) {
        let wi = block[0].0;
        let others: Vec<(usize, usize)> = block.iter().copied().filter(|p| p.1 != n).collect();
        if !native_live(wi) {
            out.extend(others);
        } else if others.is_empty() {
            out.extend(block.iter().copied().filter(|p| p.1 == n));
        } else {
            let mut rng = fastrand::Rng::with_seed(
                (u64::from(seed) << 32 | u64::from(round))
                    ^ (wi as u64).wrapping_mul(0xd6e8_feb8_6659_fd93),
            );
            for two in others.chunks(2) {
                match two {
                    [a, b] => out.extend([*a, (wi, n), *b]),
                    [a] if rng.bool() => out.extend([(wi, n), *a]),
                    [a] => out.extend([*a, (wi, n)]),
                    _ => unreachable!("chunks of two"),
                }
            }
        }
    }
    out
}

/// What has been measured of one (target, workload) so far.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Attempts (samples and failures), the next repetition index.
    attempts: u32,
    /// Warm-up samples still to discard.
    warmups_due: u32,
    /// Headline values of the kept samples, with where each ran.
    kept: Vec<(Option<Position>, f64)>,
    /// Whether the headline metric is higher-is-better.
    hib: bool,
    /// Samples it produced (warm-ups included).
    samples: u32,
    /// Host wall time spent on it, seconds.
    time_s: f64,
    /// Why it is not run any more (unavailable here).
    skip: Option<String>,
    /// A warm-up sample came back counted (its operation counts, `count.*`).
    counted: bool,
}

/// Whether a live cell gets another repetition. Fixed: exactly `reps`. Auto:
/// none beyond `max-reps`; the first `reps` unless the cell already took `reps` ×
/// `max-time` with a sample kept (a slow target gets fewer, said by its level);
/// beyond `reps`, while it took less than `max-time` and `more()` (its ratio is
/// not yet precise enough).
/// `max_time` is the cell's cap: its workload's `max-time`, else the run's.
fn wants_more(
    c: &Cell,
    r: &crate::plan::RunSection,
    max_time: crate::units::Dur,
    more: impl FnOnce() -> bool,
) -> bool {
    let max_time_s = max_time.get().as_secs_f64();
    if !r.auto {
        c.attempts < r.reps
    } else if c.attempts >= r.max_reps {
        false
    } else if c.kept.is_empty() {
        true
    } else if c.time_s >= max_time_s * f64::from(r.reps.max(1)) {
        false
    } else if c.attempts < r.reps {
        true
    } else {
        c.time_s < max_time_s && more()
    }
}

/// Whether the `auto` rule has what it needs for a cell: its ratio to native's
/// 95% interval (or, for native or without native, its median's) lies within
/// ±`precision` at a level of at least 95%.
fn precise(cell: &Cell, base: Option<&Cell>, precision: f64) -> bool {
    match base {
        Some(b) => {
            if cell.kept.is_empty() || b.kept.is_empty() {
                return false;
            }
            let (r, ci, _) = crate::results::ratio_to_native(&cell.kept, &b.kept, cell.hib);
            ci.within(r, precision, stats::LEVEL)
        }
        None => {
            let values: Vec<f64> = cell.kept.iter().map(|&(_, v)| v).collect();
            stats::median_ci(&values, stats::LEVEL).within(
                stats::median(&values),
                precision,
                stats::LEVEL,
            )
        }
    }
}

/// Why a cell that missed the deadline is not tried again, if it is not: under
/// `auto`, when it never produced a sample on this target (the workload is too
/// slow there for the plan's deadline: each new attempt would cost a whole
/// deadline and a restart for the same DNR). Fixed repetitions run as planned.
fn too_slow(cell: &Cell, auto: bool, deadline: crate::units::Dur) -> Option<String> {
    (auto && cell.samples == 0).then(|| {
        format!("too slow here for the plan's deadline ({deadline}): no sample, not tried again")
    })
}

/// Apply an attempt stored before a resume to its cell, as [`overhead`] did when
/// it was measured: a sample counts as a warm-up or a kept value, an
/// unavailable workload stops the cell, a DNR makes the next sample a warm-up
/// (and ends a cell [`too_slow`] for the deadline).
fn replay(
    cell: &mut Cell,
    cold: &mut bool,
    restarts: &mut u64,
    stored: session::Stored,
    r: &crate::plan::RunSection,
) {
    cell.attempts += 1;
    match stored {
        session::Stored::Sample(sample) => {
            cell.samples += 1;
            cell.time_s += sample.elapsed_s;
            if sample.discarded {
                cell.warmups_due = cell.warmups_due.saturating_sub(1);
                *cold = false;
                cell.counted = true;
            } else if let Some(m) = sample.metrics.first() {
                cell.hib = m.higher_is_better;
                cell.kept.push((sample.position, m.value));
            }
        }
        session::Stored::Failure(f) => match f.kind.as_str() {
            "unavailable" | "unknown_workload" => cell.skip = Some(f.message),
            // What ConnError other than Protocol and Interrupted records: the
            // target was restarted after it.
            "deadline" | "agent_exited" | "line_too_long" => {
                if f.kind == "deadline" {
                    cell.skip = cell.skip.take().or(too_slow(cell, r.auto, r.deadline));
                }
                *cold = true;
                *restarts += 1;
            }
            _ => {}
        },
    }
}

/// A sample's measured window as notes, `started_at=` and `ended_at=` (Unix
/// seconds, as the agent's clock read them), for what the agent gave.
pub(crate) fn window_notes(started_at: Option<f64>, ended_at: Option<f64>) -> Vec<String> {
    [("started_at", started_at), ("ended_at", ended_at)]
        .into_iter()
        .filter_map(|(k, t)| Some(format!("{k}={:.6}", t?)))
        .collect()
}

/// Most samples whose set-ups are made together ([`workloads::sets_up_together`]):
/// a target, native and another target, as [`pair_with_native`] puts them.
const SET_UP_GROUP: usize = 3;

/// A sample whose set-up is made and which waits at its barrier.
struct SetUp {
    /// Its request (with a barrier).
    req: Request,
    /// Seconds from the group's requests to its own `ready` (or early answer):
    /// its set-up, charged to its cell; not a slower member's (UML faults its
    /// `mem-bw` arrays in for 7 s, where native takes 0.2 s).
    set_up_s: f64,
    /// `None` at the barrier, or the answer that ends the sample instead (an
    /// error in its set-up, a lost agent).
    early: Option<Result<Response, ConnError>>,
}

impl SetUp {
    /// A member whose set-up ended now, `start` being the group's.
    fn since(start: Instant, req: Request, early: Option<Result<Response, ConnError>>) -> SetUp {
        SetUp {
            req,
            set_up_s: start.elapsed().as_secs_f64(),
            early,
        }
    }
}

/// The request that runs one sample of `workload` in `agent`.
fn workload_request(
    id: u64,
    workload: &str,
    plan: &Plan,
    agent: &Agent,
    count: bool,
    barrier: bool,
) -> Request {
    Request::RunWorkload {
        id,
        workload: workload.to_string(),
        params: plan.params.get(workload).cloned().unwrap_or_default(),
        duration: plan.run.duration,
        preset: plan.run.preset,
        peer: agent.peer(),
        barrier,
        count,
    }
}

/// Send every member's request (with a barrier) at once, so that their set-ups
/// run together, and wait for each one's `ready`, noting when each came (every
/// member is looked at in turn, [`READY_POLL`] at a time). Returns each member's
/// [`SetUp`] by slot; an answer other than `ready` ends that member's sample with
/// it, as it would have without the barrier.
fn set_up_group(
    agents: &mut [Option<Agent>],
    members: Vec<(usize, usize, Request)>,
    deadline: std::time::Duration,
    interrupted: &AtomicBool,
) -> HashMap<usize, SetUp> {
    let start = Instant::now();
    let mut waiting = Vec::with_capacity(members.len());
    let mut out = HashMap::new();
    for (slot, ti, req) in members {
        let agent = agents[ti].as_mut().expect("live members only");
        match agent.conn.send(&req) {
            Ok(()) => waiting.push((slot, ti, req)),
            Err(e) => {
                out.insert(slot, SetUp::since(start, req, Some(Err(e))));
            }
        }
    }
    while !waiting.is_empty() {
        let late = start.elapsed() >= deadline;
        let mut still = Vec::with_capacity(waiting.len());
        for (slot, ti, req) in waiting {
            let agent = agents[ti].as_mut().expect("live members only");
            let early = match agent.conn.wait(&req, READY_POLL, interrupted, |_, _| {}) {
                Ok(Response::Ready { .. }) => None,
                Err(ConnError::Deadline(_)) if !late => {
                    still.push((slot, ti, req));
                    continue;
                }
                Err(ConnError::Deadline(_)) => Some(Err(ConnError::Deadline(deadline))),
                answer => Some(answer),
            };
            out.insert(slot, SetUp::since(start, req, early));
        }
        waiting = still;
    }
    out
}

/// How long [`set_up_group`] waits on one member before it looks at the next.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The overhead step inside an open session.
///
/// Rounds: in each, every (target, workload) still to be measured runs once, in
/// the order of [`round_order`], with native next to each of the others
/// ([`pair_with_native`]: native runs ⌈k/2⌉ times a workload). A (target, workload) is measured `reps` times;
/// with `auto`, then again until its ratio is precise enough or a cap. Every sample records its
/// round and slot. After a target is restarted (DNR), its next sample is a
/// warm-up and is discarded.
pub fn overhead(s: &mut Session, plan: &Plan, kinds: &[targets::TargetKind]) -> Result<()> {
    let target_names = plan.run.targets.clone().unwrap_or_default();
    let workload_names = plan.workload_names();
    let r = &plan.run;
    let seed = r.seed.unwrap_or_default();
    let caps = if r.auto {
        format!(
            "auto: until each ratio's 95% interval is within ±{}%, at most {} repetition(s) or {} each",
            r.precision * 100.0,
            r.max_reps,
            r.max_time()
        )
    } else {
        "fixed".into()
    };
    eprintln!(
        "virtmark: run {}: {} workload(s) × {} target(s) × {} repetition(s) ({caps}), first {} discarded; order seed {seed}",
        s.run_id(),
        workload_names.len(),
        target_names.len(),
        r.reps,
        r.discard
    );

    let (nt, nw) = (target_names.len(), workload_names.len());
    let mut agents: Vec<Option<Agent>> = target_names.iter().map(|_| None).collect();
    let mut dead: Vec<Option<String>> = target_names.iter().map(|_| None).collect();
    let mut cold = vec![false; nt];
    let mut restarts = vec![0u64; nt];
    let mut skipped_before = vec![0u64; nt];
    let mut cells: Vec<Vec<Cell>> = (0..nw)
        .map(|_| {
            (0..nt)
                .map(|_| Cell {
                    warmups_due: r.discard,
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    let native = target_names.iter().position(|t| t == BASELINE);
    let deadline = r.deadline.get();
    let progress = Progress::new((r.reps as u64) * (nt * nw) as u64);
    let mut next_id = 1u64;

    // Each workload's time cap: its own `max-time` (in the quick preset, those of
    // `workloads::QUICK_OWN_MAX_TIME`), else the run's.
    let max_times: Vec<crate::units::Dur> = workload_names
        .iter()
        .map(|w| {
            plan.params
                .get(w)
                .and_then(|p| p.max_time)
                .unwrap_or_else(|| r.max_time())
        })
        .collect();

    'rounds: for round in 0u32.. {
        // Which cells still need a sample: non-native first, then native, which
        // goes on while any other target of its workload does.
        let mut active = vec![vec![false; nt]; nw];
        for wi in 0..nw {
            for pass in [false, true] {
                for ti in (0..nt).filter(|&ti| (Some(ti) == native) == pass) {
                    let c = &cells[wi][ti];
                    let live = |o: usize| dead[o].is_none() && cells[wi][o].skip.is_none();
                    let more = || {
                        let others: Vec<usize> = (0..nt).filter(|&o| o != ti && live(o)).collect();
                        if Some(ti) == native && !others.is_empty() {
                            // Native serves the others' ratios: it goes on while they do.
                            others.iter().any(|&o| active[wi][o])
                        } else {
                            let base = native.filter(|&n| n != ti && live(n));
                            !precise(c, base.map(|n| &cells[wi][n]), r.precision)
                        }
                    };
                    active[wi][ti] = dead[ti].is_none()
                        && c.skip.is_none()
                        && wants_more(c, r, max_times[wi], more);
                }
            }
        }
        let order = round_order(seed, round, nw, nt, |wi, ti| active[wi][ti]);
        let order = pair_with_native(&order, native, seed, round, |wi| {
            native.is_some_and(|n| dead[n].is_none() && cells[wi][n].skip.is_none())
        });
        if order.is_empty() {
            break;
        }
        // What is left: every live cell's repetitions up to `reps`, and at least
        // this round's one (`auto` decides about the rest as it goes), not only
        // this round's, so that the count and the time left do not jump later.
        let left: u64 = order
            .iter()
            .map(|&(wi, ti)| u64::from(r.reps.saturating_sub(cells[wi][ti].attempts).max(1)))
            .sum();
        progress.set_total(progress.done_count() + left);
        // Samples whose set-up is made, by slot (workloads that set up together).
        let mut set_up: HashMap<usize, SetUp> = HashMap::new();
        for (slot, &(wi, ti)) in order.iter().enumerate() {
            if s.is_interrupted() {
                break 'rounds;
            }
            let (tname, wname) = (&target_names[ti], &workload_names[wi]);
            let position = Some(Position {
                round,
                slot: slot as u32,
            });
            let rep = cells[wi][ti].attempts;
            progress.start_item(tname, wname, rep, if r.auto { r.max_reps } else { r.reps });
            // A resumed run: what this attempt stored before is replayed into the
            // cell (as it was measured then) instead of running again, so every
            // later round sees the same state and gets the same order.
            if let Some(stored) = s.done.remove(&(tname.clone(), wname.clone(), rep)) {
                replay(
                    &mut cells[wi][ti],
                    &mut cold[ti],
                    &mut restarts[ti],
                    stored,
                    r,
                );
                progress.finish_item("measured before the resume");
                continue;
            }
            let fail = |kind: &str, message: String| FailureRecord {
                target: tname.clone(),
                workload: wname.clone(),
                rep,
                kind: kind.into(),
                message,
                ..Default::default()
            };
            if let Some(why) = dead[ti].clone().or_else(|| cells[wi][ti].skip.clone()) {
                progress.finish_item(&format!("skipped ({why})"));
                continue;
            }
            if agents[ti].is_none() {
                let spec = InstanceSpec {
                    name: tname,
                    kind: &kinds[ti],
                    index: ti,
                    memory: r.memory.map_or(DEFAULT_MEMORY, |m| m.bytes()),
                    cpuset: None,
                    cpus: r.cpus.map(|c| c as usize),
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
            // The workload's operations are counted on its first warm-up only:
            // counting slows system calls, and the sample is discarded anyway.
            let warm_up = |ti: usize| cells[wi][ti].warmups_due > 0 || cold[ti];
            let count = |ti: usize| warm_up(ti) && !cells[wi][ti].counted;
            if workloads::sets_up_together(wname) && !set_up.contains_key(&slot) {
                // This sample and the next ones of its workload (`a N b`) whose
                // targets run already (from the second round on) make their
                // set-ups now, together, and wait at a barrier: each is released
                // when the one before it has answered.
                let mut group = vec![(slot, ti)];
                for (j, &(wj, tj)) in order.iter().enumerate().skip(slot + 1) {
                    let rep_j = cells[wi][tj].attempts;
                    if group.len() == SET_UP_GROUP
                        || wj != wi
                        || group.iter().any(|&(_, t)| t == tj)
                        || dead[tj].is_some()
                        || cells[wi][tj].skip.is_some()
                        || agents[tj].is_none()
                        || s.done
                            .contains_key(&(target_names[tj].clone(), wname.clone(), rep_j))
                    {
                        break;
                    }
                    group.push((j, tj));
                }
                if group.len() > 1 {
                    let members: Vec<(usize, usize, Request)> = group
                        .iter()
                        .map(|&(j, tj)| {
                            let id = next_id;
                            next_id += 1;
                            let agent = agents[tj].as_ref().expect("live members only");
                            (
                                j,
                                tj,
                                workload_request(id, wname, plan, agent, count(tj), true),
                            )
                        })
                        .collect();
                    set_up = set_up_group(&mut agents, members, deadline, &s.interrupted);
                }
            }
            let agent = agents[ti].as_mut().expect("started above");
            let warm_up = warm_up(ti);
            let began = Instant::now();
            let (answer, set_up_s) = match set_up.remove(&slot) {
                Some(SetUp {
                    req,
                    set_up_s,
                    early,
                }) => {
                    let answer = early.unwrap_or_else(|| {
                        let Request::RunWorkload { id, .. } = req else {
                            unreachable!("a set-up is a run_workload")
                        };
                        agent.conn.send(&Request::Go { id, at: None })?;
                        agent
                            .conn
                            .wait(&req, deadline, &s.interrupted, |f, m| progress.sub(f, m))
                    });
                    (answer, set_up_s)
                }
                None => {
                    let req = workload_request(next_id, wname, plan, agent, count(ti), false);
                    next_id += 1;
                    let answer = agent
                        .conn
                        .request(&req, deadline, &s.interrupted, |f, m| progress.sub(f, m));
                    (answer, 0.0)
                }
            };
            let skipped = agent.conn.skipped();
            let cell = &mut cells[wi][ti];
            cell.attempts += 1;
            cell.time_s += set_up_s + began.elapsed().as_secs_f64();
            match answer {
                Ok(Response::Sample {
                    metrics,
                    mut notes,
                    elapsed_s,
                    started_at,
                    ended_at,
                    ..
                }) => {
                    notes.extend(window_notes(started_at, ended_at));
                    cell.samples += 1;
                    let discarded = warm_up;
                    if discarded {
                        cell.warmups_due = cell.warmups_due.saturating_sub(1);
                        cold[ti] = false;
                        cell.counted = true;
                    } else if let Some(m) = metrics.first() {
                        cell.hib = m.higher_is_better;
                        cell.kept.push((position, m.value));
                    }
                    let sample = SampleRecord {
                        target: tname.clone(),
                        workload: wname.clone(),
                        rep,
                        discarded,
                        position,
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
                        cell.skip = Some(message.clone());
                    }
                    progress.warn(&format!("{tname} {wname} rep {}: {message}", rep + 1));
                    s.store_failure(fail(&kind, message))?;
                }
                Ok(other) => {
                    s.store_failure(fail("protocol", format!("unexpected answer {other:?}")))?;
                }
                Err(ConnError::Interrupted) => break 'rounds,
                Err(e @ ConnError::Protocol(_)) => {
                    // The sample fails with the reason; the agent goes on (a late
                    // answer to this request is recognised by its id and dropped).
                    let msg = e.to_string();
                    progress.warn(&format!("{tname} {wname} rep {}: {msg}", rep + 1));
                    s.store_failure(fail(e.kind(), msg))?;
                }
                Err(e) => {
                    // DNR: the agent is stuck or gone; restart it for the next
                    // sample, which will be a warm-up again.
                    let mut msg = format!("{e} (DNR); restarting the target");
                    if matches!(e, ConnError::Deadline(_)) {
                        if let Some(why) = too_slow(cell, r.auto, r.deadline) {
                            msg = format!("{e} (DNR): {why}");
                            cell.skip = Some(why);
                        }
                    }
                    progress.warn(&format!("{tname} {wname} rep {}: {msg}", rep + 1));
                    s.store_failure(fail(e.kind(), msg))?;
                    if let Some(a) = agents[ti].take() {
                        skipped_before[ti] += a.conn.skipped();
                        a.kill();
                    }
                    cold[ti] = true;
                    restarts[ti] += 1;
                }
            }
            s.note_channel(tname, skipped_before[ti] + skipped, restarts[ti])?;
        }
    }
    progress.done();
    for (ti, a) in agents.into_iter().enumerate() {
        if let Some(a) = a {
            s.note_channel(
                &target_names[ti],
                skipped_before[ti] + a.conn.skipped(),
                restarts[ti],
            )?;
            a.stop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slow_cells_get_fewer_repetitions_and_quick_ones_their_reps() {
        let r = crate::plan::RunSection::default(); // auto, reps 4, 5 s quick
        let cap = r.max_time();
        let cell = |attempts: u32, kept: usize, time_s: f64| Cell {
            attempts,
            kept: vec![(None, 1.0); kept],
            time_s,
            ..Default::default()
        };
        // A 3 s sample: its 4 repetitions all the same (12 s), then no more.
        assert!(wants_more(&cell(3, 2, 9.0), &r, cap, || false));
        assert!(!wants_more(&cell(4, 3, 12.0), &r, cap, || true));
        // A 0.5 s sample: more while the ratio is imprecise, within 5 s.
        assert!(wants_more(&cell(4, 3, 2.0), &r, cap, || true));
        assert!(!wants_more(&cell(4, 3, 2.0), &r, cap, || false));
        assert!(!wants_more(&cell(10, 9, 5.0), &r, cap, || true));
        // A 0.2 s sample: 5 s, not the repetitions, stop it (at 60 a 0.07 s one).
        assert!(wants_more(&cell(20, 19, 4.9), &r, cap, || true));
        assert!(wants_more(&cell(40, 39, 4.0), &r, cap, || true));
        assert!(!wants_more(&cell(60, 59, 4.0), &r, cap, || true));
        // A 75 s sample (a compile under TCG): warm-up and one kept, then stop.
        assert!(wants_more(&cell(1, 0, 75.0), &r, cap, || true));
        assert!(!wants_more(&cell(2, 1, 150.0), &r, cap, || true));
        // Fixed repetitions ignore the caps.
        let fixed = crate::plan::RunSection {
            auto: false,
            ..Default::default()
        };
        assert!(wants_more(&cell(2, 1, 150.0), &fixed, cap, || false));
        assert!(!wants_more(&cell(4, 3, 1.0), &fixed, cap, || true));
        // A workload's own cap (mem-bw's 30 s): a 0.5 s sample goes on past 5 s.
        let own = crate::units::Dur(std::time::Duration::from_secs(30));
        assert!(wants_more(&cell(12, 11, 6.0), &r, own, || true));
        assert!(!wants_more(&cell(12, 11, 6.0), &r, cap, || true));
        assert!(wants_more(&cell(45, 44, 25.0), &r, own, || true));
        assert!(!wants_more(&cell(55, 54, 30.0), &r, own, || true));
    }

    use super::*;

    #[test]
    fn rounds_rotate_workloads_shuffle_targets_and_replay_from_the_seed() {
        let (nw, nt) = (16, 8);
        let a: Vec<_> = (0..12)
            .map(|r| round_order(7, r, nw, nt, |_, _| true))
            .collect();
        let b: Vec<_> = (0..12)
            .map(|r| round_order(7, r, nw, nt, |_, _| true))
            .collect();
        assert_eq!(a, b, "the same seed replays the same order");
        let c: Vec<_> = (0..12)
            .map(|r| round_order(8, r, nw, nt, |_, _| true))
            .collect();
        assert_ne!(a, c);
        for (r, order) in a.iter().enumerate() {
            assert_eq!(order.len(), nw * nt, "every pair once per round");
            assert_eq!(order[0].0, r % nw, "workloads rotate");
        }
        // No target has a fixed place: each is seen at several positions within
        // its workload, and target 0 does not always follow the same target.
        for t in 0..nt {
            let places: std::collections::BTreeSet<usize> = a
                .iter()
                .flat_map(|o| {
                    o.chunks(nt)
                        .map(|ch| ch.iter().position(|p| p.1 == t).unwrap())
                })
                .collect();
            assert!(places.len() >= 4, "target {t} at {places:?}");
        }
        let before_0: std::collections::BTreeSet<usize> = a
            .iter()
            .flat_map(|o| {
                o.windows(2)
                    .filter(|w| w[1].1 == 0)
                    .map(|w| w[0].1)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(before_0.len() >= 4, "{before_0:?}");
        // Inactive pairs drop out without changing the others' relative order.
        let some = round_order(7, 3, nw, nt, |w, t| (w + t) % 3 != 0);
        let kept: Vec<_> = a[3]
            .iter()
            .copied()
            .filter(|&(w, t)| (w + t) % 3 != 0)
            .collect();
        assert_eq!(some, kept);
    }

    #[test]
    fn every_other_target_runs_next_to_a_native_sample() {
        let (nw, nt, native) = (5, 8, 3);
        for round in 0..20 {
            let order = round_order(11, round, nw, nt, |_, _| true);
            let paired = pair_with_native(&order, Some(native), 11, round, |_| true);
            assert_eq!(
                paired,
                pair_with_native(&order, Some(native), 11, round, |_| true),
                "replays from the seed"
            );
            for block in paired.chunk_by(|a, b| a.0 == b.0) {
                let others: Vec<usize> =
                    block.iter().map(|p| p.1).filter(|&t| t != native).collect();
                // The others in their shuffled order, each once, native ⌈7/2⌉ times.
                let shuffled: Vec<usize> = order
                    .iter()
                    .filter(|p| p.0 == block[0].0 && p.1 != native)
                    .map(|p| p.1)
                    .collect();
                assert_eq!(others, shuffled);
                assert_eq!(block.len() - others.len(), 4);
                for (i, p) in block.iter().enumerate() {
                    let next_to_native = (i > 0 && block[i - 1].1 == native)
                        || block.get(i + 1).is_some_and(|q| q.1 == native);
                    assert!(p.1 == native || next_to_native, "{block:?}");
                }
            }
        }
        // The last one alone goes before or after native, by the seed.
        let places: std::collections::BTreeSet<usize> = (0..20)
            .flat_map(|round| {
                let order = round_order(11, round, 1, 2, |_, _| true);
                pair_with_native(&order, Some(0), 11, round, |_| true)
                    .iter()
                    .position(|p| p.1 == 1)
            })
            .collect();
        assert_eq!(places.len(), 2, "{places:?}");
        // Native alone where the order has it, and nowhere it is not live.
        let order = round_order(11, 0, 2, 3, |w, t| w == 0 || t == 0);
        let paired = pair_with_native(&order, Some(0), 11, 0, |_| true);
        let of = |w: usize| {
            paired
                .iter()
                .filter(|p| p.0 == w)
                .map(|p| p.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(of(0).iter().filter(|&&t| t == 0).count(), 1);
        assert_eq!(of(1), vec![0]);
        let dead = pair_with_native(&order, Some(0), 11, 0, |_| false);
        assert!(dead.iter().filter(|p| p.0 == 0).all(|p| p.1 != 0));
        assert_eq!(pair_with_native(&order, None, 11, 0, |_| true), order);
    }

    #[test]
    fn a_workload_that_never_finished_within_the_deadline_is_not_tried_again_under_auto() {
        let auto = crate::plan::RunSection::default();
        let fixed = crate::plan::RunSection {
            auto: false,
            ..Default::default()
        };
        let dnr = |kind: &str| {
            session::Stored::Failure(FailureRecord {
                kind: kind.into(),
                ..Default::default()
            })
        };
        let (mut cold, mut restarts) = (false, 0);
        // No sample yet, then a deadline: too slow here, said with the deadline.
        let mut c = Cell::default();
        replay(&mut c, &mut cold, &mut restarts, dnr("deadline"), &auto);
        let why = c.skip.clone().expect("ended");
        assert!(why.contains("deadline (10m)"), "{why}");
        assert_eq!((cold, restarts), (true, 1));
        // Fixed repetitions run as planned; a crash is not slowness; a cell that
        // gave samples before may have hung once.
        let mut c = Cell::default();
        replay(&mut c, &mut cold, &mut restarts, dnr("deadline"), &fixed);
        assert_eq!(c.skip, None);
        let mut c = Cell::default();
        replay(&mut c, &mut cold, &mut restarts, dnr("agent_exited"), &auto);
        assert_eq!(c.skip, None);
        let mut c = Cell {
            samples: 1,
            ..Default::default()
        };
        replay(&mut c, &mut cold, &mut restarts, dnr("deadline"), &auto);
        assert_eq!(c.skip, None);
    }

    fn cell(kept: &[f64]) -> Cell {
        Cell {
            kept: kept.iter().map(|&v| (None, v)).collect(),
            hib: true,
            ..Default::default()
        }
    }

    #[test]
    fn precise_needs_the_level_and_the_width() {
        let base = cell(&[100.0, 100.5, 99.5, 100.2]);
        // 4 and 4 samples within 1% of each other: level 0.971, within ±3%.
        assert!(precise(&cell(&[90.0, 90.4, 89.8, 90.1]), Some(&base), 0.03));
        // 3 and 4: level 1 − 2/35 ≈ 0.943 < 95%, however tight.
        assert!(!precise(&cell(&[90.0, 90.4, 89.8]), Some(&base), 0.03));
        // Tight enough for ±3% but not for ±0.1%.
        assert!(!precise(
            &cell(&[90.0, 90.4, 89.8, 90.1]),
            Some(&base),
            0.001
        ));
        // Without a baseline: the median's own interval (6 values reach 96.9%).
        assert!(precise(
            &cell(&[10.0, 10.1, 9.9, 10.0, 10.05, 9.95]),
            None,
            0.03
        ));
        assert!(!precise(&cell(&[10.0, 10.1, 9.9, 10.0, 10.05]), None, 0.03));
    }
}
