//! `dbench`: a file server's load, `dbench -t 300 -D /var/tmp 100` (Camargos et al.).
//!
//! dbench replays the NetBench trace (`client.txt`) through its file-system backend:
//! every client creates and opens files, reads and writes them at various offsets and
//! sizes, stats paths and handles, lists directories, renames, unlinks and flushes
//! (`Flush` is an `fsync` in dbench 4). Here each client is a thread that draws
//! operations at random in the trace's proportions (counted from dbench 4's
//! `client.txt`, including its read and write sizes) inside its own directory tree;
//! the trace is modelled, not replayed.
//! As in dbench, throughput counts the bytes read and written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

/// dbench: N clients running a file-server operation mix.
pub static DBENCH: Workload = Workload {
    name: "dbench",
    stands_for: "dbench -t 300 -D /var/tmp 100 (Camargos et al.)",
    class: Class::Disk,
    metric: "throughput",
    unit: "MB/s",
    higher_is_better: true,
    needs_peer: false,
    description: "N client threads run the NetBench file-server mix (open, read, write, stat, find, rename, unlink, flush) in their own trees",
    available: super::always,
    run: run_dbench,
};

/// One operation of the NetBench trace, as dbench names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    NtCreateX,
    Close,
    Rename,
    Unlink,
    Mkdir,
    Deltree,
    QPathInfo,
    QFileInfo,
    QFsInfo,
    SFileInfo,
    Find,
    WriteX,
    ReadX,
    Flush,
}

/// Weights per 10,000 operations: the share of each operation in dbench 4's
/// `client.txt` (counted over its 458,000 lines: ReadX 27.1%, NTCreateX 17.3%,
/// QUERY_PATH_INFORMATION 15.7%, Close 12.7%, WriteX 8.6%, FIND_FIRST 6.1%, ...).
/// LockX/UnlockX (0.06% each) are left out.
const MIX: [(Op, u32); 14] = [
    (Op::NtCreateX, 1729),
    (Op::Close, 1270),
    (Op::Rename, 73),
    (Op::Unlink, 349),
    (Op::Mkdir, 1),
    (Op::Deltree, 1),
    (Op::QPathInfo, 1567),
    (Op::QFileInfo, 275),
    (Op::QFsInfo, 287),
    (Op::SFileInfo, 141),
    (Op::Find, 606),
    (Op::WriteX, 862),
    (Op::ReadX, 2710),
    (Op::Flush, 121),
];

/// ReadX sizes (bytes) and weights per 1,000, bucketed from `client.txt`: 73% are
/// 4 KiB, 13% 64 KiB; mean 12.5 KB (the trace's: 11.9 KB).
const READ_SIZES: [(usize, u32); 5] = [
    (512, 72),
    (4096, 731),
    (10240, 60),
    (32768, 3),
    (65536, 134),
];

/// WriteX sizes (bytes) and weights per 1,000, bucketed from `client.txt`: 35% are
/// 64 KiB, 22% tiny; mean 26.3 KB (the trace's: 25.7 KB).
const WRITE_SIZES: [(usize, u32); 5] = [
    (64, 224),
    (4096, 298),
    (10240, 85),
    (24576, 39),
    (65536, 354),
];

/// Files each client starts with, spread over its directories.
const START_FILES: usize = 32;
/// Directories each client starts with (its root included).
const START_DIRS: usize = 4;
/// Bounds that keep a client's working set steady.
const MIN_FILES: usize = 16;
const MAX_FILES: usize = 64;
const MAX_DIRS: usize = 8;
const MAX_OPEN: usize = 8;
/// Files grow by appends up to this length, then are written in place.
const MAX_FILE_LEN: u64 = 1 << 20;

fn pick_weighted<T: Copy>(rng: &mut fastrand::Rng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut r = rng.u32(0..total);
    for &(item, w) in table {
        if r < w {
            return item;
        }
        r -= w;
    }
    table[table.len() - 1].0
}

/// A file of the client's tree.
struct Entry {
    id: u64,
    dir: usize,
    name: u64,
    len: u64,
    opens: u32,
}

