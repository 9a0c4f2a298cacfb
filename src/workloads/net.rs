//! netperf's TCP tests against the peer (`virtmark serve`): TCP_STREAM,
//! TCP_MAERTS, TCP_SENDFILE and TCP_RR (Camargos et al.; Xu et al.'s isolation
//! clients; Felter et al.'s latency figure).
//!
//! Throughput is always taken at the receiver, as iperf3's receiver line: for
//! `net-stream` and `net-sendfile` the peer counts what it received between its
//! `OK` and the end of the stream; for `net-maerts` the client counts. Socket
//! buffers are left to the kernel's autotuning, as iperf3 does.
//!
//! Parameters read: `net-stream` and `net-maerts`: `block-size` (bytes per write,
//! default 512 KiB, four times iperf3's, so the generator is not the limit); `net-sendfile`: `size` (the file, default 64 MiB,
//! resent from its start whenever it is used up) and `block-size` (bytes per
//! sendfile(2) call, default 1 MiB); `net-rr`: none — its pinning comes from
//! [`RR_PIN_ENV`] and is recorded in the notes. All run for the context's duration.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};
use crate::peer::{self, Test};

/// netperf TCP_STREAM: the client sends, the peer receives.
pub static NET_STREAM: Workload = Workload {
    name: "net-stream",
    stands_for: "netperf TCP_STREAM (Camargos et al.)",
    class: Class::Network,
    metric: "throughput",
    unit: "Mbit/s",
    higher_is_better: true,
    needs_peer: true,
    description: "one TCP connection sending block-size writes (512 KiB) to the peer for the duration; throughput at the receiver",
    available: super::always,
    run: run_stream,
};

/// netperf TCP_MAERTS: the peer sends, the client receives.
pub static NET_MAERTS: Workload = Workload {
    name: "net-maerts",
    stands_for: "netperf TCP_MAERTS (White & Pilbeam)",
    class: Class::Network,
    metric: "throughput",
    unit: "Mbit/s",
    higher_is_better: true,
    needs_peer: true,
    description: "the peer sends block-size writes (512 KiB) for the duration; throughput at the client (receiver)",
    available: super::always,
    run: run_maerts,
};

/// netperf TCP_SENDFILE: the client sends a file with sendfile(2).
pub static NET_SENDFILE: Workload = Workload {
    name: "net-sendfile",
    stands_for: "netperf TCP_SENDFILE (White & Pilbeam)",
    class: Class::Network,
    metric: "throughput",
    unit: "Mbit/s",
    higher_is_better: true,
    needs_peer: true,
    description: "sendfile(2) of a scratch file (64 MiB, resent) to the peer for the duration; throughput at the receiver",
    available: super::always,
    run: run_sendfile,
};

/// netperf TCP_RR: one-byte request, one-byte response, both ends pinned.
pub static NET_RR: Workload = Workload {
    name: "net-rr",
    stands_for: "netperf TCP_RR (Xu et al.; Felter et al.)",
    class: Class::Network,
    metric: "transactions",
    unit: "tx/s",
    higher_is_better: true,
    needs_peer: true,
    description: "1-byte request/response over one TCP_NODELAY connection, client and peer pinned; transactions/s and latency",
    available: super::always,
    run: run_rr,
};

/// Environment variable choosing the RR pinning: `<client>,<peer>` CPU numbers,
/// `none` for no pinning, `<n>` for both on CPU `n`. Default: both on the first CPU
/// the client may use. ([`super::Params`] has no CPU field yet.)
pub const RR_PIN_ENV: &str = "VIRTMARK_NET_RR_PIN";

/// Deadline for answers from the peer (tree generation is not involved here).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

fn peer_err(addr: SocketAddr, what: &str, e: io::Error) -> WorkloadError {
    WorkloadError::Io {
        context: format!("peer {addr}: {what}"),
        source: e,
    }
}

/// Connect, send `test`'s header and return the stream and the peer's `OK` line.
pub(crate) fn open(addr: SocketAddr, test: &Test) -> Result<(TcpStream, String), WorkloadError> {
    let mut s = TcpStream::connect(addr).map_err(|e| peer_err(addr, "connecting", e))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))
        .ctx(|| "setting a read timeout".into())?;
    writeln!(s, "{test}").map_err(|e| peer_err(addr, "sending the header", e))?;
    let line = peer::read_line(&mut s).map_err(|e| peer_err(addr, "reading the answer", e))?;
    if let Some(msg) = line.strip_prefix("ERR") {
        return Err(WorkloadError::Peer(format!(
            "{addr} refused {test:?}:{msg}"
        )));
    }
    if line != "OK" && !line.starts_with("OK ") {
        return Err(WorkloadError::Peer(format!(
            "{addr} answered {line:?} instead of OK (is it virtmark serve?)"
        )));
    }
    Ok((s, line))
}

