//! Stressors for the isolation step: misbehaving loads, each bounded in time,
//! processes and memory (Xu et al. 2008; Matthews et al. 2007). A stressor runs
//! as its own process (`virtmark stress KIND …`), started and stopped by the agent,
//! so that the kernel's OOM killer or pids limit hits the stressor, and so that
//! stopping it is a kill of its process group.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The stressors, as named on the command line.
pub const KINDS: &[&str] = &["cpu", "memory", "fork", "disk", "udp-send", "udp-recv"];

/// Stressors that may hurt the host and run on `native` only with
/// `--allow-host-stress`.
pub const DESTRUCTIVE: &[&str] = &["memory", "fork", "disk"];

/// Stressors that send traffic: they aim only at the instance's own network
/// path (its peer, or the address it connects from).
pub const FLOODS: &[&str] = &["udp-send", "udp-recv"];

/// Bounds and parameters of one stressor run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StressParams {
    /// Stop after this long, whatever happens.
    pub duration_ms: u64,
    /// Threads (cpu: default every CPU; disk: default 10; udp: default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Most memory the memory bomb allocates, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cap: Option<u64>,
    /// Most processes the fork bomb creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_cap: Option<u32>,
    /// UDP target for `udp-send` (the peer's discard port) or the peer to ask for a
    /// flood for `udp-recv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Directory for the disk stressor's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// Bounds of every stressor parameter (documented in `docs/steps.md`):
/// `duration_ms` 1 ms to 1 h, `threads` 1 to 1024, `memory_cap` 1 MiB to 1 TiB,
/// `pids_cap` 1 to 100000.
#[derive(Debug, thiserror::Error)]
#[error("stressor parameter {field} = {value} is out of range: give {lo} to {hi}")]
pub struct ParamOutOfRange {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// Lowest accepted.
    pub lo: u64,
    /// Highest accepted.
    pub hi: u64,
}

impl StressParams {
    /// Check every bound before anything runs.
    pub fn check(&self) -> Result<(), ParamOutOfRange> {
        let fields = [
            ("duration_ms", Some(self.duration_ms), 1, 3_600_000),
            ("threads", self.threads.map(u64::from), 1, 1024),
            ("memory_cap", self.memory_cap, 1 << 20, 1 << 40),
            ("pids_cap", self.pids_cap.map(u64::from), 1, 100_000),
        ];
        for (field, value, lo, hi) in fields {
            if let Some(value) = value {
                if !(lo..=hi).contains(&value) {
                    return Err(ParamOutOfRange {
                        field,
                        value,
                        lo,
                        hi,
                    });
                }
            }
        }
        Ok(())
    }
}

/// What a stressor did, printed as one JSON line when it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StressReport {
    /// Stressor kind.
    pub kind: String,
    /// How long it ran, seconds.
    pub ran_s: f64,
    /// Work done, in the stressor's own unit.
    pub amount: f64,
    /// That unit (`loops`, `bytes allocated`, `processes`, `bytes`, `datagrams`).
    pub unit: String,
    /// Why it stopped early, if it did (limit hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Set by SIGTERM: stop and report.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopping(start: Instant, d: Duration) -> bool {
    STOP.load(Ordering::Relaxed) || start.elapsed() >= d
}

/// Run a stressor in this process until its duration or SIGTERM; returns its report.
pub fn run(kind: &str, p: &StressParams) -> anyhow::Result<StressReport> {
    p.check()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::Handler(on_term),
        )?;
    }
    let d = Duration::from_millis(p.duration_ms.max(1));
    let start = Instant::now();
    let (amount, unit, limit) = match kind {
        "cpu" => cpu(p, start, d),
        "memory" => memory(p, start, d),
        "fork" => fork_bomb(p, start, d),
        "disk" => disk(p, start, d)?,
        "udp-send" => udp_send(p, start, d)?,
        "udp-recv" => udp_recv(p, start, d)?,
        other => anyhow::bail!("unknown stressor {other:?} (known: {})", KINDS.join(", ")),
    };
    Ok(StressReport {
        kind: kind.into(),
        ran_s: start.elapsed().as_secs_f64(),
        amount,
        unit: unit.into(),
        limit,
    })
}