/// An open handle on an entry.
struct Handle {
    id: u64,
    file: File,
}

/// What one client did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ops: u64,
    bytes: u64,
}

/// One client's state: its directories, files and open handles.
struct Client {
    rng: fastrand::Rng,
    root: PathBuf,
    /// Directory paths; `None` once deleted by Deltree.
    dirs: Vec<Option<PathBuf>>,
    files: Vec<Entry>,
    open: Vec<Handle>,
    next_name: u64,
    buf: Vec<u8>,
    fsync: bool,
    tally: Tally,
}

impl Client {
    /// Create the client's tree and starting files (outside the timed region).
    fn prepare(root: PathBuf, seed: u64, fsync: bool) -> Result<Client, WorkloadError> {
        let mut c = Client {
            rng: fastrand::Rng::with_seed(seed),
            root,
            dirs: Vec::new(),
            files: Vec::new(),
            open: Vec::new(),
            next_name: 0,
            buf: (0..65536u32).map(|i| (i % 251) as u8 + 1).collect(),
            fsync,
            tally: Tally::default(),
        };
        std::fs::create_dir_all(&c.root).ctx(|| format!("creating {}", c.root.display()))?;
        c.dirs.push(Some(c.root.clone()));
        for _ in 1..START_DIRS {
            c.mkdir()?;
        }
        for _ in 0..START_FILES {
            let len = c.rng.u64(4096..=256 << 10);
            let id = c.create_file()?;
            let path = c.path_of(id)?;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .ctx(|| format!("opening {}", path.display()))?;
            let mut off = 0;
            while off < len {
                let n = (len - off).min(c.buf.len() as u64) as usize;
                f.write_all_at(&c.buf[..n], off)
                    .ctx(|| format!("writing {}", path.display()))?;
                off += n as u64;
            }
            if let Some(e) = c.files.iter_mut().find(|e| e.id == id) {
                e.len = len;
            }
        }
        Ok(c)
    }

