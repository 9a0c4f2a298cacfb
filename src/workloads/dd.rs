//! `dd`: copying a large file on the same file system, and
//! `dd if=/dev/zero of=/dev/null` (Camargos et al. 2008).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use super::fileio::{check_space, fill_random, mb_per_s};
use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

/// `dd if=image.iso of=copy.iso`: a large file copied on the same file system.
pub static DD_COPY: Workload = Workload {
    name: "dd-copy",
    stands_for: "dd copy of a 433 MB ISO on the same file system (Camargos et al.)",
    class: Class::Disk,
    metric: "throughput",
    unit: "MB/s",
    higher_is_better: true,
    needs_peer: false,
    description: "copies a pseudo-random file to a new file on the same file system with dd-style read/write of 512-byte blocks, fsync included",
    available: super::always,
    run: run_copy,
};

/// dd's default block size, the one the study ran with (`dd if=... of=...`, no `bs=`).
const DD_BS: u64 = 512;
/// Quick preset source size: about 0.3 s of copying here (0.5 s a sample with the
/// set-up), so that the 5 s a cell may take buy about nine samples, enough to pair
/// them with native's. Measured here (2026-12-01, 12 samples through one agent):
/// 32 MiB at 104 MB/s with a CoV of 8.0%, 128 MiB (1.9 s a sample) at 111 MB/s
/// with 9.8%.
const QUICK_COPY: u64 = 32 << 20;
/// Quick preset, no size given: the copy stops after this many run durations
/// (5 s with the quick preset's 1 s), so that a target copying 512-byte blocks at a few MB/s
/// (gVisor with ptrace, UML: 3.5–4.5 MB/s here) is measured over part of the
/// source instead of taking half a minute a repetition. The note says how much
/// was copied.
const QUICK_COPY_DURATIONS: u32 = 5;
/// The study's ISO image.
const ISO_SIZE: u64 = 433_000_000;

/// `dd if=/dev/zero of=/dev/null`: a read and a write system call per block.
pub static DD_ZERO: Workload = Workload {
    name: "dd-zero",
    stands_for: "dd if=/dev/zero of=/dev/null (Camargos et al.)",
    class: Class::Disk,
    metric: "throughput",
    unit: "MB/s",
    higher_is_better: true,
    needs_peer: false,
    description: "reads /dev/zero and writes /dev/null in dd's default 512-byte blocks: system-call and copy cost",
    available: super::always,
    run: run_zero,
};