fn block_size(ctx: &Ctx, default: u64) -> Result<usize, WorkloadError> {
    let bs = ctx.params.block_size.map(|b| b.bytes()).unwrap_or(default);
    if bs == 0 || bs > 64 << 20 {
        return Err(WorkloadError::Param(format!(
            "block-size {bs} B is out of range (1 B to 64 MiB)"
        )));
    }
    Ok(bs as usize)
}

fn mbits(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

/// Read the peer's `RESULT bytes=… nanos=…` line after the client's end of stream.
fn receiver_result(s: &mut TcpStream, addr: SocketAddr) -> Result<(u64, f64), WorkloadError> {
    let line = peer::read_line(s).map_err(|e| peer_err(addr, "reading the result", e))?;
    let bytes = peer::answer_field::<u64>(&line, "bytes");
    let nanos = peer::answer_field::<u64>(&line, "nanos");
    match (line.starts_with("RESULT "), bytes, nanos) {
        (true, Some(b), Some(n)) if n > 0 => Ok((b, n as f64 / 1e9)),
        _ => Err(WorkloadError::Peer(format!(
            "{addr} sent {line:?} instead of RESULT bytes=… nanos=…"
        ))),
    }
}

fn throughput_outcome(
    bytes: u64,
    secs: f64,
    sent: u64,
    notes: Vec<String>,
) -> Result<Outcome, WorkloadError> {
    if bytes == 0 {
        return Err(WorkloadError::Failed("the receiver got no data".into()));
    }
    let mut notes = notes;
    notes.push(format!(
        "receiver: {bytes} B in {secs:.3} s; sender wrote {sent} B"
    ));
    Ok(Outcome {
        metrics: vec![Metric::higher("throughput", "Mbit/s", mbits(bytes, secs))],
        notes,
    })
}

fn run_stream(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let bs = block_size(ctx, peer::DEFAULT_BLOCK as u64)?;
    let buf = peer::pattern(bs);
    let (mut s, _) = open(addr, &Test::Stream)?;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < ctx.duration {
        s.write_all(&buf)
            .map_err(|e| peer_err(addr, "sending", e))?;
        sent += bs as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| peer_err(addr, "closing the write side", e))?;
    let (bytes, secs) = receiver_result(&mut s, addr)?;
    throughput_outcome(bytes, secs, sent, vec![format!("write size {bs} B")])
}

fn run_maerts(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let bs = block_size(ctx, peer::DEFAULT_BLOCK as u64)?;
    let test = Test::Maerts {
        secs: ctx.duration.as_secs_f64(),
        bs,
    };
    let (mut s, _) = open(addr, &test)?;
    let mut buf = vec![0u8; peer::DEFAULT_BLOCK];
    let start = Instant::now();
    let bytes = peer::receive_to_end(&mut s, &mut buf, ANSWER_TIMEOUT)
        .map_err(|e| peer_err(addr, "receiving", e))?;
    let secs = start.elapsed().as_secs_f64();
    throughput_outcome(bytes, secs, bytes, vec![format!("peer write size {bs} B")])
}

fn run_sendfile(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let size = ctx.params.size.map(|b| b.bytes()).unwrap_or(64 << 20);
    if size == 0 {
        return Err(WorkloadError::Param("size must be at least 1 byte".into()));
    }
    // Chunk per sendfile call: large enough to amortize the call, small enough to
    // check the clock often.
    let chunk = block_size(ctx, 1 << 20)?;
    // Set-up, outside the timed region: the file, written once (page-cached).
    (ctx.progress)(0.0, "writing the file to send");
    let path = ctx.scratch.join("sendfile.dat");
    {
        let mut f = File::create(&path).ctx(|| format!("creating {}", path.display()))?;
        let block = peer::pattern(1 << 20);
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])
                .ctx(|| format!("writing {}", path.display()))?;
            left -= n as u64;
        }
    }
    let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
    let (mut s, _) = open(addr, &Test::Stream)?;
    (ctx.progress)(0.0, "sending");
    let start = Instant::now();
    let mut sent = 0u64;
    let mut offset: i64 = 0;
    while start.elapsed() < ctx.duration {
        if offset as u64 >= size {
            offset = 0;
        }
        let want = ((size - offset as u64) as usize).min(chunk);
        match nix::sys::sendfile::sendfile(s.as_fd(), file.as_fd(), Some(&mut offset), want) {
            Ok(0) => {
                return Err(WorkloadError::Failed(format!(
                    "sendfile sent nothing at offset {offset} of {size}"
                )))
            }
            Ok(n) => sent += n as u64,
            Err(nix::errno::Errno::EINTR) => {}
            // gVisor's host network mode answers EAGAIN on a full send buffer even
            // for a blocking socket: wait until it can take more, then go on.
            Err(nix::errno::Errno::EAGAIN) => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::from(100u8)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(peer_err(addr, "poll", io::Error::from(e))),
                }
            }
            Err(e) => return Err(peer_err(addr, "sendfile", io::Error::from(e))),
        }
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| peer_err(addr, "closing the write side", e))?;
    let (bytes, secs) = receiver_result(&mut s, addr)?;
    throughput_outcome(
        bytes,
        secs,
        sent,
        vec![format!("file {size} B, sendfile chunk {chunk} B")],
    )
}