    fn path_of(&self, id: u64) -> Result<PathBuf, WorkloadError> {
        let e = self
            .files
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| WorkloadError::Failed(format!("dbench: lost file {id}")))?;
        self.entry_path(e)
    }

    fn entry_path(&self, e: &Entry) -> Result<PathBuf, WorkloadError> {
        match self.dirs.get(e.dir) {
            Some(Some(d)) => Ok(d.join(format!("f{:06}.dat", e.name))),
            _ => Err(WorkloadError::Failed(format!(
                "dbench: file {} in a deleted directory",
                e.id
            ))),
        }
    }

    fn live_dir(&mut self) -> usize {
        loop {
            let i = self.rng.usize(0..self.dirs.len());
            if self.dirs[i].is_some() {
                return i;
            }
        }
    }

    fn mkdir(&mut self) -> Result<(), WorkloadError> {
        let parent = self.live_dir();
        let name = self.next_name;
        self.next_name += 1;
        let Some(Some(p)) = self.dirs.get(parent) else {
            return Ok(());
        };
        let path = p.join(format!("d{name:06}"));
        std::fs::create_dir(&path).ctx(|| format!("mkdir {}", path.display()))?;
        self.dirs.push(Some(path));
        Ok(())
    }

    /// Create an empty file in a random directory; returns its id.
    fn create_file(&mut self) -> Result<u64, WorkloadError> {
        let dir = self.live_dir();
        let name = self.next_name;
        self.next_name += 1;
        let e = Entry {
            id: name,
            dir,
            name,
            len: 0,
            opens: 0,
        };
        let path = self.entry_path(&e)?;
        File::create(&path).ctx(|| format!("creating {}", path.display()))?;
        self.files.push(e);
        Ok(name)
    }

    /// NTCreateX: open an existing file (most of the time) or create a new one.
    fn nt_create(&mut self) -> Result<(), WorkloadError> {
        if self.open.len() >= MAX_OPEN {
            return self.close();
        }
        let create = self.files.len() < MIN_FILES
            || (self.files.len() < MAX_FILES && self.rng.u32(0..4) == 0);
        let idx = if create {
            let dir = self.live_dir();
            let name = self.next_name;
            self.next_name += 1;
            self.files.push(Entry {
                id: name,
                dir,
                name,
                len: 0,
                opens: 0,
            });
            self.files.len() - 1
        } else {
            self.rng.usize(0..self.files.len())
        };
        let path = self.entry_path(&self.files[idx])?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("NTCreateX {}", path.display()))?;
        let e = &mut self.files[idx];
        e.opens += 1;
        self.open.push(Handle { id: e.id, file });
        Ok(())
    }

    fn close(&mut self) -> Result<(), WorkloadError> {
        if self.open.is_empty() {
            return self.nt_create();
        }
        let h = self.open.swap_remove(self.rng.usize(0..self.open.len()));
        if let Some(e) = self.files.iter_mut().find(|e| e.id == h.id) {
            e.opens = e.opens.saturating_sub(1);
        }
        drop(h.file);
        Ok(())
    }

    /// A random handle index, opening a file first when none is open.
    fn handle(&mut self) -> Result<usize, WorkloadError> {
        if self.open.is_empty() {
            self.nt_create()?;
            self.tally.ops += 1;
        }
        Ok(self.rng.usize(0..self.open.len()))
    }

    fn read(&mut self) -> Result<(), WorkloadError> {
        let h = self.handle()?;
        let size = pick_weighted(&mut self.rng, &READ_SIZES);
        let id = self.open[h].id;
        let len = self.files.iter().find(|e| e.id == id).map_or(0, |e| e.len);
        let off = if len > size as u64 {
            self.rng.u64(0..=(len - size as u64)) & !511
        } else {
            0
        };
        let n = self.open[h]
            .file
            .read_at(&mut self.buf[..size], off)
            .ctx(|| format!("ReadX of file {id} at {off}"))?;
        self.tally.bytes += n as u64;
        Ok(())
    }

    fn write(&mut self) -> Result<(), WorkloadError> {
        let h = self.handle()?;
        let size = pick_weighted(&mut self.rng, &WRITE_SIZES);
        let id = self.open[h].id;
        let Some(e) = self.files.iter_mut().find(|e| e.id == id) else {
            return Err(WorkloadError::Failed(format!("dbench: lost file {id}")));
        };
        let off = if e.len + size as u64 <= MAX_FILE_LEN && self.rng.bool() {
            e.len
        } else {
            self.rng.u64(0..=e.len.min(MAX_FILE_LEN - size as u64)) & !511
        };
        e.len = e.len.max(off + size as u64);
        self.open[h]
            .file
            .write_all_at(&self.buf[..size], off)
            .ctx(|| format!("WriteX of file {id} at {off}"))?;
        self.tally.bytes += size as u64;
        Ok(())
    }

    /// A closed file's index, if a few random picks find one.
    fn closed_file(&mut self) -> Option<usize> {
        (0..8)
            .map(|_| self.rng.usize(0..self.files.len()))
            .find(|&i| self.files[i].opens == 0)
    }

    fn rename(&mut self) -> Result<(), WorkloadError> {
        let Some(i) = self.closed_file() else {
            return self.qpathinfo();
        };
        let from = self.entry_path(&self.files[i])?;
        let dir = self.live_dir();
        let name = self.next_name;
        self.next_name += 1;
        let (old_dir, old_name) = (self.files[i].dir, self.files[i].name);
        self.files[i].dir = dir;
        self.files[i].name = name;
        let to = match self.entry_path(&self.files[i]) {
            Ok(p) => p,
            Err(e) => {
                self.files[i].dir = old_dir;
                self.files[i].name = old_name;
                return Err(e);
            }
        };
        std::fs::rename(&from, &to).ctx(|| format!("Rename {} -> {}", from.display(), to.display()))
    }

    fn unlink(&mut self) -> Result<(), WorkloadError> {
        if self.files.len() <= MIN_FILES {
            return self.nt_create();
        }
        let Some(i) = self.closed_file() else {
            return self.qpathinfo();
        };
        let path = self.entry_path(&self.files[i])?;
        std::fs::remove_file(&path).ctx(|| format!("Unlink {}", path.display()))?;
        self.files.swap_remove(i);
        Ok(())
    }

    fn qpathinfo(&mut self) -> Result<(), WorkloadError> {
        let i = self.rng.usize(0..self.files.len());
        let path = self.entry_path(&self.files[i])?;
        std::fs::symlink_metadata(&path).ctx(|| format!("QPathInfo {}", path.display()))?;
        Ok(())
    }

    fn qfileinfo(&mut self) -> Result<(), WorkloadError> {
        let h = self.handle()?;
        self.open[h]
            .file
            .metadata()
            .ctx(|| "QFileInfo (fstat)".into())?;
        Ok(())
    }

    fn qfsinfo(&mut self) -> Result<(), WorkloadError> {
        nix::sys::statvfs::statvfs(&self.root)
            .map_err(std::io::Error::from)
            .ctx(|| format!("QFSInfo (statvfs) {}", self.root.display()))?;
        Ok(())
    }

    fn sfileinfo(&mut self) -> Result<(), WorkloadError> {
        let h = self.handle()?;
        let now = std::time::SystemTime::now();
        self.open[h]
            .file
            .set_times(
                std::fs::FileTimes::new()
                    .set_modified(now)
                    .set_accessed(now),
            )
            .ctx(|| "SFileInfo (set times)".into())
    }

    fn find(&mut self) -> Result<(), WorkloadError> {
        let d = self.live_dir();
        let Some(Some(path)) = self.dirs.get(d) else {
            return Ok(());
        };
        let mut n = 0usize;
        for entry in std::fs::read_dir(path).ctx(|| format!("Find {}", path.display()))? {
            entry.ctx(|| format!("Find {}", path.display()))?;
            n += 1;
        }
        std::hint::black_box(n);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WorkloadError> {
        let h = self.handle()?;
        if self.fsync {
            self.open[h]
                .file
                .sync_all()
                .ctx(|| "Flush (fsync)".into())?;
        }
        Ok(())
    }

    /// Deltree: remove one directory (not the root) with every file below it, as the
    /// trace does when a client cleans up; closes the handles in it first.
    fn deltree(&mut self) -> Result<(), WorkloadError> {
        let candidates: Vec<usize> = (1..self.dirs.len())
            .filter(|&i| self.dirs[i].is_some())
            .collect();
        if candidates.len() < 2 {
            return self.mkdir();
        }
        let d = candidates[self.rng.usize(0..candidates.len())];
        let Some(Some(path)) = self.dirs.get(d).cloned() else {
            return Ok(());
        };
        let doomed: Vec<usize> = (0..self.dirs.len())
            .filter(|&i| matches!(&self.dirs[i], Some(p) if p.starts_with(&path)))
            .collect();
        let gone: Vec<u64> = self
            .files
            .iter()
            .filter(|e| doomed.contains(&e.dir))
            .map(|e| e.id)
            .collect();
        self.open.retain(|h| !gone.contains(&h.id));
        self.files.retain(|e| !doomed.contains(&e.dir));
        for &i in &doomed {
            self.dirs[i] = None;
        }
        std::fs::remove_dir_all(&path).ctx(|| format!("Deltree {}", path.display()))?;
        // Keep the working set from shrinking below its floor.
        while self.files.len() < MIN_FILES {
            self.create_file()?;
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), WorkloadError> {
        match op {
            Op::NtCreateX => self.nt_create(),
            Op::Close => self.close(),
            Op::Rename => self.rename(),
            Op::Unlink => self.unlink(),
            Op::Mkdir => {
                if self.dirs.iter().flatten().count() < MAX_DIRS {
                    self.mkdir()
                } else {
                    self.find()
                }
            }
            Op::Deltree => self.deltree(),
            Op::QPathInfo => self.qpathinfo(),
            Op::QFileInfo => self.qfileinfo(),
            Op::QFsInfo => self.qfsinfo(),
            Op::SFileInfo => self.sfileinfo(),
            Op::Find => self.find(),
            Op::WriteX => self.write(),
            Op::ReadX => self.read(),
            Op::Flush => self.flush(),
        }?;
        self.tally.ops += 1;
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<Tally, WorkloadError> {
        while !stop.load(Ordering::Relaxed) {
            let op = pick_weighted(&mut self.rng, &MIX);
            self.step(op)?;
        }
        self.open.clear();
        Ok(self.tally)
    }
}

fn run_dbench(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let clients = ctx.params.clients.unwrap_or(ctx.pick(4, 100));
    if clients == 0 || clients > 4096 {
        return Err(WorkloadError::Param(format!(
            "clients {clients}: between 1 and 4096"
        )));
    }
    let fsync = ctx.params.fsync.unwrap_or(true);
    let base = ctx.scratch.join("clients");
    (ctx.progress)(0.0, "preparing clients");
    let mut prepared = Vec::with_capacity(clients as usize);
    for i in 0..clients {
        let root = base.join(format!("client{i}"));
        prepared.push(Client::prepare(root, 0x5eed_0000 + u64::from(i), fsync)?);
    }
    // Every client's directory tree is made: the measured window starts here
    // (the step's barrier).
    ctx.begin_measuring()?;

    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(clients as usize + 1);
    let (results, secs) = std::thread::scope(|s| {
        let workers: Vec<_> = prepared
            .into_iter()
            .map(|mut c| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let r = c.run(stop);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        wait_until(start, ctx.duration, &stop, ctx.progress);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(WorkloadError::Failed("a dbench client panicked".into()))
                })
            })
            .collect();
        (results, start.elapsed().as_secs_f64())
    });
    let mut total = Tally::default();
    for r in results {
        let t = r?;
        total.ops += t.ops;
        total.bytes += t.bytes;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(Outcome {
        metrics: vec![
            Metric::higher("throughput", "MB/s", total.bytes as f64 / secs / 1e6),
            Metric::higher("ops", "ops/s", total.ops as f64 / secs),
        ],
        notes: vec![
            format!(
                "{clients} clients for {:.1} s, {} operations, {} bytes read+written",
                secs, total.ops, total.bytes
            ),
            format!(
                "NetBench mix modelled, not replayed; Flush {}",
                if fsync {
                    "= fsync (as dbench 4)"
                } else {
                    "skipped (fsync off)"
                }
            ),
        ],
    })
}

