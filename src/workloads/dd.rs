//! `dd`: copying a large file on the same file system, and
//! `dd if=/dev/zero of=/dev/null` (Camargos et al. 2008).

use std::fs::File;
use std::io::{Read, Write};
use std::time::Instant;

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn dd_zero_moves_bytes() {
        run_briefly(&DD_ZERO, Params::default(), None);
    }
}
