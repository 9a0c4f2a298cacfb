//! The host side of the agent channel: send a request, wait for its answer within a
//! deadline, pass progress on, skip console noise.

use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::{self, Request, Response};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Deadline(Duration),
    /// The agent closed its channel (exited or crashed).
    #[error("the agent closed its channel")]
    Closed,
    /// The user interrupted the run.
    #[error("interrupted")]
    Interrupted,
    /// Writing the request failed.
    #[error("writing to the agent: {0}")]
    Io(#[from] io::Error),
    /// The agent sent a protocol line that could not be read.
    #[error("unreadable answer from the agent: {0}")]
    Protocol(String),
    /// The agent sent a line longer than the protocol allows.
    #[error("{0}")]
    TooLong(String),
}

impl ConnError {
    /// Machine-readable kind for a DNR record.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Deadline(_) => "deadline",
            ConnError::Closed => "agent_exited",
            ConnError::Interrupted => "interrupted",
            ConnError::Io(_) => "agent_exited",
            ConnError::Protocol(_) => "protocol",
            ConnError::TooLong(_) => "line_too_long",
        }
    }
}

/// A connection to one agent.
pub struct AgentConn {
    writer: Box<dyn Write + Send>,
    rx: mpsc::Receiver<Result<Response, ConnError>>,
    skipped: Arc<AtomicU64>,
    _reader: JoinHandle<()>,
}

