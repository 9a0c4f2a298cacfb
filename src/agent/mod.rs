//! `virtmark agent`: runs inside a target, reads requests on stdin and answers on
//! stdout (see [`crate::protocol`]). It never exits on a bad request: it answers
//! with an `error` and keeps serving.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod counts;
mod leftovers;
mod stress;

use crate::protocol::{self, DecodeError, Request, Response};
use crate::units::Dur;
use crate::workloads::{self, Ctx, Params, Preset, WorkloadError};

/// Default run time of a time-based workload when neither the plan nor the request says.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2);

/// Serve requests from `input` until `shutdown` or end of input. `scratch_root`
/// is where per-workload scratch directories are made.
pub fn serve(input: impl BufRead, mut out: impl Write, scratch_root: &Path) -> io::Result<()> {
    let mut stressors = stress::Stressors::default();
    let mut leftovers = leftovers::Leftovers::default();
    let result = serve_loop(
        input,
        &mut out,
        scratch_root,
        &mut stressors,
        &mut leftovers,
    );
    stressors.stop_all();
    leftovers.clear();
    let _ = settle(scratch_root);
    result
}

fn serve_loop(
    input: impl BufRead,
    mut out: impl Write,
    scratch_root: &Path,
    stressors: &mut stress::Stressors,
    leftovers: &mut leftovers::Leftovers,
) -> io::Result<()> {
    let mut lines = protocol::BoundedLines::new(input);
    while let Some(line) = lines.next() {
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                protocol::send(
                    &mut out,
                    &Response::Error {
                        id: None,
                        kind: "line_too_long".into(),
                        message: e.to_string(),
                    },
                )?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if line.trim().is_empty() {
            continue;
        }
        let req = match protocol::decode::<Request>(&line) {
            Ok(r) => r,
            Err(e) => {
                let message = match &e {
                    DecodeError::NotJson => format!("not a JSON protocol message: {:.80}", line),
                    other => other.to_string(),
                };
                protocol::send(
                    &mut out,
                    &Response::Error {
                        id: None,
                        kind: e.kind().into(),
                        message,
                    },
                )?;
                continue;
            }
        };
        match req {
            Request::Hello => protocol::send(
                &mut out,
                &Response::Hello {
                    version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                    workloads: workloads::names().into_iter().map(String::from).collect(),
                },
            )?,
            Request::Fingerprint => protocol::send(
                &mut out,
                &Response::Fingerprint {
                    fingerprint: Box::new(crate::fingerprint::Fingerprint {
                        scratch: Some(crate::fingerprint::storage::of(scratch_root)),
                        ..crate::fingerprint::collect()
                    }),
                },
            )?,
            Request::RunWorkload {
                id,
                workload,
                params,
                duration,
                preset,
                peer,
                barrier,
                count,
            } => {
                // With a barrier, the workload's set-up is done before `ready`,
                // so that `go` releases straight into the measured window.
                let mut at_barrier = |out: &mut dyn Write| -> io::Result<bool> {
                    if barrier {
                        wait_at_barrier(&mut lines, out, id)
                    } else {
                        Ok(true)
                    }
                };
                let answer = run_workload(
                    &mut out,
                    scratch_root,
                    id,
                    &workload,
                    &params,
                    duration,
                    preset,
                    peer.as_deref(),
                    count,
                    &mut at_barrier,
                    leftovers,
                )?;
                match answer {
                    Some(a) => protocol::send(&mut out, &a)?,
                    // Shut down while waiting at the barrier.
                    None => return Ok(()),
                }
            }
            Request::StartStressor {
                id,
                stressor,
                params,
            } => {
                let answer = stressors.start(id, &stressor, params, scratch_root);
                protocol::send(&mut out, &answer)?
            }
            Request::StopStressor { id } => {
                let answer = stressors.stop(id);
                protocol::send(&mut out, &answer)?
            }
            Request::Go { id, .. } => protocol::send(
                &mut out,
                &Response::Error {
                    id: Some(id),
                    kind: "bad_request".into(),
                    message: format!("go {id}: no workload waits at a barrier"),
                },
            )?,
            Request::Shutdown => {
                protocol::send(&mut out, &Response::Bye)?;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Answer `ready` and block until `go` for `id`. Other requests meanwhile get an
/// error; `shutdown` (or end of input) ends the agent: returns `false`.
fn wait_at_barrier(
    lines: &mut impl Iterator<Item = io::Result<String>>,
    out: &mut dyn Write,
    id: u64,
) -> io::Result<bool> {
    protocol::send(out, &Response::Ready { id })?;
    for line in lines {
        let line = match line {
            Ok(l) => l,
            // Too long: not a `go`, answered like any other request.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => String::new(),
            Err(e) => return Err(e),
        };
        match protocol::decode::<Request>(&line) {
            Ok(Request::Go { id: g, at }) if g == id => {
                if let Some(at) = at {
                    sleep_until_unix(at);
                }
                return Ok(true);
            }
            Ok(Request::Shutdown) => {
                protocol::send(out, &Response::Bye)?;
                return Ok(false);
            }
            Ok(_) | Err(_) => protocol::send(
                out,
                &Response::Error {
                    id: None,
                    kind: "busy".into(),
                    message: format!("waiting at the barrier of request {id} for go"),
                },
            )?,
        }
    }
    Ok(false)
}

/// Sleep until Unix time `at` when it is ahead by less than 5 s.
fn sleep_until_unix(at: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let ahead = at - now;
    if ahead > 0.0 && ahead < 5.0 {
        std::thread::sleep(Duration::from_secs_f64(ahead));
    }
}

#[allow(clippy::too_many_arguments)]
fn run_workload(
    out: &mut impl Write,
    scratch_root: &Path,
    id: u64,
    name: &str,
    params: &Params,
    duration: Option<Dur>,
    preset: Preset,
    peer: Option<&str>,
    count: bool,
    at_barrier: &mut dyn FnMut(&mut dyn Write) -> io::Result<bool>,
    leftovers: &mut leftovers::Leftovers,
) -> io::Result<Option<Response>> {
    let error = |kind: &str, message: String| Response::Error {
        id: Some(id),
        kind: kind.into(),
        message,
    };
    let Some(w) = workloads::find(name) else {
        return Ok(Some(error(
            "unknown_workload",
            format!(
                "unknown workload {name:?} (known: {})",
                workloads::names().join(", ")
            ),
        )));
    };
    if let Err(why) = params.check(name) {
        return Ok(Some(error("bad_request", format!("{name}: {why}"))));
    }
    if let Err(why) = (w.available)() {
        return Ok(Some(error("unavailable", format!("{name}: {why}"))));
    }
    let peer: Option<SocketAddr> = match peer {
        None => None,
        Some(p) => match p.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                return Ok(Some(error(
                    "bad_request",
                    format!("peer address {p:?} does not resolve"),
                )))
            }
        },
    };
    let scratch = scratch_dir(scratch_root, name, id);
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        return Ok(Some(error(
            "io",
            format!("creating scratch directory {}: {e}", scratch.display()),
        )));
    }
    let duration = params
        .duration
        .or(duration)
        .map(Dur::get)
        .unwrap_or(DEFAULT_DURATION);
    // Progress and the barrier go out through RefCells so that the workload's
    // `Fn` callbacks can write.
    let out_cell = std::cell::RefCell::new(out);
    let barrier_cell = std::cell::RefCell::new(at_barrier);
    let last = std::cell::Cell::new(Instant::now() - Duration::from_secs(1));
    // Set when the agent was shut down at the barrier: nothing more goes out.
    let shut = std::cell::Cell::new(false);
    let progress = |fraction: f64, message: &str| {
        // At most ten progress lines a second: the channel may be a slow console.
        if shut.get() || last.get().elapsed() < Duration::from_millis(100) {
            return;
        }
        last.set(Instant::now());
        let mut o = out_cell.borrow_mut();
        let _ = protocol::send(
            &mut *o,
            &Response::Progress {
                id,
                fraction: fraction.clamp(0.0, 1.0),
                message: message.into(),
            },
        );
    };
    // Set-up done: `ready`, wait for `go` (with a barrier), note the start of the
    // measured window. Once only; `shut` when the agent must end instead.
    let started_at = std::cell::Cell::new(None);
    let begun = std::cell::Cell::new(false);
    let settled = std::cell::Cell::new(None);
    // Operation counts of a workload (not of a probe) over its window, when the
    // host asks (on a warm-up: counting slows system calls).
    let counter = std::cell::RefCell::new(None);
    let count = count && !crate::probes::is_probe(name);
    let begin = || -> Result<(), WorkloadError> {
        if begun.replace(true) {
            return Ok(());
        }
        // The file system settles before the window: what earlier samples (and this
        // one's set-up) left dirty is written back now, not while this one is timed.
        settled.set(Some(settle(&scratch)));
        let go = {
            let mut o = out_cell.borrow_mut();
            let mut b = barrier_cell.borrow_mut();
            (*b)(&mut **o)
        };
        match go {
            Ok(true) => {
                started_at.set(unix_now());
                if count {
                    *counter.borrow_mut() = Some(counts::Counter::start());
                }
                Ok(())
            }
            Ok(false) | Err(_) => {
                shut.set(true);
                Err(WorkloadError::Failed(
                    "the agent was shut down at the barrier".into(),
                ))
            }
        }
    };
    let ctx = Ctx {
        preset,
        duration,
        params,
        scratch: &scratch,
        peer,
        progress: &progress,
        begin: &begin,
    };
    let start = Instant::now();
    // A workload without a set-up of its own waits at the barrier before it runs.
    let result = if workloads::sets_up_first(name) {
        (w.run)(&ctx)
    } else {
        begin().and_then(|()| (w.run)(&ctx))
    };
    let counted = counter.borrow_mut().take().map(counts::Counter::finish);
    // A NaN or infinite figure fails the sample with its reason: sent as a sample it
    // would become `null` in JSON and the host could not read it.
    let result = result.and_then(|o| o.check_finite(name).map(|()| o));
    let result = result.map(|mut o| {
        match &counted {
            Some(c) => {
                let sources = counts::merge(c, &mut o.metrics);
                if !sources.is_empty() {
                    o.notes.push(format!("operation counts: {sources}"));
                }
            }
            None => counts::strip(&mut o.metrics),
        }
        match settled.take() {
            Some(Ok(())) => o
                .notes
                .push("scratch file system synced (syncfs) before the window, untimed".into()),
            Some(Err(e)) => o.notes.push(format!(
                "scratch file system not synced before the window: syncfs: {e}"
            )),
            None => {}
        }
        o
    });
    let ended_at = unix_now();
    let elapsed_s = start.elapsed().as_secs_f64();
    leftovers.retire(&scratch);
    if shut.get() {
        return Ok(None);
    }
    Ok(Some(match result {
        Ok(o) => Response::Sample {
            id,
            workload: name.into(),
            metrics: o.metrics,
            notes: o.notes,
            elapsed_s,
            started_at: started_at.get(),
            ended_at,
        },
        Err(e) => error(e.kind(), format!("{name}: {e}")),
    }))
}

/// Now, Unix time in seconds.
fn unix_now() -> Option<f64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .ok()
}

