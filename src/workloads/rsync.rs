//! rsync from a server (Camargos et al.): (1) a kernel source tree, 23,741 files /
//! 294 MB; (2) a 433 MB ISO image. Wall time of the copy into an empty directory.
//!
//! The peer (`virtmark serve`) plays the rsync daemon: it generates a deterministic
//! kernel-like tree (or one ISO-like file) in memory before it answers `OK`, so
//! generation is never timed, and streams it as frames (path, mode, size, CRC-32,
//! data). The client does what rsync's receiver does for a fresh copy: creates each
//! directory, writes each file with its mode, checks a whole-file checksum, and
//! fsyncs nothing. The clock runs from the peer's `OK` to the last file closed.
//! The receiving thread and the peer's sending thread run on different CPUs
//! ([`Placement`]), as the two ends of a copy between machines do.
//!
//! Parameters read: `rsync-tree`: `files` and `size` (quick 8,000 / 100 MB,
//! faithful 23,741 / 294 MB); `rsync-file`: `size` (quick 128 MiB, faithful 433 MB).

use std::fs::{self, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};
use crate::peer::{self, Test, FRAME_DIR, FRAME_END, FRAME_FILE, FRAME_HEADER};

/// rsync of a kernel-like source tree.
pub static RSYNC_TREE: Workload = Workload {
    name: "rsync-tree",
    stands_for: "rsync of a kernel tree from a server (Camargos et al.)",
    class: Class::Application,
    metric: "time",
    unit: "s",
    higher_is_better: false,
    needs_peer: true,
    description: "copies a generated kernel-like tree (quick 8,000 files / 100 MB, faithful 23,741 / 294 MB) from the peer into scratch, checksumming every file",
    available: super::always,
    run: run_tree,
};

/// rsync of one large ISO-like file.
pub static RSYNC_FILE: Workload = Workload {
    name: "rsync-file",
    stands_for: "rsync of a 433 MB ISO from a server (Camargos et al.)",
    class: Class::Application,
    metric: "time",
    unit: "s",
    higher_is_better: false,
    needs_peer: true,
    description: "copies one generated incompressible file (quick 128 MiB, faithful 433 MB) from the peer into scratch, checksummed",
    available: super::always,
    run: run_file,
};

/// Seed of the generated data (fixed, so every target copies the same bytes).
const SEED: u64 = 1;

/// The quick tree: a third of the study's, with its mean file size (12.5 kB).
/// At 2,000 files / 25 MB a sample took 0.03 s natively here, and the same few
/// milliseconds of file-system jitter that rsync shows over its 0.11 s copy made
/// a 11% CoV against rsync's 4% (`scripts/bench-stability.sh`, 2026-12-01).
const QUICK_TREE_FILES: u64 = 8_000;
const QUICK_TREE_BYTES: u64 = 100_000_000;

/// How long the peer may take to generate the data before it answers.
const GENERATION_TIMEOUT: Duration = Duration::from_secs(300);

fn run_tree(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let files = ctx
        .params
        .files
        .unwrap_or_else(|| ctx.pick(QUICK_TREE_FILES, 23_741));
    let bytes = ctx
        .params
        .size
        .map(|b| b.bytes())
        .unwrap_or_else(|| ctx.pick(QUICK_TREE_BYTES, 294_000_000));
    if files == 0 || files > peer::MAX_TREE_FILES || bytes > peer::MAX_TREE_BYTES {
        return Err(WorkloadError::Param(format!(
            "files={files} size={bytes} B is out of range (1 to {} files, at most {} B)",
            peer::MAX_TREE_FILES,
            peer::MAX_TREE_BYTES
        )));
    }
    copy(ctx, &Placement::new(), |cpu| Test::Tree {
        files,
        bytes,
        seed: SEED,
        cpu,
    })
}

fn run_file(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let bytes = ctx
        .params
        .size
        .map(|b| b.bytes())
        .unwrap_or_else(|| ctx.pick(128 << 20, 433_000_000));
    if bytes > peer::MAX_TREE_BYTES {
        return Err(WorkloadError::Param(format!(
            "size {bytes} B is larger than the peer serves ({} B)",
            peer::MAX_TREE_BYTES
        )));
    }
    copy(ctx, &Placement::new(), |cpu| Test::File {
        bytes,
        seed: SEED,
        cpu,
    })
}

fn peer_io(addr: SocketAddr, what: &str) -> impl FnOnce(std::io::Error) -> WorkloadError + '_ {
    move |source| WorkloadError::Io {
        context: format!("peer {addr}: {what}"),
        source,
    }
}

