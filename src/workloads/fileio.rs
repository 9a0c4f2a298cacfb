//! `fileio`: IOZone's sequential tests, `iozone -i 0 -i 1 -r 64k -e` (White & Pilbeam's
//! "read/write, 64 KB" de-facto standard).
//!
//! One file goes through iozone's four phases in order: write (a new file), rewrite
//! (the same file again, its blocks already allocated), read and reread. As with
//! `iozone -e`, the write phases include the `fsync` before close in their time; as in
//! iozone, the clock starts after `open` and stops before `close`. Without `direct`, the
//! reads find the file in the page cache when it fits there, exactly as iozone's do
//! unless it is given a file larger than memory (the faithful preset) or `-I`
//! (`direct`, O_DIRECT).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

/// IOZone write/rewrite/read/reread with 64 KiB records.
pub static FILEIO: Workload = Workload {
    name: "fileio",
    stands_for: "IOZone -i 0 -i 1 -r 64k -e (White & Pilbeam)",
    class: Class::Disk,
    metric: "write",
    unit: "MB/s",
    higher_is_better: true,
    needs_peer: false,
    description: "writes, rewrites, reads and rereads one file sequentially in 64 KiB records, fsync included in the write phases",
    available: super::always,
    run: run_fileio,
};

/// Alignment that satisfies O_DIRECT on every Linux file system (page size).
pub(super) const DIRECT_ALIGN: usize = 4096;
/// Largest record we accept: one read/write call per record, kept in memory.
const MAX_BLOCK: u64 = 64 << 20;
/// Quick preset file size: a third of a second a sample here, so that the 5 s a
/// cell may take buy more than ten samples, enough to pair them with native's.
/// Measured here (2026-12-01, through one agent): 64 MiB wrote at 467 MB/s with a
/// CoV of 3.8% over 16 samples of 0.34 s, 256 MiB at 483 MB/s with 4.3% over 8
/// samples of 1.3 s (three to a cell).
const QUICK_SIZE: u64 = 64 << 20;
/// Upper bound of the faithful default (2 × RAM) so a big host does not fill its disk.
const FAITHFUL_CAP: u64 = 32 << 30;