/// Where each end of the RR test is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pinning {
    client: Option<usize>,
    peer: Option<usize>,
}

/// Parse [`RR_PIN_ENV`]: `none`, `<n>` or `<client>,<peer>` (each a CPU or `none`).
pub(crate) fn parse_pinning(s: &str) -> Result<Pinning, String> {
    let one = |w: &str| -> Result<Option<usize>, String> {
        let w = w.trim();
        if w == "none" {
            return Ok(None);
        }
        w.parse::<usize>()
            .map(Some)
            .map_err(|_| format!("{RR_PIN_ENV}={s:?}: {w:?} is not a CPU number or none"))
    };
    match s.split_once(',') {
        None => {
            let c = one(s)?;
            Ok(Pinning { client: c, peer: c })
        }
        Some((a, b)) => Ok(Pinning {
            client: one(a)?,
            peer: one(b)?,
        }),
    }
}

fn rr_pinning() -> Result<Pinning, WorkloadError> {
    match std::env::var(RR_PIN_ENV) {
        Ok(v) => parse_pinning(&v).map_err(WorkloadError::Param),
        Err(_) => {
            let first = peer::allowed_cpus().first().copied();
            Ok(Pinning {
                client: first,
                peer: first,
            })
        }
    }
}

fn run_rr(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let pin = rr_pinning()?;
    let duration = ctx.duration;
    // Pin a dedicated thread, so that the caller's affinity is left as it was.
    std::thread::scope(|scope| {
        scope
            .spawn(move || rr_thread(duration, addr, pin))
            .join()
            .unwrap_or_else(|_| Err(WorkloadError::Failed("the RR thread panicked".into())))
    })
}

fn rr_thread(duration: Duration, addr: SocketAddr, pin: Pinning) -> Result<Outcome, WorkloadError> {
    let mut notes = Vec::new();
    match pin.client {
        Some(c) => {
            peer::pin_current_thread(c).map_err(WorkloadError::Param)?;
            notes.push(format!("client pinned to cpu {c}"));
        }
        None => notes.push("client not pinned".into()),
    }
    let test = Test::Rr {
        req: 1,
        resp: 1,
        cpu: pin.peer,
    };
    let (mut s, ok) = open(addr, &test)?;
    match peer::answer_field::<usize>(&ok, "cpu") {
        Some(c) => notes.push(format!("peer pinned to cpu {c}")),
        None if pin.peer.is_some() => notes.push(format!(
            "peer could not pin to cpu {} ({ok})",
            pin.peer.unwrap_or_default()
        )),
        None => notes.push("peer not pinned".into()),
    }
    s.set_nodelay(true).ctx(|| "setting TCP_NODELAY".into())?;
    let mut hist = Histogram::new();
    let req = [b'q'; 1];
    let mut resp = [0u8; 1];
    let start = Instant::now();
    let mut last = start;
    let end = start + duration;
    loop {
        s.write_all(&req)
            .map_err(|e| peer_err(addr, "sending a request", e))?;
        s.read_exact(&mut resp)
            .map_err(|e| peer_err(addr, "reading a response", e))?;
        let now = Instant::now();
        hist.record((now - last).as_nanos() as u64);
        last = now;
        if now >= end {
            break;
        }
    }
    let secs = (last - start).as_secs_f64();
    drop(s);
    let n = hist.count();
    notes.push(format!(
        "{n} transactions in {secs:.3} s, 1-byte request and response"
    ));
    Ok(Outcome {
        metrics: vec![
            Metric::higher("transactions", "tx/s", n as f64 / secs),
            Metric::lower("mean_latency", "us", hist.mean() / 1e3),
            Metric::lower("p99_latency", "us", hist.quantile(0.99) as f64 / 1e3),
            // Its own exact count, for where no system-call counter opens
            // (crate::agent::counts::merge): one `write` (write_all of one byte)
            // and one `recv` (read_exact of one byte) per transaction.
            Metric::lower(
                &format!("{}syscalls", crate::agent::counts::PREFIX),
                "per tx",
                RR_SYSCALLS_PER_TX,
            ),
        ],
        notes,
    })
}

/// System calls net-rr's client makes per transaction: a `write` and a `recv`.
const RR_SYSCALLS_PER_TX: f64 = 2.0;

