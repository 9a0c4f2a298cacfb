//! `virtmark serve`: the host-side end of the network workloads, what `netserver`
//! is to netperf and an rsync daemon is to rsync.
//!
//! The peer listens on one TCP address, prints exactly one line on stdout when it is
//! ready — `listening <addr:port>` — and serves every connection on its own thread
//! until it is killed (SIGTERM and SIGINT exit with status 0) or, with
//! `--exit-on-eof`, until its standard input reaches end of file (so that the death
//! of the orchestrator that started it stops it too).
//!
//! # Protocol (version 1)
//!
//! Every connection starts with one header line from the client, ASCII, at most
//! [`MAX_HEADER`] bytes, ending in `\n`:
//!
//! ```text
//! VMPEER1 <TEST> [key=value ...]
//! ```
//!
//! The peer answers with one line: `OK [key=value ...]` when it accepted the test
//! (and is ready: any set-up such as generating a file tree is done before `OK`, so
//! that a client may start its clock when it reads it), or `ERR <message>` followed
//! by closing the connection when it refused it (unknown version, unknown test,
//! missing, unknown or out-of-range parameter). Keys may come in any order; every
//! key a test accepts is listed below, with its default.
//!
//! | test | parameters | after `OK` |
//! | --- | --- | --- |
//! | `STREAM` | — | the client sends bytes and then shuts down its write side; the peer counts what it received and answers `RESULT bytes=<n> nanos=<t>`, `t` being the time from its `OK` to the end of file (netperf TCP_STREAM, TCP_SENDFILE; iperf3's receiver figure) |
//! | `MAERTS` | `secs=<f64>` (1), `bs=<bytes>` (524288) | the peer sends `bs`-byte writes for `secs` seconds, then shuts down its write side (netperf TCP_MAERTS) |
//! | `RR` | `req=<bytes>` (1), `resp=<bytes>` (1), `cpu=<n>\|none` (none) | the peer pins its serving thread to CPU `n` (`OK cpu=<n>` or `OK cpu=none` when it could not or was not asked), then for every `req` bytes it reads answers `resp` bytes, until end of file (netperf TCP_RR) |
//! | `TREE` | `files=<n>`, `bytes=<n>`, `seed=<u64>` (1), `cpu=<n>\|none` (none) | the peer pins its sending thread to CPU `n` if asked, then sends a deterministic kernel-like file tree of `files` files and `bytes` bytes of data in [tree frames](#tree-frames), then closes (`OK files=<n> bytes=<n> dirs=<n> cpu=<n>\|none`) |
//! | `FILE` | `bytes=<n>`, `seed=<u64>` (1), `cpu=<n>\|none` (none) | as `TREE` with one file named `image.iso` |
//!
//! | `UDP-DISCARD` | — | the peer opens a UDP port on its address that swallows datagrams (`OK port=<n>`) until the client closes this connection (the isolation step's `udp-send` stressor) |
//! | `UDP-FLOOD` | `port=<n>`, `size=<bytes>` (61440), `secs=<f64>` (1) | the peer sends `size`-byte datagrams as fast as it can toward the client's address (the one this connection comes from) at UDP `port`, with 4 threads, for `secs` or until the client closes this connection (the `udp-recv` stressor) |
//!
//! UDP traffic only ever goes to the address a client connected from, so it stays
//! on loopback or inside virtmark's own namespaces, like every TCP test.
//!
//! ## Tree frames
//!
//! A sequence of frames, each a 19-byte little-endian header — kind `u8` (`D`
//! directory, `F` file, `E` end of tree), path length `u16`, mode `u32` (permission
//! bits), size `u64`, CRC-32 (IEEE) of the data `u32` — followed by the path (UTF-8,
//! relative, `/`-separated, never `..`) and, for a file, `size` bytes of data. A
//! directory comes before anything inside it. The last frame is `E` with an empty
//! path and zero size.

pub mod tree;

use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;

/// First word of every header line: protocol name and version.
pub const MAGIC: &str = "VMPEER1";

/// Longest header or answer line accepted, newline included.
pub const MAX_HEADER: usize = 1024;

