//! `rr-paced`: the well-behaved load of the isolation step (Xu et al.; Matthews et
//! al.): requests to the peer at a steady offered rate, each of which must be
//! answered within a deadline to count as a good response. The headline is the
//! good-response rate; the isolation step reports how much it degrades when a
//! neighbour misbehaves.
//!
//! Parameters read: `rate` (requests per second, default 500), `deadline` (default
//! 10 ms), and the context's duration. A request whose slot has passed while an
//! earlier response was late is counted as offered and not good, so the offered
//! rate stays steady whatever the target does.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::net::{open, Histogram};
use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};
use crate::peer::Test;

/// Requests at a steady rate; good responses per second.
pub static RR_PACED: Workload = Workload {
    name: "rr-paced",
    stands_for: "isolation clients: netperf-style request/response at a steady rate (Xu et al.)",
    class: Class::Network,
    metric: "good_rate",
    unit: "resp/s",
    higher_is_better: true,
    needs_peer: true,
    description: "1-byte requests at a steady offered rate (500/s); a response within 10 ms is good; good responses per second",
    available: super::always,
    run: run_paced,
};

fn run_paced(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let addr = ctx.peer()?;
    let rate = ctx.params.rate.unwrap_or(500);
    if rate == 0 || rate > 100_000 {
        return Err(WorkloadError::Param(format!(
            "rate {rate}/s is out of range (1 to 100000)"
        )));
    }
    let deadline = ctx
        .params
        .deadline
        .map(|d| d.get())
        .unwrap_or(Duration::from_millis(10));
    let (mut s, _) = open(
        addr,
        &Test::Rr {
            req: 1,
            resp: 1,
            cpu: None,
        },
    )?;
    s.set_nodelay(true).ctx(|| "setting TCP_NODELAY".into())?;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut hist = Histogram::new();
    let (mut offered, mut good) = (0u64, 0u64);
    let mut resp = [0u8; 1];
    let start = Instant::now();
    let end = start + ctx.duration;
    let mut slot = start;
    while slot < end {
        let now = Instant::now();
        if now < slot {
            std::thread::sleep(slot - now);
        }
        let sent = Instant::now();
        s.write_all(b"q")
            .ctx(|| format!("peer {addr}: sending a request"))?;
        s.read_exact(&mut resp)
            .ctx(|| format!("peer {addr}: reading a response"))?;
        let latency = sent.elapsed();
        hist.record(latency.as_nanos() as u64);
        offered += 1;
        if latency <= deadline {
            good += 1;
        }
        // Slots that passed while waiting were offered and not answered in time.
        slot += period;
        while slot + period <= Instant::now() && slot < end {
            offered += 1;
            slot += period;
        }
    }
    let secs = ctx.duration.as_secs_f64();
    Ok(Outcome {
        metrics: vec![
            Metric::higher("good_rate", "resp/s", good as f64 / secs),
            Metric::higher(
                "good_fraction",
                "%",
                100.0 * good as f64 / offered.max(1) as f64,
            ),
            Metric::lower("mean_latency", "us", hist.mean() / 1e3),
            Metric::lower("p99_latency", "us", hist.quantile(0.99) as f64 / 1e3),
        ],
        notes: vec![format!(
            "{offered} requests offered at {rate}/s, {good} answered within {} ms",
            deadline.as_secs_f64() * 1e3
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn paced_requests_are_answered_in_time_on_loopback() {
        let addr = crate::peer::Peer::bind("127.0.0.1:0")
            .unwrap()
            .spawn()
            .unwrap();
        let out = run_briefly(
            &RR_PACED,
            Params {
                rate: Some(200),
                duration: Some("500ms".parse().unwrap()),
                ..Params::default()
            },
            Some(addr),
        );
        // 200/s for 0.5 s offers 100 requests; nearly all are good on loopback.
        let good = out.metrics[0].value;
        assert!(good > 100.0 && good <= 202.0, "good rate {good}");
    }
}
