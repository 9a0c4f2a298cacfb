//! `rr-paced`: the well-behaved load of the isolation step (Xu et al.; Matthews et
//! al.): requests to the peer at a steady offered rate, each of which must be
//! answered within a deadline to count as a good response. The headline is the
//! good-response rate; the isolation step reports how much it degrades when a
//! neighbour misbehaves.
//!
//! Parameters read: `rate` (requests per second, default 500), `deadline` (default
//! 10 ms), and the context's duration. Each request's latency runs from its
//! intended send time (its slot), not from when it was actually sent, so a stall
//! also delays the requests scheduled behind it (Gil Tene's coordinated omission;
//! wrk2 and HdrHistogram measure the same way). A slot already later than the
//! deadline when its turn comes is missed: offered, not good, recorded at its
//! lateness. p50, p99, p99.9 and max come from a histogram of every request.

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
    // The connection is set-up: the measured window starts here, after the barrier.
    ctx.begin_measuring()?;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut hist = Histogram::new();
    let mut max_ns = 0u64;
    let (mut offered, mut good, mut missed) = (0u64, 0u64, 0u64);
    let mut resp = [0u8; 1];
    let start = Instant::now();
    let end = start + ctx.duration;
    let mut slot = start;
    let mut record = |ns: u64, hist: &mut Histogram| {
        hist.record(ns);
        max_ns = max_ns.max(ns);
    };
    while slot < end {
        let now = Instant::now();
        if now < slot {
            std::thread::sleep(slot - now);
        }
        let now = Instant::now();
        offered += 1;
        if now.duration_since(slot) > deadline {
            // Already late before it could be sent (an earlier response stalled):
            // a missed slot. It counts as offered and not good, at the lateness it
            // had when skipped, a lower bound of what it would have waited.
            missed += 1;
            record(now.duration_since(slot).as_nanos() as u64, &mut hist);
            slot += period;
            continue;
        }
        s.write_all(b"q")
            .ctx(|| format!("peer {addr}: sending a request"))?;
        s.read_exact(&mut resp)
            .ctx(|| format!("peer {addr}: reading a response"))?;
        // From the intended send time, not the actual one (Tene's coordinated
        // omission; wrk2): a stall delays the requests queued behind it too.
        let latency = slot.elapsed();
        record(latency.as_nanos() as u64, &mut hist);
        if latency <= deadline {
            good += 1;
        }
        slot += period;
    }
    let secs = ctx.duration.as_secs_f64();
    let us = |ns: u64| ns as f64 / 1e3;
    Ok(Outcome {
        metrics: vec![
            Metric::higher("good_rate", "resp/s", good as f64 / secs),
            Metric::higher(
                "good_fraction",
                "%",
                100.0 * good as f64 / offered.max(1) as f64,
            ),
            Metric::lower("mean_latency", "us", hist.mean() / 1e3),
            Metric::lower("p50_latency", "us", us(hist.quantile(0.5))),
            Metric::lower("p99_latency", "us", us(hist.quantile(0.99))),
            Metric::lower("p999_latency", "us", us(hist.quantile(0.999))),
            Metric::lower("max_latency", "us", us(max_ns)),
        ],
        notes: vec![
            format!(
                "{offered} requests offered at {rate}/s, {good} answered within {} ms; \
                 {missed} slot(s) missed (late before they could be sent)",
                deadline.as_secs_f64() * 1e3
            ),
            format!(
                "latency from each request's intended send time, quantiles from a histogram \
                 of all {} requests (log-linear, 32 sub-buckets per power of two: within 1.6%)",
                hist.count()
            ),
        ],
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

    /// A stall of one response must delay every request scheduled behind it:
    /// measured from the intended send time, the 200 ms stall makes about 40
    /// requests late at 200/s, not one.
    #[test]
    fn a_stall_makes_the_requests_behind_it_late_not_just_one() {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut header = String::new();
            r.read_line(&mut header).unwrap();
            let mut w = s;
            w.write_all(b"OK\n").unwrap();
            let mut b = [0u8; 1];
            let mut n = 0;
            while r.read_exact(&mut b).is_ok() {
                n += 1;
                if n == 20 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                if w.write_all(b"r").is_err() {
                    break;
                }
            }
        });
        let out = run_briefly(
            &RR_PACED,
            Params {
                rate: Some(200),
                duration: Some("1s".parse().unwrap()),
                ..Params::default()
            },
            Some(addr),
        );
        let get = |name: &str| out.metrics.iter().find(|m| m.name == name).unwrap().value;
        // 200 slots; the stall covers ~40 of them.
        assert!(get("good_fraction") < 85.0, "{out:?}");
        assert!(get("max_latency") >= 190_000.0, "{out:?}");
        assert!(get("p99_latency") >= 100_000.0, "{out:?}");
        assert!(get("p50_latency") < 10_000.0, "{out:?}");
        assert!(out.notes[0].contains("missed"), "{out:?}");
    }
}