/// Default write size of `STREAM` / `MAERTS` senders, and the read size of their
/// receivers ([`receive_to_end`]): 512 KiB. Four times iperf3's 128 KiB: fewer system
/// calls per byte, so the generator is not what limits a stream (on loopback,
/// `scripts/bench-peers.sh net`, 2026-12-02: 31.5 Gbit/s against iperf3's 25.2).
pub const DEFAULT_BLOCK: usize = 512 << 10;

/// Size of a tree frame header.
pub const FRAME_HEADER: usize = 19;
/// Frame kind: a directory.
pub const FRAME_DIR: u8 = b'D';
/// Frame kind: a regular file followed by its data.
pub const FRAME_FILE: u8 = b'F';
/// Frame kind: end of the tree.
pub const FRAME_END: u8 = b'E';

/// How long the peer waits for a header line.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the peer waits for data from a client in the middle of a test.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest `bs` / `req` / `resp` accepted.
const MAX_BLOCK: u64 = 64 << 20;
/// Largest `secs` accepted.
const MAX_SECS: f64 = 24.0 * 3600.0;
/// Largest tree or file the peer agrees to hold in memory.
pub const MAX_TREE_BYTES: u64 = 8 << 30;
/// Most files in a tree.
pub const MAX_TREE_FILES: u64 = 10_000_000;

/// One test a client asks the peer for: the parsed header line.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Receive until end of file and report bytes and time.
    Stream,
    /// Send `bs`-byte writes for `secs` seconds.
    Maerts {
        /// How long to send.
        secs: f64,
        /// Size of one write.
        bs: usize,
    },
    /// Request/response: answer `resp` bytes for every `req` bytes.
    Rr {
        /// Request size.
        req: usize,
        /// Response size.
        resp: usize,
        /// CPU to pin the serving thread to.
        cpu: Option<usize>,
    },
    /// A generated file tree.
    Tree {
        /// Number of files.
        files: u64,
        /// Total data bytes.
        bytes: u64,
        /// Generator seed.
        seed: u64,
        /// CPU to pin the sending thread to.
        cpu: Option<usize>,
    },
    /// One generated file.
    File {
        /// File size.
        bytes: u64,
        /// Generator seed.
        seed: u64,
        /// CPU to pin the sending thread to.
        cpu: Option<usize>,
    },
    /// A UDP port that swallows datagrams while the connection stays open.
    UdpDiscard,
    /// Datagrams toward the client's UDP `port`.
    UdpFlood {
        /// The client's UDP port.
        port: u16,
        /// Datagram size.
        size: usize,
        /// Longest flood, seconds.
        secs: f64,
    },
}

impl fmt::Display for Test {
    /// The header line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MAGIC} ")?;
        match self {
            Test::Stream => write!(f, "STREAM"),
            Test::Maerts { secs, bs } => write!(f, "MAERTS secs={secs} bs={bs}"),
            Test::Rr { req, resp, cpu } => {
                write!(f, "RR req={req} resp={resp} cpu={}", CpuWord(*cpu))
            }
            Test::Tree {
                files,
                bytes,
                seed,
                cpu,
            } => {
                write!(f, "TREE files={files} bytes={bytes} seed={seed}")?;
                cpu.map_or(Ok(()), |c| write!(f, " cpu={c}"))
            }
            Test::File { bytes, seed, cpu } => {
                write!(f, "FILE bytes={bytes} seed={seed}")?;
                cpu.map_or(Ok(()), |c| write!(f, " cpu={c}"))
            }
            Test::UdpDiscard => write!(f, "UDP-DISCARD"),
            Test::UdpFlood { port, size, secs } => {
                write!(f, "UDP-FLOOD port={port} size={size} secs={secs}")
            }
        }
    }
}

/// A CPU as the headers and answers write it: its number, or `none`.
struct CpuWord(Option<usize>);

impl fmt::Display for CpuWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("none"),
        }
    }
}

