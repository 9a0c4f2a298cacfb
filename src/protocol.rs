//! The agent protocol: newline-delimited JSON over a byte stream (pipes, a serial
//! console, ssh). Every message carries the protocol version `v`. The host sends
//! [`Request`]s; the agent answers with [`Response`]s. See `docs/protocol.md`.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::units::Dur;
use crate::workloads::{Metric, Params, Preset};

/// Version of this protocol; a message with another `v` is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request from the host to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Are you there, and what can you do?
    Hello,
    /// Describe the environment the agent runs in.
    Fingerprint,
    /// Run one workload once and answer with a `sample` (or an `error`).
    RunWorkload {
        /// Request id, echoed in every answer to it.
        id: u64,
        /// Workload name.
        workload: String,
        /// Parameters from the plan.
        #[serde(default)]
        params: Params,
        /// Run time for time-based workloads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<Dur>,
        /// Quick or faithful defaults.
        #[serde(default)]
        preset: Preset,
        /// Peer address (`host:port`) for network workloads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Wait at a barrier: answer `ready`, then start only on `go` with this id
        /// (instances of the scalability and isolation steps start together).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        barrier: bool,
        /// Count the workload's operations (`count.*` metrics, see
        /// [`crate::agent::counts`]). Counting slows system calls, so the host asks
        /// for it on the first, discarded warm-up of each (target, workload) only;
        /// without it the sample carries no counts.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        count: bool,
    },
    /// Release a `run_workload` waiting at its barrier.
    Go {
        /// Id of the waiting request.
        id: u64,
        /// Start at this Unix time (seconds) by the target's clock, so that every
        /// instance wakes from its own timer at once rather than one after the other
        /// as the messages arrive; ignored when it is past or more than 5 s away
        /// (a clock that disagrees with the host's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<f64>,
    },
    /// Start a stressor in the background (isolation step); answered at once with
    /// `stressor_started` or `error`.
    StartStressor {
        /// Request id; `stop_stressor` names it.
        id: u64,
        /// Stressor kind (`cpu`, `memory`, `fork`, `disk`, `udp-send`, `udp-recv`).
        stressor: String,
        /// Bounds and parameters.
        params: crate::stressors::StressParams,
    },
    /// Stop a stressor and report what it did.
    StopStressor {
        /// Id of its `start_stressor`.
        id: u64,
    },
    /// Finish: the agent answers `bye` and exits.
    Shutdown,
}

/// An answer from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `hello`.
    Hello {
        /// virtmark version of the agent.
        version: String,
        /// Process id of the agent (as seen inside the target).
        pid: u32,
        /// Workloads this agent knows.
        workloads: Vec<String>,
    },
    /// Answer to `fingerprint`.
    Fingerprint {
        /// What the environment looks like from inside.
        fingerprint: Box<Fingerprint>,
    },
    /// A `run_workload` with `barrier` is ready and waits for `go`.
    Ready {
        /// Request id.
        id: u64,
    },
    /// A workload is under way.
    Progress {
        /// Request id.
        id: u64,
        /// Fraction done, 0 to 1.
        fraction: f64,
        /// Phase name.
        message: String,
    },
    /// One measurement.
    Sample {
        /// Request id.
        id: u64,
        /// Workload name.
        workload: String,
        /// Headline metric first.
        metrics: Vec<Metric>,
        /// How it ran.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
        /// Wall time of the whole workload execution, seconds.
        elapsed_s: f64,
        /// When the measured window started (after the workload's set-up and any
        /// barrier), Unix time in seconds as the target's clock saw it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<f64>,
        /// When the measured window ended (the workload returned), same clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended_at: Option<f64>,
    },
    /// A request failed; the agent keeps serving.
    Error {
        /// Request id, when the request had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Machine-readable kind (`bad_request`, `unknown_workload`, `unavailable`, …).
        kind: String,
        /// Human-readable message.
        message: String,
    },
    /// A stressor runs.
    StressorStarted {
        /// Request id.
        id: u64,
        /// Its process id inside the target.
        pid: u32,
    },
    /// A stressor ended (stopped, finished, or killed by the target's limits).
    StressorStopped {
        /// Request id.
        id: u64,
        /// What it reported, when it could.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<crate::stressors::StressReport>,
        /// How it ended (`exit status 0`, `killed by signal 9`: the OOM killer).
        status: String,
    },
    /// Answer to `shutdown`.
    Bye,
}

#[derive(Serialize)]
struct OutEnvelope<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Serialize one message as a protocol line (with `v`, without the newline).
pub fn encode<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(&OutEnvelope {
        v: PROTOCOL_VERSION,
        body: msg,
    })
    .expect("protocol messages always serialize")
}

/// Write one message and flush.
pub fn send<T: Serialize>(out: &mut (impl Write + ?Sized), msg: &T) -> io::Result<()> {
    let mut line = encode(msg);
    line.push('\n');
    out.write_all(line.as_bytes())?;
    out.flush()
}

