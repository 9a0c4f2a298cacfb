//! Memory probes: minor page faults, mmap/munmap, random reads far beyond and
//! well inside the TLB's reach, and a user-mode instruction loop.

use std::hint::black_box;
use std::time::{Duration, Instant};

use nix::libc;

use super::{budget, last_os_error, outcome, timed};
use crate::workloads::{Ctx, Outcome, WorkloadError};

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Map `len` bytes; `populate` faults every page in at once (MAP_POPULATE);
    /// transparent huge pages are refused, so that every page is 4 KiB and each
    /// first touch is one fault and each page one TLB entry.
    fn new(len: usize, populate: bool) -> Result<Mapping, WorkloadError> {
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh anonymous mapping chosen by the kernel (addr NULL); it
        // aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_os_error("mmap of anonymous memory"));
        }
        // SAFETY: advice on the mapping made above; failure (no THP support,
        // a sandbox that ignores it) only leaves the default.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; nothing refers to it
        // once the Mapping is dropped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

pub(super) fn page_fault(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let page = page_size();
    let len = 16 << 20;
    let budget = budget(ctx);
    let wall = Instant::now();
    let mut faults = 0u64;
    let mut time = Duration::ZERO;
    loop {
        let m = Mapping::new(len, false)?;
        let t0 = Instant::now();
        for off in (0..len).step_by(page) {
            // SAFETY: `off` < `len`: inside the writable mapping `m`.
            unsafe { std::ptr::write_volatile(m.ptr.add(off), 1) };
        }
        time += t0.elapsed();
        faults += (len / page) as u64;
        drop(m);
        if wall.elapsed() >= budget {
            break;
        }
    }
    Ok(outcome(
        faults,
        time,
        vec![format!(
            "{page}-byte pages, 16 MiB mappings; map and unmap not timed"
        )],
    ))
}

pub(super) fn mmap(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let (n, t) = timed(budget(ctx), 10, || {
        let m = Mapping::new(1 << 20, false)?;
        black_box(m.ptr);
        Ok(())
    })?;
    Ok(outcome(n, t, vec!["1 MiB, not touched".into()]))
}

/// A random cyclic chain through `pages` pages of a populated mapping, one word
/// per page at a varying cache line; followed for the budget, ns per read.
fn chase(ctx: &Ctx, pages: usize, what: &str) -> Result<Outcome, WorkloadError> {
    let page = page_size();
    let m = Mapping::new(pages * page, true)?;
    let words = page / 8;
    let slot = |p: usize| p * words + (p * 7 % (words / 8)) * 8;
    // Sattolo's algorithm: a random permutation that is one single cycle.
    let mut order: Vec<usize> = (0..pages).collect();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for i in (1..pages).rev() {
        let j = rng.usize(0..i);
        order.swap(i, j);
    }
    let base = m.ptr.cast::<usize>();
    for i in 0..pages {
        let from = slot(order[i]);
        let to = slot(order[(i + 1) % pages]);
        // SAFETY: `from` indexes a word inside the mapping (page < pages).
        unsafe { base.add(from).write(to) };
    }
    let mut at = slot(order[0]);
    let (n, t) = timed(budget(ctx), 10_000, || {
        // SAFETY: every stored index is a `slot` inside the mapping.
        at = unsafe { base.add(at).read_volatile() };
        Ok(())
    })?;
    black_box(at);
    Ok(outcome(
        n,
        t,
        vec![format!(
            "{what}: {pages} pages of {page} bytes ({} KiB), dependent random reads",
            (pages * page) >> 10
        )],
    ))
}

pub(super) fn tlb_far(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    // 256 MiB (1 GiB faithful) of 4 KiB pages: about 40 (170) times the reach of
    // a 1536-entry second-level TLB.
    let bytes: usize = ctx.pick(256 << 20, 1 << 30);
    chase(ctx, bytes / page_size(), "large working set")
}

pub(super) fn tlb_near(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    chase(ctx, 32, "small working set")
}

pub(super) fn user_loop(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    const STEPS: u64 = 1000;
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    let (n, t) = timed(budget(ctx), 100, || {
        for _ in 0..STEPS {
            // xorshift64: each step depends on the last.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x = black_box(x);
        Ok(())
    })?;
    Ok(outcome(
        n * STEPS,
        t,
        vec!["one op = one xorshift64 step (6 dependent integer instructions)".into()],
    ))
}