/// Parse one header line (with or without its newline).
pub fn parse_header(line: &str) -> Result<Test, String> {
    let mut words = line.split_ascii_whitespace();
    match words.next() {
        Some(MAGIC) => {}
        Some(other) => {
            return Err(format!(
                "unsupported protocol {other:?} (this peer speaks {MAGIC})"
            ))
        }
        None => return Err("empty header".into()),
    }
    let Some(test) = words.next() else {
        return Err("header names no test".into());
    };
    let mut kv: Vec<(&str, &str)> = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("parameter {w:?} is not key=value"));
        };
        if kv.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("parameter {k:?} given twice"));
        }
        kv.push((k, v));
    }
    let allowed: &[&str] = match test {
        "STREAM" => &[],
        "MAERTS" => &["secs", "bs"],
        "RR" => &["req", "resp", "cpu"],
        "TREE" => &["files", "bytes", "seed", "cpu"],
        "FILE" => &["bytes", "seed", "cpu"],
        "UDP-DISCARD" => &[],
        "UDP-FLOOD" => &["port", "size", "secs"],
        other => {
            return Err(format!(
                "unknown test {other:?} (known: STREAM, MAERTS, RR, TREE, FILE, UDP-DISCARD, UDP-FLOOD)"
            ))
        }
    };
    if let Some((k, _)) = kv.iter().find(|(k, _)| !allowed.contains(k)) {
        return Err(format!(
            "{test} takes no parameter {k:?} (accepted: {})",
            allowed.join(", ")
        ));
    }
    let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let num = |k: &str, default: Option<u64>, max: u64| -> Result<u64, String> {
        match get(k) {
            None => default.ok_or_else(|| format!("{test} needs {k}=")),
            Some(v) => match u64::from_str(v) {
                Ok(n) if n <= max => Ok(n),
                Ok(n) => Err(format!("{k}={n} is larger than {max}")),
                Err(_) => Err(format!("{k}={v:?} is not a non-negative integer")),
            },
        }
    };
    let positive = |k: &str, default: Option<u64>, max: u64| -> Result<u64, String> {
        let n = num(k, default, max)?;
        if n == 0 {
            return Err(format!("{k} must be at least 1"));
        }
        Ok(n)
    };
    // The CPU to pin the serving thread to: absent or `none` for no pinning.
    let cpu = || -> Result<Option<usize>, String> {
        match get("cpu") {
            None | Some("none") => Ok(None),
            Some(_) => Ok(Some(num("cpu", None, 1 << 16)? as usize)),
        }
    };
    Ok(match test {
        "STREAM" => Test::Stream,
        "MAERTS" => {
            let secs = match get("secs") {
                None => 1.0,
                Some(v) => match f64::from_str(v) {
                    Ok(s) if s > 0.0 && s <= MAX_SECS => s,
                    _ => return Err(format!("secs={v:?} is not a duration in (0, {MAX_SECS}]")),
                },
            };
            let bs = positive("bs", Some(DEFAULT_BLOCK as u64), MAX_BLOCK)? as usize;
            Test::Maerts { secs, bs }
        }
        "RR" => {
            let req = positive("req", Some(1), MAX_BLOCK)? as usize;
            let resp = positive("resp", Some(1), MAX_BLOCK)? as usize;
            Test::Rr {
                req,
                resp,
                cpu: cpu()?,
            }
        }
        "TREE" => Test::Tree {
            files: positive("files", None, MAX_TREE_FILES)?,
            bytes: num("bytes", None, MAX_TREE_BYTES)?,
            seed: num("seed", Some(1), u64::MAX)?,
            cpu: cpu()?,
        },
        "FILE" => Test::File {
            bytes: num("bytes", None, MAX_TREE_BYTES)?,
            seed: num("seed", Some(1), u64::MAX)?,
            cpu: cpu()?,
        },
        "UDP-DISCARD" => Test::UdpDiscard,
        "UDP-FLOOD" => Test::UdpFlood {
            port: positive("port", None, 65535)? as u16,
            size: positive("size", Some(61440), 65507)? as usize,
            secs: match get("secs") {
                None => 1.0,
                Some(v) => match f64::from_str(v) {
                    Ok(s) if s > 0.0 && s <= MAX_SECS => s,
                    _ => return Err(format!("secs={v:?} is not a duration in (0, {MAX_SECS}]")),
                },
            },
        },
        _ => unreachable!("test names were checked above"),
    })
}