/// Why a line is not a valid message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Not JSON, or not a JSON object: console noise, most likely.
    #[error("not a protocol message")]
    NotJson,
    /// A JSON object without a usable `v`.
    #[error("message has no protocol version \"v\"")]
    NoVersion,
    /// Another protocol version.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version(u64),
    /// A JSON object of the right version whose content is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// Machine-readable kind for an `error` answer.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotJson | DecodeError::NoVersion => "bad_request",
            DecodeError::Version(_) => "version_mismatch",
            DecodeError::Invalid(_) => "bad_request",
        }
    }
}

/// Parse one line into a message of type `T`, checking the version.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, DecodeError> {
    let mut value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|_| DecodeError::NotJson)?;
    let obj = value.as_object_mut().ok_or(DecodeError::NotJson)?;
    match obj.remove("v").and_then(|v| v.as_u64()) {
        None => return Err(DecodeError::NoVersion),
        Some(v) if v != u64::from(PROTOCOL_VERSION) => return Err(DecodeError::Version(v)),
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Longest protocol line either side reads (1 MiB; the largest real message, a
/// fingerprint, is a few KiB). A longer line is never held in memory: it is
/// read through and reported as [`LineTooLong`].
pub const MAX_LINE: usize = 1 << 20;

/// A line longer than [`MAX_LINE`] was read through and dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a protocol line longer than {limit} bytes ({seen} bytes before the limit was hit) was dropped"
)]
pub struct LineTooLong {
    /// The limit.
    pub limit: usize,
    /// Bytes read before the reader gave up holding them.
    pub seen: usize,
}

/// Read one line (without its newline) into `buf`, holding at most `max` bytes:
/// `Ok(false)` at end of stream, `Err` with [`LineTooLong`] inside (kind
/// `InvalidData`) when the line was longer, after which the stream is at the
/// start of the next line.
pub fn read_bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            break;
        }
    }
    if too_long {
        let seen = buf.len();
        buf.clear();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            LineTooLong { limit: max, seen },
        ));
    }
    Ok(any)
}