type Done = (f64, &'static str, Option<String>);

fn threads(p: &StressParams, default: usize) -> usize {
    p.threads.map_or(default, |t| t.max(1) as usize)
}

/// Tight integer and floating-point loops on every CPU.
fn cpu(p: &StressParams, start: Instant, d: Duration) -> Done {
    let n = threads(
        p,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let loops = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..n {
            let loops = &loops;
            s.spawn(move || {
                let (mut i, mut f) = (t as u64 | 1, 1.000_001f64);
                while !stopping(start, d) {
                    for _ in 0..100_000 {
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        f = f * 1.000_000_1 + (i >> 60) as f64 * 1e-12;
                    }
                    std::hint::black_box((i, f));
                    loops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (loops.into_inner() as f64 * 1e5, "loops", None)
}

/// Allocate and touch memory until the cap (or until the kernel says no), then keep
/// re-dirtying it until the end.
fn memory(p: &StressParams, start: Instant, d: Duration) -> Done {
    const CHUNK: usize = 16 << 20;
    let cap = p.memory_cap.unwrap_or(1 << 30) as usize;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut limit = None;
    while chunks.len() * CHUNK < cap && !stopping(start, d) {
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(CHUNK).is_err() {
            limit = Some("allocation refused".to_string());
            break;
        }
        v.resize(CHUNK, 0);
        for i in (0..CHUNK).step_by(4096) {
            v[i] = (i >> 12) as u8 | 1;
        }
        chunks.push(v);
    }
    if limit.is_none() && chunks.len() * CHUNK >= cap {
        limit = Some(format!("memory cap {} MiB reached", cap >> 20));
    }
    let allocated = (chunks.len() * CHUNK) as f64;
    let mut round = 0u8;
    while !stopping(start, d) {
        round = round.wrapping_add(1);
        for c in chunks.iter_mut() {
            for i in (0..CHUNK).step_by(4096) {
                c[i] = round;
            }
            if stopping(start, d) {
                break;
            }
        }
    }
    (allocated, "bytes allocated", limit)
}

/// Fork until the pids limit or the cap; the children spin (every process of a
/// fork bomb is runnable) until they are killed with the group or their parent
/// dies.
fn fork_bomb(p: &StressParams, start: Instant, d: Duration) -> Done {
    use nix::unistd::{fork, ForkResult};
    let cap = p.pids_cap.unwrap_or(1024);
    let mut made = 0u32;
    let mut limit = None;
    let me = nix::unistd::getpid();
    while made < cap && !stopping(start, d) {
        // SAFETY: the child only calls prctl(2), getppid(2) and _exit(2), then
        // spins; it never returns into Rust code that could observe the parent's
        // state (locks, allocator).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Die with the stressor, however it ends: no child outlives it,
                // even when it is killed before it can kill its group. If it died
                // before prctl took effect, the parent is already someone else.
                // SAFETY: prctl(2), getppid(2) and _exit(2) are async-signal-safe.
                unsafe {
                    if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0
                        || nix::libc::getppid() != me.as_raw()
                    {
                        nix::libc::_exit(0);
                    }
                }
                // Every process of a fork bomb runs: the children spin until
                // they are killed with the stressor's group.
                loop {
                    std::hint::spin_loop();
                }
            }
            Ok(ForkResult::Parent { .. }) => made += 1,
            Err(e) => {
                limit = Some(format!("fork refused after {made}: {e}"));
                // Keep pressing on the limit as a fork bomb does, but gently.
                std::thread::sleep(Duration::from_millis(5));
                if start.elapsed() >= d {
                    break;
                }
            }
        }
    }
    if made >= cap {
        limit.get_or_insert_with(|| format!("pids cap {cap} reached"));
    }
    while !stopping(start, d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    (f64::from(made), "processes", limit)
}

/// `iozone -i 0 -i 1 -r 4 -s 64M -t 10`: threads alternating a 64 MiB write and
/// read-back with 4 KiB records.
fn disk(p: &StressParams, start: Instant, d: Duration) -> anyhow::Result<Done> {
    let dir = p.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir)?;
    let n = threads(p, 10);
    let bytes = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..n {
            let bytes = &bytes;
            let path = dir.join(format!("stress-disk-{t}"));
            s.spawn(move || {
                let _ = disk_thread(&path, start, d, bytes);
                let _ = std::fs::remove_file(&path);
            });
        }
    });
    Ok((bytes.into_inner() as f64, "bytes", None))
}

fn disk_thread(path: &Path, start: Instant, d: Duration, bytes: &AtomicU64) -> std::io::Result<()> {
    const SIZE: usize = 64 << 20;
    let rec = [0x5au8; 4096];
    let mut buf = [0u8; 4096];
    while !stopping(start, d) {
        let mut f = std::fs::File::create(path)?;
        for _ in 0..SIZE / rec.len() {
            f.write_all(&rec)?;
            if stopping(start, d) {
                return Ok(());
            }
        }
        f.sync_all()?;
        bytes.fetch_add(SIZE as u64, Ordering::Relaxed);
        let mut f = std::fs::File::open(path)?;
        while f.read(&mut buf)? > 0 {
            if stopping(start, d) {
                return Ok(());
            }
        }
        bytes.fetch_add(SIZE as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn peer_addr(p: &StressParams) -> anyhow::Result<SocketAddr> {
    let s = p
        .peer
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("this stressor needs the peer's address"))?;
    Ok(s.parse()?)
}

/// Open a control connection to the peer with a `VMPEER1` header and check its
/// `OK`; returns the connection and the `OK` line.
fn peer_control(peer: SocketAddr, header: &str) -> anyhow::Result<std::net::TcpStream> {
    Ok(peer_control_answer(peer, header)?.0)
}

fn peer_control_answer(
    peer: SocketAddr,
    header: &str,
) -> anyhow::Result<(std::net::TcpStream, String)> {
    let mut ctl = std::net::TcpStream::connect_timeout(&peer, Duration::from_secs(5))?;
    ctl.set_read_timeout(Some(Duration::from_secs(10)))?;
    ctl.write_all(format!("VMPEER1 {header}\n").as_bytes())?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while ctl.read(&mut b)? == 1 && b[0] != b'\n' && line.len() < 512 {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    if !line.starts_with("OK") {
        anyhow::bail!("the peer refused {header:?}: {line}");
    }
    Ok((ctl, line))
}

/// Threads sending 60 KiB datagrams as fast as they can to the peer's UDP discard port.
fn udp_send(p: &StressParams, start: Instant, d: Duration) -> anyhow::Result<Done> {
    let peer = peer_addr(p)?;
    let (_ctl, ok) = peer_control_answer(peer, "UDP-DISCARD")?;
    let port: u16 = ok
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port=")?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the peer's UDP-DISCARD answer has no port: {ok}"))?;
    let to = SocketAddr::new(peer.ip(), port);
    let n = threads(p, 4);
    let sent = AtomicU64::new(0);
    std::thread::scope(|s| -> anyhow::Result<()> {
        for _ in 0..n {
            let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            sock.connect(to)?;
            let sent = &sent;
            s.spawn(move || {
                let buf = vec![0xa5u8; 60 * 1024];
                while !stopping(start, d) {
                    // Errors (ENOBUFS, ECONNREFUSED from ICMP) are part of flooding.
                    if sock.send(&buf).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        Ok(())
    })?;
    Ok((sent.into_inner() as f64, "datagrams sent", None))
}

/// Ask the peer to flood this instance with 60 KiB datagrams, and read them with
/// several threads.
fn udp_recv(p: &StressParams, start: Instant, d: Duration) -> anyhow::Result<Done> {
    let peer = peer_addr(p)?;
    let sock = Arc::new(UdpSocket::bind(if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?);
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let port = sock.local_addr()?.port();
    // The peer floods the address it sees our TCP request come from, at `port`,
    // for as long as the control connection stays open (or `secs`).
    let mut ctl = peer_control(
        peer,
        &format!(
            "UDP-FLOOD port={port} size={} secs={:.3}",
            60 * 1024,
            d.as_secs_f64()
        ),
    )?;
    let n = threads(p, 4);
    let got = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..n {
            let sock = sock.clone();
            let got = &got;
            s.spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stopping(start, d) {
                    if sock.recv(&mut buf).is_ok() {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let _ = ctl.flush();
    Ok((got.into_inner() as f64, "datagrams received", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stressor_parameters_out_of_range_are_refused() {
        let ok = StressParams {
            duration_ms: 1000,
            threads: Some(4),
            memory_cap: Some(64 << 20),
            pids_cap: Some(256),
            peer: None,
            dir: None,
        };
        assert!(ok.check().is_ok());
        for bad in [
            StressParams {
                duration_ms: 0,
                ..ok.clone()
            },
            StressParams {
                threads: Some(1 << 20),
                ..ok.clone()
            },
            StressParams {
                memory_cap: Some(u64::MAX),
                ..ok.clone()
            },
            StressParams {
                pids_cap: Some(0),
                ..ok.clone()
            },
        ] {
            assert!(run("cpu", &bad).is_err(), "{bad:?}");
        }
    }

    fn params(ms: u64) -> StressParams {
        StressParams {
            duration_ms: ms,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_and_memory_stressors_work_and_stop_on_time() {
        let t = Instant::now();
        let r = run(
            "cpu",
            &StressParams {
                threads: Some(1),
                ..params(200)
            },
        )
        .unwrap();
        assert!(r.amount > 0.0 && r.unit == "loops");
        let r = run(
            "memory",
            &StressParams {
                memory_cap: Some(32 << 20),
                ..params(3000)
            },
        )
        .unwrap();
        assert_eq!(r.amount, (32 << 20) as f64);
        assert!(r.limit.unwrap().contains("cap"));
        assert!(t.elapsed() < Duration::from_secs(8));
    }

    #[test]
    fn disk_stressor_writes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(
            "disk",
            &StressParams {
                threads: Some(2),
                dir: Some(dir.path().to_path_buf()),
                ..params(300)
            },
        )
        .unwrap();
        assert_eq!(r.unit, "bytes");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn udp_stressors_talk_to_the_peer_on_loopback() {
        let addr = crate::peer::Peer::bind("127.0.0.1:0")
            .unwrap()
            .spawn()
            .unwrap();
        let p = StressParams {
            peer: Some(addr.to_string()),
            threads: Some(1),
            ..params(300)
        };
        let sent = run("udp-send", &p).unwrap();
        assert!(sent.amount > 0.0, "{sent:?}");
        let got = run("udp-recv", &p).unwrap();
        assert!(got.amount > 0.0, "{got:?}");
        assert!(run("dance", &p).is_err());
    }
}