/// Read one `\n`-terminated line of at most [`MAX_HEADER`] bytes, one byte at a time,
/// so that nothing after the line is consumed from the stream. Returns the line
/// without its newline.
pub fn read_line(r: &mut impl Read) -> io::Result<String> {
    let mut line = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of the line",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if byte[0] == b'\n' {
            break;
        }
        if line.len() >= MAX_HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {MAX_HEADER} bytes"),
            ));
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

/// Find `key=` in an answer line such as `RESULT bytes=1 nanos=2` and parse its value.
pub fn answer_field<T: FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// A bound listening socket, ready to serve.
pub struct Peer {
    listener: TcpListener,
}

impl Peer {
    /// Bind to `addr` (`127.0.0.1:0` picks a free port).
    pub fn bind(addr: impl std::net::ToSocketAddrs) -> io::Result<Peer> {
        Ok(Peer {
            listener: TcpListener::bind(addr)?,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections forever, one thread each.
    pub fn serve(self) -> io::Result<()> {
        loop {
            let (stream, from) = match self.listener.accept() {
                Ok(x) => x,
                // A client that gave up between SYN and accept is not our failure.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("peer-{from}"))
                .spawn(move || {
                    if let Err(e) = handle(stream) {
                        if !quiet_error(&e) {
                            eprintln!("virtmark serve: {from}: {e}");
                        }
                    }
                });
            if let Err(e) = spawned {
                eprintln!("virtmark serve: {from}: cannot start a thread: {e}");
            }
        }
    }

    /// Serve on a background thread (for tests and in-process use); returns the
    /// address. The thread lives as long as the process.
    pub fn spawn(self) -> io::Result<SocketAddr> {
        let addr = self.local_addr()?;
        std::thread::Builder::new()
            .name("peer-accept".into())
            .spawn(move || {
                if let Err(e) = self.serve() {
                    eprintln!("virtmark serve: accept: {e}");
                }
            })?;
        Ok(addr)
    }
}

/// A client that hangs up mid-test is normal (the test is over for it).
fn quiet_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
    )
}

/// Serve one connection: read the header, run the test.
fn handle(mut s: TcpStream) -> io::Result<()> {
    // A client that connects and says nothing, or stalls mid-test, must not hold a
    // thread for ever.
    s.set_read_timeout(Some(HEADER_TIMEOUT))?;
    let line = read_line(&mut s)?;
    s.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let test = match parse_header(&line) {
        Ok(t) => t,
        Err(msg) => {
            let _ = writeln!(s, "ERR {msg}");
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
    };
    match test {
        Test::Stream => serve_stream(s),
        Test::Maerts { secs, bs } => serve_maerts(s, secs, bs),
        Test::Rr { req, resp, cpu } => serve_rr(s, req, resp, cpu),
        Test::Tree {
            files,
            bytes,
            seed,
            cpu,
        } => {
            let t = tree::cached(tree::Spec::Tree { files, bytes, seed });
            serve_tree(s, &t, cpu)
        }
        Test::File { bytes, seed, cpu } => {
            let t = tree::cached(tree::Spec::File { bytes, seed });
            serve_tree(s, &t, cpu)
        }
        Test::UdpDiscard => serve_udp_discard(s),
        Test::UdpFlood { port, size, secs } => serve_udp_flood(s, port, size, secs),
    }
}

/// Wait until the client closes the control connection (or sends anything).
fn wait_for_close(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    let _ = s.read(&mut b);
}

fn serve_udp_discard(mut s: TcpStream) -> io::Result<()> {
    let sock = std::net::UdpSocket::bind(SocketAddr::new(s.local_addr()?.ip(), 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    writeln!(s, "OK port={}", sock.local_addr()?.port())?;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut buf = vec![0u8; 65536];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        });
        wait_for_close(&mut s);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    Ok(())
}

fn serve_udp_flood(mut s: TcpStream, port: u16, size: usize, secs: f64) -> io::Result<()> {
    // Only toward the address this client connected from.
    let to = SocketAddr::new(s.peer_addr()?.ip(), port);
    let local = SocketAddr::new(s.local_addr()?.ip(), 0);
    writeln!(s, "OK port={port} size={size}")?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| -> io::Result<()> {
        for _ in 0..4 {
            let sock = std::net::UdpSocket::bind(local)?;
            sock.connect(to)?;
            let done = &done;
            sc.spawn(move || {
                let buf = vec![0x5au8; size];
                while !done.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                    // ECONNREFUSED (ICMP port unreachable) and ENOBUFS are part of flooding.
                    let _ = sock.send(&buf);
                }
            });
        }
        s.set_read_timeout(Some(Duration::from_secs_f64(secs)))?;
        wait_for_close(&mut s);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })
}

/// Read `s` to its end of stream as iperf3's receiver does, and return the bytes
/// read: into `buf` (the caller's, allocated before its clock starts; [`DEFAULT_BLOCK`]
/// bytes as iperf3 reads its block size), reused, each read non-blocking and made
/// after `poll` says data is there; the kernel's autotuning sizes the socket
/// buffers. Fails with `TimedOut` when nothing arrives for `idle`.
///
/// Non-blocking, because a blocking `recv` that finds the sender's packets waiting
/// in the socket's backlog processes them itself before it returns, while the
/// sender, on the other CPU, waits for the socket: on loopback with two CPUs, a C
/// receiver got 13.5–17.0 Gbit/s in ten 1 s runs blocking and 24.4–35.5
/// non-blocking, and virtmark's went from below `iperf3 -l 512K` to above it
/// (docs/workloads.md, "Steady samples").
pub fn receive_to_end(s: &mut TcpStream, buf: &mut [u8], idle: Duration) -> io::Result<u64> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let timeout = PollTimeout::try_from(idle).unwrap_or(PollTimeout::MAX);
    let mut bytes = 0u64;
    s.set_nonblocking(true)?;
    let read = loop {
        match s.read(buf) {
            Ok(0) => break Ok(bytes),
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match poll(&mut [PollFd::new(s.as_fd(), PollFlags::POLLIN)], timeout) {
                    Ok(0) => {
                        break Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("nothing received for {idle:?}"),
                        ))
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => break Err(e.into()),
                }
            }
            Err(e) => break Err(e),
        }
    };
    s.set_nonblocking(false)?;
    read
}