/// Write back the file system holding `dir` (syncfs(2)). Samples run one after
/// another on the same file system: without this, a sample pays for the
/// writeback of what its predecessors and its own set-up left dirty, and an
/// inode-table block left dirty keeps freed inodes out of reuse for 30 s instead
/// of 5 on an ext4 without a journal (see [`leftovers`]).
fn settle(dir: &Path) -> io::Result<()> {
    let d = std::fs::File::open(dir)?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)).map_err(io::Error::from)
}

fn scratch_dir(root: &Path, name: &str, id: u64) -> PathBuf {
    root.join(format!("{name}-{}-{id}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(input: &str) -> Vec<Response> {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, dir.path()).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .map(|l| protocol::decode::<Response>(l).unwrap())
            .collect()
    }

    #[test]
    fn malformed_and_unknown_requests_get_errors_and_serving_goes_on() {
        let input = "this is not json\n{\"v\":1,\"type\":\"dance\"}\n{\"v\":1,\"type\":\"run_workload\",\"id\":4,\"workload\":\"nope\"}\n{\"v\":1,\"type\":\"hello\"}\n";
        let a = answers(input);
        assert_eq!(a.len(), 4);
        assert!(matches!(&a[0], Response::Error { kind, .. } if kind == "bad_request"));
        assert!(matches!(&a[1], Response::Error { kind, .. } if kind == "bad_request"));
        assert!(
            matches!(&a[2], Response::Error { id: Some(4), kind, .. } if kind == "unknown_workload")
        );
        assert!(matches!(&a[3], Response::Hello { .. }));
    }

    #[test]
    fn runs_a_workload_and_says_bye() {
        let input = "{\"v\":1,\"type\":\"run_workload\",\"id\":1,\"workload\":\"dd-zero\",\"duration\":\"100ms\"}\n{\"v\":1,\"type\":\"shutdown\"}\n{\"v\":1,\"type\":\"hello\"}\n";
        let a = answers(input);
        let sample = a
            .iter()
            .find(|r| matches!(r, Response::Sample { .. }))
            .expect("a sample");
        match sample {
            Response::Sample { id, metrics, .. } => {
                assert_eq!(*id, 1);
                assert!(metrics[0].value > 0.0);
            }
            _ => unreachable!(),
        }
        assert_eq!(a.last(), Some(&Response::Bye), "nothing after shutdown");
    }

    /// Counting slows system calls: only a request that asks is counted.
    #[test]
    fn operations_are_counted_only_when_the_request_asks() {
        let input = "{\"v\":1,\"type\":\"run_workload\",\"id\":1,\"workload\":\"dd-zero\",\"duration\":\"100ms\",\"count\":true}\n{\"v\":1,\"type\":\"run_workload\",\"id\":2,\"workload\":\"dd-zero\",\"duration\":\"100ms\"}\n";
        let a = answers(input);
        let counts = |want: u64| match a
            .iter()
            .find(|r| matches!(r, Response::Sample { id, .. } if *id == want))
        {
            Some(Response::Sample { metrics, notes, .. }) => (
                metrics
                    .iter()
                    .filter(|m| m.name.starts_with(counts::PREFIX))
                    .map(|m| (m.name.clone(), m.value))
                    .collect::<Vec<_>>(),
                notes.clone(),
            ),
            other => panic!("{other:?}"),
        };
        let (counted, notes) = counts(1);
        // A read and a write per 512-byte block, 3906 per MB (10^6 B), which
        // every source sees (/proc/self/io counts both); the counted window is a
        // little longer than the workload's, hence the margin.
        let sys = counted
            .iter()
            .find(|c| c.0 == "count.syscalls")
            .map(|c| c.1)
            .expect("syscalls counted");
        assert!((3700.0..4500.0).contains(&sys), "{sys} per MB ({notes:?})");
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("operation counts: syscalls: ")),
            "{notes:?}"
        );
        let (uncounted, notes) = counts(2);
        assert!(uncounted.is_empty(), "{uncounted:?}");
        assert!(
            !notes.iter().any(|n| n.contains("operation counts")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_non_finite_metric_fails_the_sample_with_its_reason() {
        use crate::workloads::{Metric, Outcome};
        let o = Outcome {
            metrics: vec![
                Metric::higher("throughput", "MB/s", 1.0),
                Metric::lower("latency", "us", f64::NAN),
            ],
            notes: vec![],
        };
        let e = o.check_finite("x").expect_err("NaN must fail");
        assert_eq!(e.kind(), "not_finite");
        assert!(e.to_string().contains("latency"), "{e}");
        let inf = Outcome {
            metrics: vec![Metric::higher("throughput", "MB/s", f64::INFINITY)],
            notes: vec![],
        };
        assert!(inf.check_finite("x").is_err());
        assert!(Outcome::default().check_finite("x").is_err());
        let ok = Outcome {
            metrics: vec![Metric::higher("throughput", "MB/s", 0.0)],
            notes: vec![],
        };
        assert!(ok.check_finite("x").is_ok());
    }

    #[test]
    fn a_barrier_holds_the_workload_until_go() {
        let input = "{\"v\":1,\"type\":\"run_workload\",\"id\":5,\"workload\":\"dd-zero\",\"duration\":\"50ms\",\"barrier\":true}\n{\"v\":1,\"type\":\"hello\"}\n{\"v\":1,\"type\":\"go\",\"id\":5}\n";
        let a = answers(input);
        assert_eq!(a[0], Response::Ready { id: 5 });
        assert!(matches!(&a[1], Response::Error { kind, .. } if kind == "busy"));
        assert!(
            matches!(&a[2], Response::Sample { id: 5, .. }),
            "{:?}",
            a[2]
        );
    }

    /// Two phases: a workload with a set-up (oltp's table) makes it before
    /// `ready`; its measured window starts after `go` and is reported.
    #[test]
    fn set_up_comes_before_ready_and_the_window_after_go() {
        let input = "{\"v\":1,\"type\":\"run_workload\",\"id\":7,\"workload\":\"oltp\",\"params\":{\"rows\":2000},\"duration\":\"100ms\",\"barrier\":true}\n{\"v\":1,\"type\":\"go\",\"id\":7}\n";
        let a = answers(input);
        // Progress of the set-up ("preparing table") comes before `ready`.
        let ready = a
            .iter()
            .position(|r| *r == Response::Ready { id: 7 })
            .expect("ready");
        assert!(a[..ready].iter().any(
            |r| matches!(r, Response::Progress { message, .. } if message.contains("preparing"))
        ));
        match a.last() {
            Some(Response::Sample {
                started_at: Some(s),
                ended_at: Some(e),
                elapsed_s,
                ..
            }) => {
                let window = e - s;
                assert!(
                    window >= 0.09 && window < *elapsed_s,
                    "{window} of {elapsed_s}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shutdown_at_the_barrier_of_a_set_up_first_workload_ends_the_agent() {
        let input = "{\"v\":1,\"type\":\"run_workload\",\"id\":8,\"workload\":\"oltp\",\"params\":{\"rows\":2000},\"duration\":\"100ms\",\"barrier\":true}\n{\"v\":1,\"type\":\"shutdown\"}\n";
        let a = answers(input);
        assert!(a.contains(&Response::Ready { id: 8 }));
        assert_eq!(a.last(), Some(&Response::Bye));
        assert!(!a
            .iter()
            .any(|r| matches!(r, Response::Sample { .. } | Response::Error { .. })));
    }
}