/// The lines of a stream, each at most [`MAX_LINE`] bytes: a longer one comes
/// as an error of kind `InvalidData` ([`LineTooLong`]) and the lines after it
/// follow. Bytes that are not UTF-8 are replaced, never an error.
pub struct BoundedLines<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    /// Wrap a buffered stream.
    pub fn new(inner: R) -> Self {
        BoundedLines {
            inner,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<io::Result<String>> {
        match read_bounded_line(&mut self.inner, &mut self.buf, MAX_LINE) {
            Ok(false) => None,
            Ok(true) => Some(Ok(String::from_utf8_lossy(&self.buf).into_owned())),
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads protocol messages from a stream, skipping and counting lines that are not
/// protocol messages (kernel log noise on a console).
pub struct Reader<R> {
    inner: R,
    line: Vec<u8>,
    /// Lines skipped because they were not protocol messages.
    pub skipped: u64,
}

impl<R: BufRead> Reader<R> {
    /// Wrap a buffered stream.
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            line: Vec::new(),
            skipped: 0,
        }
    }

    /// The next line that is meant for us, `Ok(None)` at end of stream: a message,
    /// or why a protocol line (a JSON object with a version) could not be read.
    /// Console noise (not JSON, no version) is skipped and counted. A line longer
    /// than [`MAX_LINE`] is an error of kind `InvalidData` holding
    /// [`LineTooLong`]; the reader can go on after it.
    pub fn next_checked<T: for<'de> Deserialize<'de>>(
        &mut self,
    ) -> io::Result<Option<Result<T, DecodeError>>> {
        self.next_checked_or_echo::<T, T>()
    }

    /// [`Reader::next_checked`], also skipping (and counting) a line that is
    /// not a `T` but reads as an `E`: our own message echoed back. A tty channel
    /// (UML's serial line) echoes what the host sends until the agent has made
    /// it raw, so the host may read its own `hello` request before the answer.
    pub fn next_checked_or_echo<T, E>(&mut self) -> io::Result<Option<Result<T, DecodeError>>>
    where
        T: for<'de> Deserialize<'de>,
        E: for<'de> Deserialize<'de>,
    {
        loop {
            if !read_bounded_line(&mut self.inner, &mut self.line, MAX_LINE)? {
                return Ok(None);
            }
            let Ok(text) = std::str::from_utf8(&self.line) else {
                self.skipped += 1;
                continue;
            };
            match decode(text) {
                Ok(msg) => return Ok(Some(Ok(msg))),
                Err(DecodeError::NotJson | DecodeError::NoVersion) => self.skipped += 1,
                Err(DecodeError::Invalid(_)) if decode::<E>(text).is_ok() => self.skipped += 1,
                Err(e) => return Ok(Some(Err(e))),
            }
        }
    }

    /// The next message, `Ok(None)` at end of stream. A line longer than
    /// [`MAX_LINE`] is an error of kind `InvalidData` holding [`LineTooLong`];
    /// the reader can go on after it.
    /// Protocol lines that cannot be read are skipped and counted, like noise.
    pub fn next_message<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<T>> {
        loop {
            match self.next_checked()? {
                None => return Ok(None),
                Some(Ok(msg)) => return Ok(Some(msg)),
                Some(Err(_)) => self.skipped += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_echoed_request_is_skipped_as_noise_not_read_as_a_broken_answer() {
        let hello = encode(&Request::Hello);
        let answer = encode(&Response::Hello {
            version: "1".into(),
            pid: 1,
            workloads: vec![],
        });
        let text = format!("{hello}\r\n{answer}\n");
        let mut r = Reader::new(std::io::Cursor::new(text.clone().into_bytes()));
        let got = r.next_checked_or_echo::<Response, Request>().unwrap();
        assert!(matches!(got, Some(Ok(Response::Hello { .. }))), "{got:?}");
        assert_eq!(r.skipped, 1);
        // Without the echo rule the echoed request is a broken answer.
        let mut r = Reader::new(std::io::Cursor::new(text.into_bytes()));
        assert!(matches!(
            r.next_checked::<Response>().unwrap(),
            Some(Err(DecodeError::Invalid(_)))
        ));
    }

    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = vec![
            Request::Hello,
            Request::Fingerprint,
            Request::RunWorkload {
                id: 7,
                workload: "dd-zero".into(),
                params: Params {
                    threads: Some(2),
                    ..Params::default()
                },
                duration: Some("2s".parse().unwrap()),
                preset: Preset::Faithful,
                peer: Some("127.0.0.1:9".into()),
                barrier: true,
                count: true,
            },
            Request::Go {
                id: 7,
                at: Some(1.7e9),
            },
            Request::Shutdown,
        ];
        for r in reqs {
            let line = encode(&r);
            assert!(line.contains("\"v\":1"), "{line}");
            assert_eq!(decode::<Request>(&line).unwrap(), r);
        }
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::Sample {
            id: 3,
            workload: "dd-zero".into(),
            metrics: vec![Metric::higher("throughput", "MB/s", 12.5)],
            notes: vec!["block size 512 B".into()],
            elapsed_s: 1.0,
            started_at: Some(1.7e9),
            ended_at: Some(1.7e9 + 1.0),
        };
        assert_eq!(decode::<Response>(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn malformed_lines_are_classified() {
        assert_eq!(
            decode::<Request>("[    1.234] virtio_net: eth0 up"),
            Err(DecodeError::NotJson)
        );
        assert_eq!(
            decode::<Request>(r#"{"type":"hello"}"#),
            Err(DecodeError::NoVersion)
        );
        assert_eq!(
            decode::<Request>(r#"{"v":99,"type":"hello"}"#),
            Err(DecodeError::Version(99))
        );
        assert!(matches!(
            decode::<Request>(r#"{"v":1,"type":"dance"}"#),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn reader_skips_console_noise() {
        let input = format!(
            "[ 0.1] booting\n{}\ngarbage\n{}\n",
            encode(&Response::Bye),
            encode(&Response::Bye)
        );
        let mut r = Reader::new(input.as_bytes());
        assert_eq!(r.next_message::<Response>().unwrap(), Some(Response::Bye));
        assert_eq!(r.next_message::<Response>().unwrap(), Some(Response::Bye));
        assert_eq!(r.next_message::<Response>().unwrap(), None);
        assert_eq!(r.skipped, 2);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_error_and_reading_goes_on() {
        let hello = encode(&Response::Bye);
        let mut input = String::new();
        input.push_str(&"x".repeat(MAX_LINE + 10));
        input.push('\n');
        input.push_str(&hello);
        input.push('\n');
        // A small buffer: the long line arrives in many pieces.
        let mut r = Reader::new(std::io::BufReader::with_capacity(4096, input.as_bytes()));
        let err = r.next_message::<Response>().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("longer than"), "{err}");
        assert_eq!(r.next_message::<Response>().unwrap(), Some(Response::Bye));
        assert_eq!(r.next_message::<Response>().unwrap(), None);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_read() {
        let mut buf = Vec::new();
        let text = format!("{}\nrest", "y".repeat(100));
        let mut r = text.as_bytes();
        assert!(read_bounded_line(&mut r, &mut buf, 100).unwrap());
        assert_eq!(buf.len(), 100);
        assert!(read_bounded_line(&mut r, &mut buf, 100).unwrap());
        assert_eq!(buf, b"rest");
        assert!(!read_bounded_line(&mut r, &mut buf, 100).unwrap());
    }
}