fn serve_stream(mut s: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; DEFAULT_BLOCK];
    s.write_all(b"OK\n")?;
    let start = Instant::now();
    let bytes = receive_to_end(&mut s, &mut buf, IDLE_TIMEOUT)?;
    let nanos = start.elapsed().as_nanos();
    writeln!(s, "RESULT bytes={bytes} nanos={nanos}")?;
    Ok(())
}

fn serve_maerts(mut s: TcpStream, secs: f64, bs: usize) -> io::Result<()> {
    let buf = pattern(bs);
    let dur = Duration::from_secs_f64(secs);
    s.write_all(b"OK\n")?;
    let start = Instant::now();
    while start.elapsed() < dur {
        s.write_all(&buf)?;
    }
    s.shutdown(Shutdown::Write)?;
    // Wait for the client to close, so that it sees every byte before a reset.
    let mut sink = [0u8; 64];
    while s.read(&mut sink)? > 0 {}
    Ok(())
}

fn serve_rr(mut s: TcpStream, req: usize, resp: usize, cpu: Option<usize>) -> io::Result<()> {
    s.set_nodelay(true)?;
    let pinned = cpu.filter(|&c| pin_current_thread(c).is_ok());
    writeln!(s, "OK cpu={}", CpuWord(pinned))?;
    let mut rbuf = vec![0u8; req];
    let wbuf = pattern(resp);
    loop {
        // Read one whole request; end of file between requests ends the test.
        let mut got = 0;
        while got < req {
            match s.read(&mut rbuf[got..]) {
                Ok(0) if got == 0 => return Ok(()),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a request",
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        s.write_all(&wbuf)?;
    }
}

fn serve_tree(s: TcpStream, t: &tree::Tree, cpu: Option<usize>) -> io::Result<()> {
    // Before `OK`: the client starts its clock when it reads it.
    let pinned = cpu.filter(|&c| pin_current_thread(c).is_ok());
    std::hint::black_box(t.warm());
    let mut w = BufWriter::with_capacity(256 << 10, s);
    writeln!(
        w,
        "OK files={} bytes={} dirs={} cpu={}",
        t.files(),
        t.total_bytes(),
        t.dirs(),
        CpuWord(pinned)
    )?;
    for e in t.entries() {
        let data = t.data(e);
        let mut h = [0u8; FRAME_HEADER];
        h[0] = e.kind;
        h[1..3].copy_from_slice(&(e.path.len() as u16).to_le_bytes());
        h[3..7].copy_from_slice(&e.mode.to_le_bytes());
        h[7..15].copy_from_slice(&(data.len() as u64).to_le_bytes());
        h[15..19].copy_from_slice(&e.crc.to_le_bytes());
        w.write_all(&h)?;
        w.write_all(e.path.as_bytes())?;
        w.write_all(data)?;
    }
    let mut end = [0u8; FRAME_HEADER];
    end[0] = FRAME_END;
    w.write_all(&end)?;
    let mut s = w.into_inner().map_err(|e| e.into_error())?;
    s.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 64];
    while s.read(&mut sink)? > 0 {}
    Ok(())
}

/// A non-zero, non-repeating-per-page byte pattern of `n` bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fastrand::Rng::with_seed(0x766d_7065_6572).fill(&mut v);
    v
}