/// Check a path from the peer: relative, no `..`, no empty or `.` components.
fn safe_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    if p.is_empty() || p.contains('\0') || p.ends_with('/') || p.contains("//") {
        return None;
    }
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

/// Where the two ends of a copy run: the receiving thread pinned to the CPU it
/// is on, the peer's sending thread asked for the next CPU this thread may use
/// (none when it may use only one), as a server on another machine would send. Left
/// to the scheduler, a 128 MiB copy took 0.05 s with the two on different CPUs and
/// 0.10 s on the same one, and unpinned samples fell on either side (CoV 8–19%
/// against rsync's 5–15%; 2026-12-01). The thread's affinity is restored on drop.
struct Placement {
    old: Option<nix::sched::CpuSet>,
    client: Option<usize>,
    peer: Option<usize>,
}

impl Placement {
    fn new() -> Placement {
        use nix::sched::sched_getaffinity;
        use nix::unistd::Pid;
        let allowed = peer::allowed_cpus();
        // SAFETY: sched_getcpu has no preconditions; -1 means unknown.
        let here = usize::try_from(unsafe { nix::libc::sched_getcpu() }).ok();
        let Some(i) = here.and_then(|c| allowed.iter().position(|&a| a == c)) else {
            return Placement {
                old: None,
                client: None,
                peer: None,
            };
        };
        let old = sched_getaffinity(Pid::from_raw(0)).ok();
        let client = old
            .is_some()
            .then_some(allowed[i])
            .filter(|&c| peer::pin_current_thread(c).is_ok());
        let peer = (allowed.len() > 1).then(|| allowed[(i + 1) % allowed.len()]);
        Placement { old, client, peer }
    }
}

impl Placement {
    /// Where each end ran, given the CPU the peer said it pinned to.
    fn note(&self, peer_pinned: Option<usize>) -> String {
        let client = match self.client {
            Some(c) => format!("receiver pinned to cpu {c}"),
            None => "receiver not pinned".into(),
        };
        let peer = match (self.peer, peer_pinned) {
            (_, Some(c)) => format!("peer's sender pinned to cpu {c}"),
            (Some(c), None) => format!("peer's sender could not pin to cpu {c}"),
            (None, None) => "peer's sender not pinned (one CPU only)".into(),
        };
        format!("{client}, {peer}")
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let (Some(old), Some(_)) = (&self.old, self.client) {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), old);
        }
    }
}