/// Sleep until `duration` has passed since `start` or a client failed, reporting progress.
fn wait_until(start: Instant, duration: Duration, stop: &AtomicBool, progress: &dyn Fn(f64, &str)) {
    loop {
        let done = start.elapsed();
        if done >= duration || stop.load(Ordering::Relaxed) {
            return;
        }
        progress(done.as_secs_f64() / duration.as_secs_f64(), "running");
        std::thread::sleep((duration - done).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn dbench_moves_bytes_and_ops() {
        let params = Params {
            clients: Some(3),
            ..Params::default()
        };
        let out = run_briefly(&DBENCH, params, None);
        assert_eq!(out.metrics[1].name, "ops");
    }

    #[test]
    fn weights_sum_to_their_scale() {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        assert!((9980..=10000).contains(&total), "{total}");
        for table in [&READ_SIZES, &WRITE_SIZES] {
            assert_eq!(table.iter().map(|(_, w)| w).sum::<u32>(), 1000);
        }
    }

    #[test]
    fn pick_weighted_follows_weights() {
        let mut rng = fastrand::Rng::with_seed(1);
        let table = [(0u8, 1u32), (1, 3)];
        let n = 40_000;
        let ones = (0..n)
            .filter(|_| pick_weighted(&mut rng, &table) == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((0.73..0.77).contains(&frac), "{frac}");
        assert_eq!(pick_weighted(&mut rng, &[(9u8, 5)]), 9);
    }

    #[test]
    fn every_op_runs_on_a_prepared_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Client::prepare(dir.path().join("client0"), 7, true).expect("prepare");
        for _ in 0..20 {
            for &(op, _) in &MIX {
                c.step(op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
            }
        }
        assert!(c.tally.ops >= 20 * MIX.len() as u64);
        assert!(c.tally.bytes > 0);
        assert!(c.files.len() >= MIN_FILES);
    }
}