/// Pin the calling thread to CPU `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
    // Pid 0 is the calling thread for sched_setaffinity(2).
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("pinning to cpu {cpu}: {e}"))
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `virtmark serve`: bind, announce, serve until SIGTERM/SIGINT (exit 0) or, with
/// `exit_on_eof`, the end of standard input.
pub fn run_cli(listen: &str, exit_on_eof: bool) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Block the exit signals in every thread (threads inherit the mask) and take them
    // synchronously on this one, so that they end the process cleanly.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("blocking SIGTERM and SIGINT")?;
    let peer = Peer::bind(listen).with_context(|| format!("binding {listen}"))?;
    let addr = peer.local_addr().context("reading the bound address")?;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    {
        let tx = done_tx.clone();
        std::thread::Builder::new()
            .name("peer-accept".into())
            .spawn(move || {
                let r = peer.serve().context("accepting connections");
                let _ = tx.send(r);
            })
            .context("starting the accept thread")?;
    }
    {
        let tx = done_tx.clone();
        std::thread::Builder::new()
            .name("peer-signals".into())
            .spawn(move || {
                let _ = signals.wait();
                let _ = tx.send(Ok(()));
            })
            .context("starting the signal thread")?;
    }
    if exit_on_eof {
        let tx = done_tx.clone();
        std::thread::Builder::new()
            .name("peer-stdin".into())
            .spawn(move || {
                let mut sink = [0u8; 512];
                let mut stdin = io::stdin().lock();
                loop {
                    match stdin.read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Ok(()));
            })
            .context("starting the stdin thread")?;
    }
    drop(done_tx);
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening {addr}").context("writing the ready line")?;
        out.flush().context("flushing the ready line")?;
    }
    match done_rx.recv() {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let tests = [
            Test::Stream,
            Test::Maerts {
                secs: 2.5,
                bs: 65536,
            },
            Test::Rr {
                req: 1,
                resp: 1,
                cpu: Some(0),
            },
            Test::Rr {
                req: 100,
                resp: 200,
                cpu: None,
            },
            Test::Tree {
                files: 2000,
                bytes: 25_000_000,
                seed: 7,
                cpu: None,
            },
            Test::Tree {
                files: 8000,
                bytes: 100_000_000,
                seed: 1,
                cpu: Some(1),
            },
            Test::File {
                bytes: 1 << 20,
                seed: 1,
                cpu: None,
            },
            Test::File {
                bytes: 1 << 20,
                seed: 1,
                cpu: Some(3),
            },
        ];
        for t in tests {
            assert_eq!(parse_header(&t.to_string()), Ok(t.clone()), "{t}");
        }
    }

    #[test]
    fn defaults_fill_missing_keys() {
        assert_eq!(
            parse_header("VMPEER1 MAERTS\n"),
            Ok(Test::Maerts {
                secs: 1.0,
                bs: DEFAULT_BLOCK
            })
        );
        assert_eq!(
            parse_header("VMPEER1 RR"),
            Ok(Test::Rr {
                req: 1,
                resp: 1,
                cpu: None
            })
        );
        assert_eq!(
            parse_header("VMPEER1 TREE bytes=10 files=2"),
            Ok(Test::Tree {
                files: 2,
                bytes: 10,
                seed: 1,
                cpu: None
            })
        );
        assert_eq!(
            parse_header("VMPEER1 FILE bytes=10 cpu=none"),
            Ok(Test::File {
                bytes: 10,
                seed: 1,
                cpu: None
            })
        );
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        for (line, needle) in [
            ("", "empty"),
            ("VMPEER2 STREAM", "unsupported protocol"),
            ("VMPEER1", "no test"),
            ("VMPEER1 DANCE", "unknown test"),
            ("VMPEER1 UDP-FLOOD", "needs port="),
            ("VMPEER1 STREAM bs=1", "takes no parameter"),
            ("VMPEER1 RR req=0", "at least 1"),
            ("VMPEER1 RR req=x", "not a non-negative integer"),
            ("VMPEER1 RR req=1 req=2", "twice"),
            ("VMPEER1 MAERTS secs=-1", "not a duration"),
            ("VMPEER1 TREE files=3", "needs bytes"),
            ("VMPEER1 FILE bytes=99999999999999", "larger than"),
            ("VMPEER1 RR cpu", "key=value"),
            ("VMPEER1 FILE bytes=1 cpu=x", "not a non-negative integer"),
        ] {
            let e = parse_header(line).expect_err(line);
            assert!(e.contains(needle), "{line:?}: {e:?} lacks {needle:?}");
        }
    }

    #[test]
    fn unknown_header_gets_an_error_line_and_a_close() {
        let addr = Peer::bind("127.0.0.1:0").unwrap().spawn().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"VMPEER1 DANCE fast=1\n").unwrap();
        let line = read_line(&mut s).unwrap();
        assert!(line.starts_with("ERR unknown test"), "{line}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn answer_fields_parse() {
        let l = "RESULT bytes=123 nanos=456";
        assert_eq!(answer_field::<u64>(l, "bytes"), Some(123));
        assert_eq!(answer_field::<u64>(l, "nanos"), Some(456));
        assert_eq!(answer_field::<u64>(l, "files"), None);
    }

    #[test]
    fn rr_echoes_and_stream_counts() {
        let addr = Peer::bind("127.0.0.1:0").unwrap().spawn().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        writeln!(
            s,
            "{}",
            Test::Rr {
                req: 3,
                resp: 5,
                cpu: None
            }
        )
        .unwrap();
        assert_eq!(read_line(&mut s).unwrap(), "OK cpu=none");
        for _ in 0..3 {
            s.write_all(b"abc").unwrap();
            let mut r = [0u8; 5];
            s.read_exact(&mut r).unwrap();
        }
        drop(s);
        let mut s = TcpStream::connect(addr).unwrap();
        writeln!(s, "{}", Test::Stream).unwrap();
        assert_eq!(read_line(&mut s).unwrap(), "OK");
        s.write_all(&[7u8; 10_000]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let r = read_line(&mut s).unwrap();
        assert_eq!(answer_field::<u64>(&r, "bytes"), Some(10_000), "{r}");
    }

    #[test]
    fn the_receiver_reads_to_the_end_and_gives_up_on_silence() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Sent in pieces with pauses, so that the receiver finds the socket empty
        // (a non-blocking read's WouldBlock) and must wait in poll.
        let sender = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            for _ in 0..5 {
                c.write_all(&vec![1u8; 3 * DEFAULT_BLOCK + 7]).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (mut s, _) = l.accept().unwrap();
        let got = receive_to_end(&mut s, &mut [0u8; 4096], Duration::from_secs(10)).unwrap();
        sender.join().unwrap();
        assert_eq!(got, 5 * (3 * DEFAULT_BLOCK as u64 + 7));
        // The socket is blocking again for what follows (the RESULT line).
        use std::os::fd::AsRawFd;
        let flags = nix::fcntl::fcntl(s.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
        assert!(!flags.contains(nix::fcntl::OFlag::O_NONBLOCK), "{flags:?}");

        let _silent = TcpStream::connect(addr).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let t = Instant::now();
        let e = receive_to_end(&mut s, &mut [0u8; 4096], Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
}