fn run_zero(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let bs = ctx.params.block_size.map(|b| b.bytes()).unwrap_or(512) as usize;
    let mut src = File::open("/dev/zero").ctx(|| "opening /dev/zero".into())?;
    let mut dst = File::options()
        .write(true)
        .open("/dev/null")
        .ctx(|| "opening /dev/null".into())?;
    let mut buf = vec![0u8; bs];
    let start = Instant::now();
    let mut bytes = 0u64;
    loop {
        for _ in 0..64 {
            let n = src.read(&mut buf).ctx(|| "reading /dev/zero".into())?;
            dst.write_all(&buf[..n])
                .ctx(|| "writing /dev/null".into())?;
            bytes += n as u64;
        }
        if start.elapsed() >= ctx.duration {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Outcome {
        metrics: vec![Metric::higher(
            "throughput",
            "MB/s",
            bytes as f64 / secs / 1e6,
        )],
        notes: vec![format!("block size {bs} B")],
    })
}

/// Write the source image: `size` pseudo-random bytes, flushed to storage so that
/// its write-back does not run during the timed copy.
fn make_source(path: &Path, size: u64, ctx: &Ctx) -> Result<(), WorkloadError> {
    let mut f = File::create(path).ctx(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        fill_random(&mut buf[..n], &mut state);
        f.write_all(&buf[..n])
            .ctx(|| format!("writing {}", path.display()))?;
        done += n as u64;
        if done % (64 << 20) == 0 {
            (ctx.progress)(0.5 * done as f64 / size as f64, "generating source");
        }
    }
    f.sync_all()
        .ctx(|| format!("fsync of {}", path.display()))?;
    Ok(())
}

/// Fraction of `f`'s pages resident in the page cache (mmap + mincore), or `None`
/// where the kernel (or a sandbox such as gVisor) does not tell.
fn cached_fraction(f: &File, len: u64) -> Option<f64> {
    let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) }).ok()?;
    // SAFETY: a fresh shared read-only mapping chosen by the kernel (addr NULL) of a
    // file we hold open; it aliases no Rust object and is only passed to mincore.
    let addr = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            len,
            nix::libc::PROT_READ,
            nix::libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if addr == nix::libc::MAP_FAILED {
        return None;
    }
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr..addr+len` is the mapping made above and `vec` has one byte per
    // page of it, as mincore requires.
    let rc = unsafe { nix::libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: unmapping exactly the mapping created above; nothing refers to it.
    unsafe { nix::libc::munmap(addr, len) };
    if rc != 0 {
        return None;
    }
    let resident = vec.iter().filter(|&&b| b & 1 == 1).count();
    Some(resident as f64 / vec.len() as f64)
}

/// Resolve dd's parameters once for every target: dd's 512-byte blocks, and for
/// dd-copy `conv=fsync` and the faithful ISO size. The quick dd-copy keeps no size:
/// it copies for 5 durations, a time-based workload like dd-zero.
pub(super) fn resolve(name: &str, preset: super::Preset, p: &mut super::Params) {
    p.block_size.get_or_insert(crate::units::ByteSize(DD_BS));
    if name == "dd-copy" {
        p.fsync.get_or_insert(true);
        if preset == super::Preset::Faithful {
            p.size.get_or_insert(crate::units::ByteSize(ISO_SIZE));
        }
    }
}

fn run_copy(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let bs = ctx.params.block_size.map(|b| b.bytes()).unwrap_or(DD_BS);
    if bs > 64 << 20 {
        return Err(WorkloadError::Param(format!(
            "block-size {bs}: at most 64 MiB"
        )));
    }
    let fsync = ctx.params.fsync.unwrap_or(true);
    let size = ctx
        .params
        .size
        .map(|s| s.bytes())
        .unwrap_or(ctx.pick(QUICK_COPY, ISO_SIZE));
    let time_limit = match (ctx.params.size, ctx.preset) {
        (None, crate::workloads::Preset::Quick) => Some(ctx.duration * QUICK_COPY_DURATIONS),
        _ => None,
    };
    check_space(ctx.scratch, 2 * size)?;
    let src_path = ctx.scratch.join("image.iso");
    let dst_path = ctx.scratch.join("copy.iso");
    make_source(&src_path, size, ctx)?;
    let primed = ctx.prime_page_cache(size)?;
    // The source image is written: the measured window starts here (the step's barrier).
    ctx.begin_measuring()?;
    (ctx.progress)(0.5, "copying");

    let mut src = File::open(&src_path).ctx(|| format!("opening {}", src_path.display()))?;
    let cached = cached_fraction(&src, size);
    let mut buf = vec![0u8; bs as usize];
    // Timed as `dd` times itself: from the opened files to the last block (and the
    // fsync of `conv=fsync`), not the process start-up.
    let start = Instant::now();
    let mut dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&dst_path)
        .ctx(|| format!("creating {}", dst_path.display()))?;
    let mut bytes = 0u64;
    let mut blocks = 0u32;
    let mut stopped_early = false;
    loop {
        // The clock is read every 2048 blocks (1 MiB at dd's block size).
        blocks = blocks.wrapping_add(1);
        if blocks % 2048 == 0 && time_limit.is_some_and(|l| start.elapsed() >= l) {
            stopped_early = true;
            break;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx(|| format!("reading {}", src_path.display())),
        };
        dst.write_all(&buf[..n])
            .ctx(|| format!("writing {}", dst_path.display()))?;
        bytes += n as u64;
    }
    if fsync {
        dst.sync_all()
            .ctx(|| format!("fsync of {}", dst_path.display()))?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(dst);
    if bytes != size && !stopped_early {
        return Err(WorkloadError::Failed(format!(
            "copied {bytes} bytes of a {size}-byte source"
        )));
    }
    (ctx.progress)(1.0, "checking the copy");
    verify_copy(&src_path, &dst_path, bytes)?;
    std::fs::remove_file(&dst_path).ctx(|| format!("removing {}", dst_path.display()))?;
    std::fs::remove_file(&src_path).ctx(|| format!("removing {}", src_path.display()))?;
    let cache_note = match cached {
        Some(f) => format!(
            "source {:.0}% in the page cache when the copy started (generated just before)",
            f * 100.0
        ),
        None => "source page-cache residency unknown (mincore unavailable); it was generated just before".into(),
    };
    Ok(Outcome {
        metrics: vec![Metric::higher("throughput", "MB/s", mb_per_s(bytes, secs))],
        notes: vec![
            if stopped_early {
                format!(
                    "copied {bytes} B of a {size}-byte source in {bs}-byte blocks (dd's default is 512): \
                     the quick preset stops the copy after {} s",
                    time_limit.map_or(0.0, |l| l.as_secs_f64())
                )
            } else {
                format!("copied {bytes} B in {bs}-byte blocks (dd's default is 512)")
            },
            format!(
                "fsync of the copy {} in the time",
                if fsync { "included" } else { "not done" }
            ),
            cache_note,
            primed,
            "checked: the copy reads back equal to the source (outside the time)".into(),
        ],
    })
}

/// Compare the copy at `dst` with the first `bytes` of `src`, after the clock stopped
/// (`cmp` after `dd`): a layer that lost or garbled a block fails the sample.
fn verify_copy(src: &Path, dst: &Path, bytes: u64) -> Result<(), WorkloadError> {
    const BUF: usize = 1 << 20;
    let open =
        |p: &Path| File::open(p).ctx(|| format!("opening {} to check the copy", p.display()));
    let (mut s, mut d) = (open(src)?, open(dst)?);
    let len = d
        .metadata()
        .ctx(|| format!("reading the size of {}", dst.display()))?
        .len();
    if len != bytes {
        return Err(WorkloadError::Failed(format!(
            "the copy {} has {len} B, {bytes} B were written",
            dst.display()
        )));
    }
    let (mut a, mut b) = (vec![0u8; BUF], vec![0u8; BUF]);
    let mut at = 0u64;
    while at < bytes {
        let n = (bytes - at).min(BUF as u64) as usize;
        s.read_exact(&mut a[..n])
            .ctx(|| format!("reading {} at offset {at}", src.display()))?;
        d.read_exact(&mut b[..n])
            .ctx(|| format!("reading {} at offset {at}", dst.display()))?;
        if a[..n] != b[..n] {
            return Err(WorkloadError::Failed(format!(
                "the copy {} differs from the source within bytes {at}..{}",
                dst.display(),
                at + n as u64
            )));
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn dd_copy_copies_whole_file() {
        let params = Params {
            size: Some(ByteSize(3 << 20 | 100)),
            ..Params::default()
        };
        let out = run_briefly(&DD_COPY, params, None);
        assert!(out.notes[0].starts_with(&format!("copied {} B", 3 << 20 | 100)));
    }

    #[test]
    fn verify_copy_catches_a_changed_or_short_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (dir.path().join("s"), dir.path().join("d"));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src, &data).expect("write source");
        std::fs::write(&dst, &data[..2_000_000]).expect("write copy");
        verify_copy(&src, &dst, 2_000_000).expect("an equal prefix passes");
        assert!(
            verify_copy(&src, &dst, 2_500_000).is_err(),
            "a short copy fails"
        );
        let mut bad = data[..2_000_000].to_vec();
        bad[1_500_000] ^= 0x40;
        std::fs::write(&dst, &bad).expect("write bad copy");
        let e = verify_copy(&src, &dst, 2_000_000).expect_err("a changed byte fails");
        assert!(e.to_string().contains("differs"), "{e}");
    }

    #[test]
    fn quick_dd_copy_stops_at_its_time_limit() {
        // 5 × 1 ms: far less than copying 32 MiB in 512-byte blocks takes.
        let params = Params {
            duration: Some(crate::units::Dur(std::time::Duration::from_millis(1))),
            ..Params::default()
        };
        let out = run_briefly(&DD_COPY, params, None);
        assert!(
            out.notes[0].contains("the quick preset stops the copy after 0.005 s"),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn cached_fraction_sees_a_fresh_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 1 << 20]).expect("write");
        let f = File::open(&p).expect("open");
        if let Some(frac) = cached_fraction(&f, 1 << 20) {
            assert!((0.0..=1.0).contains(&frac));
        }
    }

    #[test]
    fn dd_zero_moves_bytes() {
        run_briefly(&DD_ZERO, Params::default(), None);
    }
}