/// Copy what `test` (made for the peer's CPU, if any) describes.
fn copy(
    ctx: &Ctx,
    place: &Placement,
    test: impl FnOnce(Option<usize>) -> Test,
) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let test = &test(place.peer);
    let bytes = match test {
        Test::Tree { bytes, .. } | Test::File { bytes, .. } => *bytes,
        _ => 0,
    };
    (ctx.progress)(0.0, "priming the page cache");
    let primed = ctx.prime_page_cache(bytes)?;
    (ctx.progress)(0.0, "waiting for the peer to prepare the data");
    let mut s = std::net::TcpStream::connect(addr).map_err(peer_io(addr, "connecting"))?;
    s.set_read_timeout(Some(GENERATION_TIMEOUT))
        .ctx(|| "setting a read timeout".into())?;
    writeln!(s, "{test}").map_err(peer_io(addr, "sending the header"))?;
    let ok = peer::read_line(&mut s).map_err(peer_io(addr, "reading the answer"))?;
    if !ok.starts_with("OK") {
        return Err(WorkloadError::Peer(format!("{addr} refused {test}: {ok}")));
    }
    // The peer has generated the data and is about to send it: the measured
    // window starts here (the step's barrier).
    ctx.begin_measuring()?;
    let start = Instant::now();
    let want_files: u64 = peer::answer_field(&ok, "files").unwrap_or(0);
    let want_bytes: u64 = peer::answer_field(&ok, "bytes").unwrap_or(0);
    let root: PathBuf = ctx.scratch.join("dest");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&root)
        .ctx(|| format!("creating {}", root.display()))?;
    let mut r = BufReader::with_capacity(256 << 10, s);
    let mut buf = vec![0u8; 256 << 10];
    let mut path_buf = Vec::with_capacity(256);
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        let mut h = [0u8; FRAME_HEADER];
        r.read_exact(&mut h)
            .map_err(peer_io(addr, "reading a frame"))?;
        let kind = h[0];
        let plen = u16::from_le_bytes([h[1], h[2]]) as usize;
        let mode = u32::from_le_bytes([h[3], h[4], h[5], h[6]]) & 0o7777;
        let size = u64::from_le_bytes([h[7], h[8], h[9], h[10], h[11], h[12], h[13], h[14]]);
        let crc = u32::from_le_bytes([h[15], h[16], h[17], h[18]]);
        if kind == FRAME_END {
            break;
        }
        path_buf.resize(plen, 0);
        r.read_exact(&mut path_buf)
            .map_err(peer_io(addr, "reading a path"))?;
        let name = std::str::from_utf8(&path_buf)
            .ok()
            .and_then(safe_relative)
            .ok_or_else(|| {
                WorkloadError::Peer(format!(
                    "{addr} sent an unsafe path {:?}",
                    String::from_utf8_lossy(&path_buf)
                ))
            })?;
        let dest = root.join(name);
        match kind {
            FRAME_DIR => {
                fs::DirBuilder::new()
                    .mode(mode)
                    .create(&dest)
                    .ctx(|| format!("creating {}", dest.display()))?;
                dirs += 1;
            }
            FRAME_FILE => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&dest)
                    .ctx(|| format!("creating {}", dest.display()))?;
                let mut hasher = crc32fast::Hasher::new();
                let mut left = size;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    r.read_exact(&mut buf[..n])
                        .map_err(peer_io(addr, "reading file data"))?;
                    hasher.update(&buf[..n]);
                    f.write_all(&buf[..n])
                        .ctx(|| format!("writing {}", dest.display()))?;
                    left -= n as u64;
                }
                drop(f);
                let got = hasher.finalize();
                if got != crc {
                    return Err(WorkloadError::Failed(format!(
                        "{}: checksum {got:08x}, peer said {crc:08x}",
                        dest.display()
                    )));
                }
                files += 1;
                bytes += size;
                if files % 256 == 0 && want_bytes > 0 {
                    (ctx.progress)(bytes as f64 / want_bytes as f64, "copying");
                }
            }
            other => {
                return Err(WorkloadError::Peer(format!(
                    "{addr} sent an unknown frame kind {other:#04x}"
                )))
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if files != want_files || bytes != want_bytes {
        return Err(WorkloadError::Peer(format!(
            "{addr} announced {want_files} files / {want_bytes} B but sent {files} / {bytes}"
        )));
    }
    if files == 0 {
        return Err(WorkloadError::Failed("nothing was copied".into()));
    }
    let mut metrics = vec![
        Metric::lower("time", "s", secs),
        Metric::higher("throughput", "MB/s", bytes as f64 / secs / 1e6),
    ];
    if files > 1 {
        metrics.insert(1, Metric::higher("files", "files/s", files as f64 / secs));
    }
    Ok(Outcome {
        metrics,
        notes: vec![
            format!("{files} files, {dirs} directories, {bytes} B; CRC-32 checked, no fsync"),
            primed,
            place.note(peer::answer_field(&ok, "cpu")),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;
    use crate::workloads::{testing::run_briefly, Params};

    fn peer() -> SocketAddr {
        peer::Peer::bind("127.0.0.1:0").unwrap().spawn().unwrap()
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative("a/b.c").is_some());
        for p in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "./a"] {
            assert!(safe_relative(p).is_none(), "{p:?}");
        }
    }

    #[test]
    fn tree_copies_every_file() {
        let p = Params {
            files: Some(300),
            size: Some(ByteSize(2_000_000)),
            ..Params::default()
        };
        let out = run_briefly(&RSYNC_TREE, p, Some(peer()));
        assert_eq!(out.metrics.len(), 3);
        assert!(out.notes[0].starts_with("300 files"), "{:?}", out.notes);
    }

    #[test]
    fn file_copies_one_file() {
        let p = Params {
            size: Some(ByteSize::mib(3)),
            ..Params::default()
        };
        let before = peer::allowed_cpus();
        let out = run_briefly(&RSYNC_FILE, p, Some(peer()));
        assert_eq!(out.metrics.len(), 2);
        // The receiving thread's affinity is restored after the copy.
        assert_eq!(peer::allowed_cpus(), before);
        let place = out
            .notes
            .iter()
            .find(|n| n.starts_with("receiver "))
            .expect("a placement note");
        if before.len() > 1 {
            assert!(place.contains("receiver pinned to cpu"), "{place}");
            assert!(place.contains("peer's sender pinned to cpu"), "{place}");
        }
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("3 MiB written and deleted")),
            "{:?}",
            out.notes
        );
    }
}