impl AgentConn {
    /// Start reading answers from `from_agent` on a thread.
    pub fn new(writer: Box<dyn Write + Send>, from_agent: Box<dyn Read + Send>) -> AgentConn {
        let (tx, rx) = mpsc::channel();
        let skipped = Arc::new(AtomicU64::new(0));
        let counter = skipped.clone();
        let reader = std::thread::spawn(move || {
            let mut r = protocol::Reader::new(BufReader::new(from_agent));
            loop {
                let got = match r.next_checked_or_echo::<Response, Request>() {
                    Ok(Some(msg)) => msg.map_err(|e| ConnError::Protocol(e.to_string())),
                    Ok(None) => break,
                    // Too long: the answer being awaited ends with an error; the
                    // stream goes on at the next line.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        Err(ConnError::TooLong(e.to_string()))
                    }
                    Err(_) => break,
                };
                counter.store(r.skipped, Ordering::Relaxed);
                if tx.send(got).is_err() {
                    break;
                }
            }
            counter.store(r.skipped, Ordering::Relaxed);
        });
        AgentConn {
            writer,
            rx,
            skipped,
            _reader: reader,
        }
    }

    /// Lines from the agent's channel skipped so far as not protocol messages
    /// (console noise).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Send `req` and wait for its final answer (anything but `progress`), calling
    /// `on_progress` for progress on the way. Answers to earlier requests that
    /// arrive late (after their deadline) are skipped.
    pub fn request(
        &mut self,
        req: &Request,
        deadline: Duration,
        interrupted: &AtomicBool,
        on_progress: impl FnMut(f64, &str),
    ) -> Result<Response, ConnError> {
        self.send(req)?;
        self.wait(req, deadline, interrupted, on_progress)
    }

    /// Send a request without waiting.
    pub fn send(&mut self, req: &Request) -> Result<(), ConnError> {
        protocol::send(&mut self.writer, req)?;
        Ok(())
    }

    /// Wait for the answer to `req` (sent earlier); `ready` counts as an answer to
    /// a `run_workload` with a barrier.
    pub fn wait(
        &mut self,
        req: &Request,
        deadline: Duration,
        interrupted: &AtomicBool,
        mut on_progress: impl FnMut(f64, &str),
    ) -> Result<Response, ConnError> {
        let want_id = match req {
            Request::RunWorkload { id, .. }
            | Request::StartStressor { id, .. }
            | Request::StopStressor { id } => Some(*id),
            _ => None,
        };
        let until = Instant::now() + deadline;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                return Err(ConnError::Interrupted);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError::Deadline(deadline));
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Err(why)) => return Err(why),
                Ok(Ok(Response::Progress {
                    id,
                    fraction,
                    message,
                })) => {
                    if Some(id) == want_id {
                        on_progress(fraction, &message);
                    }
                }
                Ok(Ok(msg)) => {
                    let id = match &msg {
                        Response::Sample { id, .. }
                        | Response::Ready { id }
                        | Response::StressorStarted { id, .. }
                        | Response::StressorStopped { id, .. } => Some(*id),
                        Response::Error { id, .. } => *id,
                        _ => None,
                    };
                    let stale = match (want_id, id) {
                        (Some(w), Some(i)) => w != i,
                        (None, Some(_)) => true,
                        (None, None) => !matches!(
                            (&msg, req),
                            (Response::Hello { .. }, Request::Hello)
                                | (Response::Fingerprint { .. }, Request::Fingerprint)
                                | (Response::Bye, Request::Shutdown)
                                | (Response::Error { .. }, _)
                        ),
                        (Some(_), None) => !matches!(msg, Response::Error { .. }),
                    };
                    if !stale {
                        return Ok(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(ConnError::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_answer_ends_the_request_with_an_error() {
        let mut text = "z".repeat(protocol::MAX_LINE + 1);
        text.push('\n');
        let mut c = AgentConn::new(
            Box::new(std::io::sink()),
            Box::new(std::io::Cursor::new(text.into_bytes())),
        );
        let err = c
            .request(
                &Request::Hello,
                Duration::from_secs(10),
                &AtomicBool::new(false),
                |_, _| {},
            )
            .unwrap_err();
        assert_eq!(err.kind(), "line_too_long", "{err}");
    }

    /// An in-process agent on a pair of pipes.
    fn pipe_agent() -> AgentConn {
        let (req_r, req_w) = std::io::pipe().unwrap();
        let (resp_r, resp_w) = std::io::pipe().unwrap();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let _ = crate::agent::serve(BufReader::new(req_r), resp_w, dir.path());
        });
        AgentConn::new(Box::new(req_w), Box::new(resp_r))
    }

    #[test]
    fn hello_and_workload_round_trip_over_pipes() {
        let mut c = pipe_agent();
        let stop = AtomicBool::new(false);
        let hello = c
            .request(&Request::Hello, Duration::from_secs(5), &stop, |_, _| {})
            .unwrap();
        assert!(matches!(hello, Response::Hello { .. }));
        let r = c
            .request(
                &Request::RunWorkload {
                    id: 9,
                    workload: "dd-zero".into(),
                    params: Default::default(),
                    duration: Some("100ms".parse().unwrap()),
                    preset: Default::default(),
                    peer: None,
                    barrier: false,
                    count: false,
                },
                Duration::from_secs(10),
                &stop,
                |_, _| {},
            )
            .unwrap();
        assert!(matches!(r, Response::Sample { id: 9, .. }), "{r:?}");
        let bye = c
            .request(&Request::Shutdown, Duration::from_secs(5), &stop, |_, _| {})
            .unwrap();
        assert_eq!(bye, Response::Bye);
    }

    #[test]
    fn console_noise_is_counted_and_an_unreadable_answer_fails_the_request() {
        let (_req_r, req_w) = std::io::pipe().unwrap();
        let (resp_r, mut resp_w) = std::io::pipe().unwrap();
        let mut c = AgentConn::new(Box::new(req_w), Box::new(resp_r));
        // Two lines of kernel noise, then a protocol line of the right version
        // whose content is not an answer.
        resp_w
            .write_all(b"[    0.1] console noise\nmore noise\n{\"v\":1,\"type\":\"nonsense\"}\n")
            .unwrap();
        let stop = AtomicBool::new(false);
        let e = c
            .request(&Request::Hello, Duration::from_secs(5), &stop, |_, _| {})
            .unwrap_err();
        assert_eq!(e.kind(), "protocol", "{e}");
        assert!(e.to_string().contains("unreadable answer"), "{e}");
        assert_eq!(c.skipped(), 2);
    }

    #[test]
    fn a_silent_agent_misses_its_deadline() {
        let (_req_r, req_w) = std::io::pipe().unwrap();
        let (resp_r, _resp_w) = std::io::pipe().unwrap();
        let mut c = AgentConn::new(Box::new(req_w), Box::new(resp_r));
        let stop = AtomicBool::new(false);
        let e = c
            .request(
                &Request::Hello,
                Duration::from_millis(200),
                &stop,
                |_, _| {},
            )
            .unwrap_err();
        assert_eq!(e.kind(), "deadline");
    }
}