/// Log-linear latency histogram in nanoseconds: exact below 32 ns, then 32
/// sub-buckets per power of two (relative error under 3.2%), as HdrHistogram with
/// 5 significant bits. Fixed size, no allocation while recording.
pub(crate) struct Histogram {
    buckets: Box<[u64; Histogram::LEN]>,
    count: u64,
    sum: u128,
}

impl Histogram {
    const SUB: u32 = 5;
    const LEN: usize = (1 << Self::SUB) * (64 - Self::SUB as usize + 1);

    pub(crate) fn new() -> Self {
        Histogram {
            buckets: Box::new([0; Self::LEN]),
            count: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        let sub = 1u64 << Self::SUB;
        if v < sub {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB
        let shift = e - Self::SUB;
        let mantissa = (v >> shift) - sub; // in [0, 32)
        (sub as usize) * (shift as usize + 1) + mantissa as usize
    }

    /// Smallest value that falls in bucket `i`.
    fn lower_bound(i: usize) -> u64 {
        let sub = 1usize << Self::SUB;
        if i < sub {
            return i as u64;
        }
        let shift = i / sub - 1;
        let mantissa = (i % sub + sub) as u64;
        mantissa << shift
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.sum += v as u128;
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (the midpoint of its bucket).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let lo = Self::lower_bound(i);
                let hi = if i + 1 < Self::LEN {
                    Self::lower_bound(i + 1)
                } else {
                    u64::MAX
                };
                return lo + (hi - lo) / 2;
            }
        }
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    fn peer() -> SocketAddr {
        peer::Peer::bind("127.0.0.1:0").unwrap().spawn().unwrap()
    }

    #[test]
    fn histogram_buckets_by_hand() {
        assert_eq!(Histogram::index(0), 0);
        assert_eq!(Histogram::index(31), 31);
        assert_eq!(Histogram::index(32), 32);
        assert_eq!(Histogram::index(63), 63);
        assert_eq!(Histogram::index(64), 64); // [64, 66)
        assert_eq!(Histogram::index(65), 64);
        assert_eq!(Histogram::index(66), 65);
        assert_eq!(Histogram::lower_bound(64), 64);
        assert_eq!(Histogram::lower_bound(65), 66);
        assert_eq!(Histogram::lower_bound(96), 128);
        assert_eq!(Histogram::index(u64::MAX), Histogram::LEN - 1);
        for v in [1u64, 33, 100, 1000, 14_000, 60_000, 1 << 40] {
            let i = Histogram::index(v);
            assert!(Histogram::lower_bound(i) <= v && v < Histogram::lower_bound(i + 1));
        }
    }

    #[test]
    fn histogram_quantiles_and_mean() {
        let mut h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 100);
        assert!((h.mean() - 50_500.0).abs() < 1e-9);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.04, "{p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.04, "{p99}");
    }

    #[test]
    fn pinning_parses() {
        assert_eq!(
            parse_pinning("1"),
            Ok(Pinning {
                client: Some(1),
                peer: Some(1)
            })
        );
        assert_eq!(
            parse_pinning("0,1"),
            Ok(Pinning {
                client: Some(0),
                peer: Some(1)
            })
        );
        assert_eq!(
            parse_pinning("none"),
            Ok(Pinning {
                client: None,
                peer: None
            })
        );
        assert!(parse_pinning("x").is_err());
    }

    #[test]
    fn stream_measures_at_the_receiver() {
        let out = run_briefly(&NET_STREAM, Params::default(), Some(peer()));
        assert!(out.metrics[0].value > 10.0);
    }

    #[test]
    fn maerts_receives() {
        run_briefly(&NET_MAERTS, Params::default(), Some(peer()));
    }

    #[test]
    fn sendfile_sends_a_file() {
        let p = Params {
            size: Some(crate::units::ByteSize::mib(4)),
            ..Params::default()
        };
        run_briefly(&NET_SENDFILE, p, Some(peer()));
    }

    #[test]
    fn rr_counts_transactions_and_latency() {
        let out = run_briefly(&NET_RR, Params::default(), Some(peer()));
        let names: Vec<&str> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "transactions",
                "mean_latency",
                "p99_latency",
                "count.syscalls"
            ]
        );
        // Its own count: one write and one recv per transaction.
        assert_eq!(out.metrics[3].value, 2.0);
        assert!(out.notes.iter().any(|n| n.contains("pinned")));
    }

    #[test]
    fn without_a_peer_it_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let params = Params::default();
        let ctx = Ctx {
            preset: crate::workloads::Preset::Quick,
            duration: Duration::from_millis(10),
            params: &params,
            scratch: dir.path(),
            peer: None,
            progress: &|_, _| {},
            begin: &|| Ok(()),
        };
        assert!(matches!(run_stream(&ctx), Err(WorkloadError::NoPeer)));
    }
}