/// A zero-copy I/O buffer aligned for O_DIRECT, without `unsafe`: an over-sized
/// vector viewed from its first aligned byte.
pub(super) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` bytes starting on a [`DIRECT_ALIGN`] boundary, filled with
    /// pseudo-random bytes: like fio's default buffers, incompressible, so that no
    /// layer (a host file system, a compressing or zero-detecting disk) gets an easy
    /// ride that the real data of a workload would not give it.
    pub(super) fn new(len: usize) -> Self {
        let mut raw = vec![0u8; len + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        fill_random(&mut raw[start..start + len], &mut state);
        AlignedBuf { raw, start, len }
    }
    #[cfg(test)]
    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Fill `buf` with xorshift64* output: incompressible, non-zero content at memory speed.
pub(super) fn fill_random(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Write `offset + i * 4096` into the first 8 bytes of every 4 KiB block of a record
/// about to be written at `offset`, so that no two blocks of the file are equal and a
/// deduplicating layer cannot collapse them (fio's `scramble_buffers` does the same).
pub(super) fn stamp(record: &mut [u8], offset: u64) {
    for (i, block) in record.chunks_mut(4096).enumerate() {
        let tag = (offset + (i as u64) * 4096).to_le_bytes();
        let n = block.len().min(8);
        block[..n].copy_from_slice(&tag[..n]);
    }
}

/// Check the stamps of the 4 KiB blocks that start inside `data`, read from file
/// offset `offset` (a stamp cut by the end of `data` is skipped).
pub(super) fn check_stamps(data: &[u8], offset: u64, path: &Path) -> Result<(), WorkloadError> {
    let first = offset.div_ceil(4096) * 4096;
    let end = offset + data.len() as u64;
    let mut at = first;
    while at + 8 <= end {
        let i = (at - offset) as usize;
        if data[i..i + 8] != at.to_le_bytes() {
            return Err(WorkloadError::Failed(format!(
                "{}: the block read back at offset {at} is not the one written there",
                path.display()
            )));
        }
        at += 4096;
    }
    Ok(())
}

/// Megabytes (10^6 B) per second.
pub(super) fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs.max(1e-9) / 1e6
}

/// `size` rounded up to a whole number of `bs` records.
fn round_up(size: u64, bs: u64) -> u64 {
    size.div_ceil(bs) * bs
}

/// Physical memory as the (possibly virtual) machine sees it, from `/proc/meminfo`.
pub(super) fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
pub(super) fn free_space(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Fail early, with a clear message, when `need` bytes will not fit in `dir`.
pub(super) fn check_space(dir: &Path, need: u64) -> Result<(), WorkloadError> {
    match free_space(dir) {
        Some(free) if free < need.saturating_add(need / 16) => Err(WorkloadError::Param(format!(
            "size: {need} bytes needed but only {free} free in {}; give a smaller `size`",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Faithful default: twice the memory (a file the page cache cannot hold, as for
/// IOZone's "past the cache" runs), at most 32 GiB and half the free space.
fn faithful_size(scratch: &Path) -> (u64, String) {
    let mem = mem_total().unwrap_or(2 << 30);
    let mut size = mem.saturating_mul(2).min(FAITHFUL_CAP);
    let mut why = format!("2 x RAM ({} MiB)", mem >> 20);
    if size == FAITHFUL_CAP && mem.saturating_mul(2) > FAITHFUL_CAP {
        why = format!(
            "capped at {} GiB (2 x RAM would be {} MiB)",
            FAITHFUL_CAP >> 30,
            (2 * mem) >> 20
        );
    }
    if let Some(free) = free_space(scratch) {
        if size > free / 2 {
            size = free / 2;
            why = format!(
                "half the free space ({} MiB); may fit in the page cache",
                free >> 20
            );
        }
    }
    (size, why)
}

/// Resolve fileio's parameters once for every target: quick 64 MiB; faithful twice
/// the memory each target gets (IOZone's "past the cache" file), at most 32 GiB; 64
/// KiB records, fsync, buffered.
pub(super) fn resolve(preset: super::Preset, p: &mut super::Params, host: &super::Host) {
    if p.size.is_none() {
        let size = match preset {
            super::Preset::Quick => QUICK_SIZE,
            super::Preset::Faithful => host.memory.saturating_mul(2).min(FAITHFUL_CAP),
        };
        p.size = Some(crate::units::ByteSize(size));
    }
    p.block_size.get_or_insert(crate::units::ByteSize(64 << 10));
    p.fsync.get_or_insert(true);
    p.direct.get_or_insert(false);
}

pub(super) fn open_flags(direct: bool) -> i32 {
    if direct {
        nix::libc::O_DIRECT
    } else {
        0
    }
}

/// One write pass: `size` bytes in `buf`-sized records, then `fsync` when asked.
/// The clock runs from after `open` to before `close`. Returns seconds.
fn write_pass(
    path: &Path,
    fresh: bool,
    size: u64,
    buf: &mut AlignedBuf,
    direct: bool,
    fsync: bool,
) -> Result<f64, WorkloadError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(fresh)
        .truncate(fresh)
        .custom_flags(open_flags(direct))
        .open(path)
        .ctx(|| format!("opening {} for writing", path.display()))?;
    let data = buf.as_mut_slice();
    let start = Instant::now();
    let mut done = 0u64;
    while done < size {
        stamp(data, done);
        f.write_all(data)
            .ctx(|| format!("writing {} at offset {done}", path.display()))?;
        done += data.len() as u64;
    }
    if fsync {
        f.sync_all()
            .ctx(|| format!("fsync of {}", path.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    Ok(secs)
}

/// One read pass over the whole file in `buf`-sized records. Returns seconds.
fn read_pass(
    path: &Path,
    size: u64,
    buf: &mut AlignedBuf,
    direct: bool,
) -> Result<f64, WorkloadError> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(open_flags(direct))
        .open(path)
        .ctx(|| format!("opening {} for reading", path.display()))?;
    let start = Instant::now();
    let done = read_to_end(&mut f, buf.as_mut_slice(), path)?;
    let secs = start.elapsed().as_secs_f64();
    if done != size {
        return Err(WorkloadError::Failed(format!(
            "{}: read {done} bytes, expected {size}",
            path.display()
        )));
    }
    Ok(secs)
}

/// Read `f` to its end, record by record, into the same buffer; returns bytes read.
/// Every 4 KiB block read back must carry the stamp [`stamp`] wrote into it (its own
/// offset): a layer that returned zeros, stale or misplaced blocks fails the sample.
/// The check reads 8 bytes of every 4096, so it costs next to nothing in the clock.
fn read_to_end(f: &mut File, buf: &mut [u8], path: &Path) -> Result<u64, WorkloadError> {
    let mut done = 0u64;
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(done),
            Ok(n) => {
                check_stamps(&buf[..n], done, path)?;
                done += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading {} at offset {done}", path.display())),
        }
    }
}

fn run_fileio(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let bs = ctx.params.block_size.map(|b| b.bytes()).unwrap_or(64 << 10);
    let direct = ctx.params.direct.unwrap_or(false);
    let fsync = ctx.params.fsync.unwrap_or(true);
    if bs > MAX_BLOCK {
        return Err(WorkloadError::Param(format!(
            "block-size {bs}: at most {MAX_BLOCK} bytes"
        )));
    }
    if direct && bs % DIRECT_ALIGN as u64 != 0 {
        return Err(WorkloadError::Param(format!(
            "block-size {bs}: with direct it must be a multiple of {DIRECT_ALIGN}"
        )));
    }
    let (size, size_why) = match (ctx.params.size, ctx.preset) {
        (Some(s), _) => (s.bytes(), "as asked".to_string()),
        (None, super::Preset::Quick) => (QUICK_SIZE, "quick preset".to_string()),
        (None, super::Preset::Faithful) => faithful_size(ctx.scratch),
    };
    let size = round_up(size.max(bs), bs);
    check_space(ctx.scratch, size)?;

    let path = ctx.scratch.join("iozone.tmp");
    let mut buf = AlignedBuf::new(bs as usize);
    let primed = if direct {
        None
    } else {
        Some(ctx.prime_page_cache(size)?)
    };
    // The buffer is allocated: the measured window starts here (the step's barrier).
    ctx.begin_measuring()?;
    let mut secs = [0f64; 4];
    (ctx.progress)(0.0, "write");
    secs[0] = write_pass(&path, true, size, &mut buf, direct, fsync)?;
    (ctx.progress)(0.25, "rewrite");
    secs[1] = write_pass(&path, false, size, &mut buf, direct, fsync)?;
    (ctx.progress)(0.5, "read");
    secs[2] = read_pass(&path, size, &mut buf, direct)?;
    (ctx.progress)(0.75, "reread");
    secs[3] = read_pass(&path, size, &mut buf, direct)?;
    std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;

    let names = ["write", "rewrite", "read", "reread"];
    let metrics = names
        .iter()
        .zip(secs)
        .map(|(n, s)| Metric::higher(n, "MB/s", mb_per_s(size, s)))
        .collect();
    let mem = mem_total();
    let cache = if direct {
        "O_DIRECT: page cache bypassed".to_string()
    } else if mem.is_some_and(|m| size < m) {
        "buffered: file smaller than RAM, reads are likely served from the page cache (as iozone's)"
            .to_string()
    } else {
        "buffered: file larger than RAM, reads mostly come from the device".to_string()
    };
    let mut notes = vec![
        format!("file size {size} B ({size_why}), record {bs} B"),
        format!(
            "fsync before close {} in write/rewrite time",
            if fsync { "included" } else { "not done" }
        ),
        cache,
    ];
    notes.extend(primed);
    Ok(Outcome { metrics, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn stamps_written_are_checked_on_read() {
        let path = Path::new("f");
        let mut rec = vec![7u8; 3 * 4096];
        stamp(&mut rec, 8192);
        check_stamps(&rec, 8192, path).expect("stamped record passes");
        // Read back in pieces that do not start on a block.
        check_stamps(&rec[100..], 8192 + 100, path).expect("a partial read passes");
        let mut bad = rec.clone();
        bad[4096] ^= 1;
        assert!(
            check_stamps(&bad, 8192, path).is_err(),
            "a changed stamp fails"
        );
        assert!(
            check_stamps(&rec, 0, path).is_err(),
            "a block read back at the wrong offset fails"
        );
        assert!(
            check_stamps(&[0u8; 8192], 4096, path).is_err(),
            "zeros fail"
        );
    }

    #[test]
    fn fileio_measures_four_phases() {
        let params = Params {
            size: Some(ByteSize::mib(8)),
            ..Params::default()
        };
        let out = run_briefly(&FILEIO, params, None);
        let names: Vec<_> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["write", "rewrite", "read", "reread"]);
    }

    #[test]
    fn fileio_direct_or_clear_error() {
        // tmpfs refuses O_DIRECT; a disk-backed scratch accepts it.
        let params = Params {
            size: Some(ByteSize::mib(4)),
            direct: Some(true),
            fsync: Some(false),
            ..Params::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = Ctx {
            preset: crate::workloads::Preset::Quick,
            duration: std::time::Duration::from_millis(100),
            params: &params,
            scratch: dir.path(),
            peer: None,
            progress: &|_, _| {},
            begin: &|| Ok(()),
        };
        match run_fileio(&ctx) {
            Ok(out) => assert!(out.metrics.iter().all(|m| m.value > 0.0)),
            Err(e) => assert_eq!(e.kind(), "io", "{e}"),
        }
    }

    #[test]
    fn direct_rejects_unaligned_records() {
        let params = Params {
            block_size: Some(ByteSize(1000)),
            direct: Some(true),
            ..Params::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = Ctx {
            preset: crate::workloads::Preset::Quick,
            duration: std::time::Duration::from_millis(100),
            params: &params,
            scratch: dir.path(),
            peer: None,
            progress: &|_, _| {},
            begin: &|| Ok(()),
        };
        let err = run_fileio(&ctx).expect_err("unaligned direct record");
        assert_eq!(err.kind(), "invalid_param");
    }

    #[test]
    fn aligned_buffer_is_aligned_and_patterned() {
        let b = AlignedBuf::new(3 * DIRECT_ALIGN);
        assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(b.as_slice().len(), 3 * DIRECT_ALIGN);
        assert!(b.as_slice().iter().any(|&x| x != 0));
    }

    #[test]
    fn stamp_tags_every_block_with_its_offset() {
        let mut rec = vec![0xffu8; 2 * 4096 + 3];
        stamp(&mut rec, 65536);
        assert_eq!(rec[..8], 65536u64.to_le_bytes());
        assert_eq!(rec[4096..4104], (65536u64 + 4096).to_le_bytes());
        assert_eq!(rec[8192..], (65536u64 + 8192).to_le_bytes()[..3]);
        assert_eq!(rec[8], 0xff);
    }

    #[test]
    fn random_fill_is_deterministic_and_nonzero() {
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        let (mut sa, mut sb) = (1u64, 1u64);
        fill_random(&mut a, &mut sa);
        fill_random(&mut b, &mut sb);
        assert_eq!(a, b);
        // xorshift64* from state 1: 1 ^ 0 = 1, then 1 ^ (1 << 25) = 0x2000001, then >> 27 adds 0.
        let first = u64::from_le_bytes(a[..8].try_into().expect("8 bytes"));
        assert_eq!(first, 0x2000001u64.wrapping_mul(0x2545_f491_4f6c_dd1d));
        assert_eq!(sa, sb);
    }

    #[test]
    fn helpers_compute_by_hand() {
        assert_eq!(round_up(10, 4), 12);
        assert_eq!(round_up(12, 4), 12);
        assert_eq!(mb_per_s(2_000_000, 0.5), 4.0);
        let meminfo = "MemTotal:       24684512 kB\nMemFree:        20114336 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24684512 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
