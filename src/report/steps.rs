//! Words every format shares for the scalability and isolation steps: how many
//! instances ran, finished and failed, the figures over the finished instances
//! where they differ from those over all of them (labelled), the alignment of the
//! measured windows, and the host's scheduling lag.

use crate::results::{InstanceCounts, IsolationEntry, ScaleEntry};
use crate::units::fmt_num;

use super::view::fmt_percent;

/// `8 planned, 7 started, 6 finished, 2 failed`.
pub fn counts_text(c: &InstanceCounts) -> String {
    format!(
        "{} planned, {} started, {} finished, {} failed",
        c.planned, c.started, c.finished, c.failed
    )
}

/// The aggregate over the finished instances only (mean of them × n), when some
/// instance failed: `finished instances only: 1200 (6 of 8)`.
pub fn finished_aggregate(e: &ScaleEntry) -> Option<String> {
    if e.counts.failed == 0 {
        return None;
    }
    let a = e.aggregate?.finished_mean_times_n?;
    Some(format!(
        "finished instances only: {} ({} of {})",
        fmt_num(a),
        e.counts.finished,
        e.instances
    ))
}

/// `0.4 ms apart, overlap 98%`: how far apart the measured windows started and
/// how much of the step all of them measured together.
pub fn alignment(e: &ScaleEntry) -> String {
    let spread = e
        .barrier_spread_ms
        .map_or("–".to_string(), |ms| format!("{ms:.1} ms apart"));
    match e.window_overlap {
        Some(o) => format!("{spread}, overlap {}", fmt_percent(o * 100.0)),
        None => spread,
    }
}

/// When a well-behaved instance returned nothing: `includes 1 DNR counted as
/// 100%; finished instances only: 0.5%`.
pub fn well_behaved_dnr(e: &IsolationEntry) -> Option<String> {
    if e.well_behaved_dnr.is_empty() {
        return None;
    }
    let mut s = format!(
        "includes {} DNR counted as 100% ({})",
        e.well_behaved_dnr.len(),
        e.well_behaved_dnr
            .iter()
            .map(|d| format!("#{}: {}", d.instance, d.reason))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Some(p) = e.well_behaved_finished {
        s.push_str(&format!("; finished instances only: {}", fmt_percent(p)));
    }
    Some(s)
}

/// `host scheduling lag ≤ 22.0 ms; 4 planned, 4 started, 4 finished, 0 failed`.
pub fn round_facts(e: &IsolationEntry) -> String {
    let lag = e.host_sched_lag_ms.map_or(String::new(), |l| {
        format!("host scheduling lag ≤ {l:.1} ms; ")
    });
    format!("{lag}{}", counts_text(&e.counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::synthetic_scale;

    #[test]
    fn finished_figures_show_only_where_an_instance_failed() {
        let es = synthetic_scale(&["a", "b", "c"]);
        let ok = es.iter().find(|e| e.dnr.is_empty()).unwrap();
        assert_eq!(finished_aggregate(ok), None);
        let mut bad = es.iter().find(|e| !e.dnr.is_empty()).unwrap().clone();
        bad.aggregate.as_mut().unwrap().finished_mean_times_n = Some(1234.0);
        let t = finished_aggregate(&bad).unwrap();
        assert!(t.starts_with("finished instances only: 1234 ("), "{t}");
        assert!(counts_text(&bad.counts).contains("failed"));
    }
}
