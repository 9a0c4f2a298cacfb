//! Probes of single instructions and system calls: getppid, the clock through
//! the vDSO and through a system call, cpuid, rdtsc, open/close and stat.

use std::ffi::CString;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;

use nix::libc;

use super::{budget, last_os_error, outcome, timed};
use crate::workloads::{Ctx, IoContext, Outcome, WorkloadError};

pub(super) fn getppid(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let (n, t) = timed(budget(ctx), 1000, || {
        // SAFETY: getppid takes no arguments and cannot fail; the raw system call
        // is made so that no C library can answer it from a cache.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

fn clock_ns(ts: &libc::timespec) -> i64 {
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

pub(super) fn clock_vdso(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let (n, t) = timed(budget(ctx), 1000, || {
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        black_box(clock_ns(&ts));
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

pub(super) fn clock_syscall(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let (n, t) = timed(budget(ctx), 1000, || {
        // SAFETY: the raw clock_gettime system call writes one timespec to `ts`,
        // which is valid and writable.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clock_gettime,
                libc::CLOCK_MONOTONIC,
                &mut ts as *mut libc::timespec,
            )
        };
        if rc != 0 {
            return Err(last_os_error("clock_gettime system call"));
        }
        black_box(clock_ns(&ts));
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

pub(super) fn cpuid(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let (n, t) = timed(budget(ctx), 100, || {
        // `__cpuid` is a safe fn since Rust 1.94 but unsafe in older compilers.
        #[allow(unused_unsafe)]
        // SAFETY: cpuid is available on every x86_64 CPU and only reads.
        let r = unsafe { core::arch::x86_64::__cpuid(0) };
        black_box(r.eax);
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

pub(super) fn rdtsc(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let (n, t) = timed(budget(ctx), 1000, || {
        // SAFETY: rdtsc is available on every x86_64 CPU and only reads.
        black_box(unsafe { core::arch::x86_64::_rdtsc() });
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

/// A file in the scratch directory for open/close and stat, as a C path.
fn scratch_file(ctx: &Ctx) -> Result<CString, WorkloadError> {
    let path = ctx.scratch.join("probe-file");
    std::fs::write(&path, b"virtmark probe\n").ctx(|| format!("creating {}", path.display()))?;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| WorkloadError::Failed(format!("{} holds a NUL byte", path.display())))
}

pub(super) fn open_close(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let path = scratch_file(ctx)?;
    let (n, t) = timed(budget(ctx), 100, || {
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(last_os_error("opening the probe file"));
        }
        // SAFETY: `fd` was just opened here and is closed once.
        unsafe { libc::close(fd) };
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}

pub(super) fn stat(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let path = scratch_file(ctx)?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let (n, t) = timed(budget(ctx), 100, || {
        // SAFETY: `path` is NUL-terminated and `st` is valid and writable.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            return Err(last_os_error("stat of the probe file"));
        }
        black_box(st.st_size);
        Ok(())
    })?;
    Ok(outcome(n, t, vec![]))
}
