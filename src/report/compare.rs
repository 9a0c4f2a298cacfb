//! `virtmark compare RUN_A RUN_B`: per (workload, target, headline metric) found in
//! both runs, the change of the median and of the ratio to native, and whether the
//! change is significant by a Mann–Whitney U test over the kept raw samples.
//!
//! A change is *flagged* when it is beyond the threshold (relative change of the
//! median, in either direction) and significant (p ≤ α). The command exits 1 when
//! anything is flagged, so it can gate CI.

use std::fmt::Write;

use comfy_table::{presets, Cell, CellAlignment, Table};

use super::fmt_num;
use super::view::fmt_ratio;
use crate::error::user;
use crate::fingerprint::Fingerprint;
use crate::results::RunRecord;
use crate::stats::{self, RankTest};

/// Options of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Smallest relative change of the median that counts (0.05 = 5%).
    pub threshold: f64,
    /// Significance level of the test.
    pub alpha: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold: 0.05,
            alpha: 0.05,
        }
    }
}

/// What became of one (workload, target, metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Better beyond the threshold, significantly.
    Improved,
    /// Worse beyond the threshold, significantly.
    Regressed,
    /// Within the threshold.
    Unchanged,
    /// Beyond the threshold but not significant (too few samples or too noisy).
    Inconclusive,
}

impl Verdict {
    /// Lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "REGRESSED",
            Verdict::Unchanged => "unchanged",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One matched (workload, target, headline metric).
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Target name.
    pub target: String,
    /// Metric name.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Median in run A.
    pub median_a: f64,
    /// Median in run B.
    pub median_b: f64,
    /// Relative change, positive = better whatever the unit
    /// (`ratio(B, A, higher_is_better) − 1`).
    pub change: f64,
    /// Ratio to native in A and in B.
    pub ratio_a: Option<f64>,
    /// Ratio to native in B.
    pub ratio_b: Option<f64>,
    /// Kept samples in A and B.
    pub n: (usize, usize),
    /// The test over the kept samples.
    pub test: RankTest,
    /// The conclusion.
    pub verdict: Verdict,
}

/// A whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Run ids.
    pub a: String,
    /// Run B's id.
    pub b: String,
    /// Matched results.
    pub rows: Vec<Row>,
    /// `workload on target` found only in A.
    pub only_a: Vec<String>,
    /// Only in B.
    pub only_b: Vec<String>,
    /// What differs between the host fingerprints.
    pub host_differences: Vec<String>,
    /// The options used.
    pub options: Options,
}

impl Comparison {
    /// Rows flagged: improved or regressed.
    pub fn flagged(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Improved | Verdict::Regressed))
            .count()
    }
}

/// What differs between two host fingerprints (CPU model, CPUs, memory, kernel,
/// virtualization), one phrase each.
pub fn host_differences(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, x: String, y: String| {
        if x != y {
            d.push(format!("{what} {x:?} vs {y:?}"));
        }
    };
    cmp("host name", a.hostname.clone(), b.hostname.clone());
    cmp("cpu model", a.cpu_model.clone(), b.cpu_model.clone());
    cmp("cpus", a.cpus.to_string(), b.cpus.to_string());
    cmp(
        "memory",
        super::html::human_bytes(a.memory_bytes),
        super::html::human_bytes(b.memory_bytes),
    );
    cmp("kernel", a.kernel.clone(), b.kernel.clone());
    cmp(
        "virtualization",
        format!("{} {}", a.verdict.kind.as_str(), a.verdict.technology),
        format!("{} {}", b.verdict.kind.as_str(), b.verdict.technology),
    );
    d
}

/// Match and test two runs. Two runs with nothing in common are a user error.
pub fn compare(a: &RunRecord, b: &RunRecord, options: Options) -> anyhow::Result<Comparison> {
    let heads = |r: &RunRecord| -> Vec<String> {
        r.results
            .iter()
            .filter(|e| e.headline)
            .map(|e| format!("{} on {}", e.workload, e.target))
            .collect()
    };
    // A change between runs that did different work is no change of the layer:
    // refuse it, naming what differs.
    let mut different = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for ra in a.results.iter().filter(|e| e.headline) {
        if !seen.insert(ra.workload.as_str())
            || !b.results.iter().any(|e| e.workload == ra.workload)
        {
            continue;
        }
        let d = a.plan.work_differences(&b.plan, &ra.workload);
        if !d.is_empty() {
            different.push(format!("{} ({})", ra.workload, d.join(", ")));
        }
    }
    if !different.is_empty() {
        return Err(user(format!(
            "runs {} and {} did different work, so their figures cannot be compared: {}; \
             compare runs made with the same preset, duration, envelope and workload parameters \
             (see each run's plan.toml)",
            a.run_id,
            b.run_id,
            different.join("; ")
        )));
    }
    let mut rows = Vec::new();
    for ra in a.results.iter().filter(|e| e.headline) {
        let Some(rb) = b.results.iter().find(|e| {
            e.headline
                && e.workload == ra.workload
                && e.target == ra.target
                && e.metric == ra.metric
        }) else {
            continue;
        };
        let change = stats::ratio(rb.median, ra.median, ra.higher_is_better) - 1.0;
        let test = stats::mann_whitney(&ra.samples, &rb.samples);
        let beyond = change.abs() > options.threshold;
        let significant = test.p <= options.alpha;
        let verdict = match (beyond, significant) {
            (false, _) => Verdict::Unchanged,
            (true, false) => Verdict::Inconclusive,
            (true, true) if change > 0.0 => Verdict::Improved,
            (true, true) => Verdict::Regressed,
        };
        rows.push(Row {
            workload: ra.workload.clone(),
            target: ra.target.clone(),
            metric: ra.metric.clone(),
            unit: ra.unit.clone(),
            median_a: ra.median,
            median_b: rb.median,
            change,
            ratio_a: ra.ratio_to_native,
            ratio_b: rb.ratio_to_native,
            n: (ra.n, rb.n),
            test,
            verdict,
        });
    }
    let (ha, hb) = (heads(a), heads(b));
    if rows.is_empty() {
        let list = |v: &[String]| {
            if v.is_empty() {
                "no results".to_string()
            } else {
                v.join(", ")
            }
        };
        return Err(user(format!(
            "runs {} and {} have no workload, target and metric in common ({} has {}; {} has {})",
            a.run_id,
            b.run_id,
            a.run_id,
            list(&ha),
            b.run_id,
            list(&hb)
        )));
    }
    Ok(Comparison {
        a: a.run_id.clone(),
        b: b.run_id.clone(),
        only_a: ha.iter().filter(|x| !hb.contains(x)).cloned().collect(),
        only_b: hb.iter().filter(|x| !ha.contains(x)).cloned().collect(),
        rows,
        host_differences: host_differences(&a.host, &b.host),
        options,
    })
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// The comparison as text: a table, then how it was tested and the verdict.
pub fn render(c: &Comparison) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "workload",
        "target",
        "metric",
        "median A",
        "median B",
        "change",
        "ratio to native A → B",
        "p",
        "verdict",
    ]);
    for r in &c.rows {
        let ratio = match (r.ratio_a, r.ratio_b) {
            (Some(x), Some(y)) => format!("{} → {}", fmt_ratio(x), fmt_ratio(y)),
            _ => "–".into(),
        };
        t.add_row(vec![
            Cell::new(&r.workload),
            Cell::new(&r.target),
            Cell::new(&r.metric),
            Cell::new(format!("{} {}", fmt_num(r.median_a), r.unit))
                .set_alignment(CellAlignment::Right),
            Cell::new(format!("{} {}", fmt_num(r.median_b), r.unit))
                .set_alignment(CellAlignment::Right),
            Cell::new(pct(r.change)).set_alignment(CellAlignment::Right),
            Cell::new(ratio),
            Cell::new(format!("{:.3}", r.test.p)).set_alignment(CellAlignment::Right),
            Cell::new(r.verdict.as_str()),
        ]);
    }
    let mut o = format!("compare A = {} with B = {}\n{t}\n", c.a, c.b);
    let o_ = &c.options;
    let _ = writeln!(
        o,
        "change: relative change of the median from A to B, positive = better (for lower-is-better \
         metrics the inverse ratio). Flagged when |change| > {:.1}% and p ≤ {}.",
        o_.threshold * 100.0,
        o_.alpha
    );
    let exact = c.rows.iter().all(|r| r.test.exact);
    let _ = writeln!(
        o,
        "test: two-sided Mann–Whitney U test over the kept raw samples, {}.",
        if exact {
            "exact (every split of the pooled samples enumerated)".to_string()
        } else {
            format!(
                "exact up to {} splits, else a permutation test of U over {} seeded random splits",
                stats::EXACT_SPLIT_LIMIT,
                stats::RANDOM_SPLITS
            )
        }
    );
    let weak: Vec<&Row> = c.rows.iter().filter(|r| r.test.min_p > o_.alpha).collect();
    if let Some(r) = weak.first() {
        let _ = writeln!(
            o,
            "note: {} result(s) cannot be significant at p ≤ {}: with {} and {} kept samples the smallest \
             possible p is {:.3}. Run with more repetitions (--reps 5 keeps 4: smallest p 0.029) or pass --alpha {:.2}.",
            weak.len(),
            o_.alpha,
            r.n.0,
            r.n.1,
            r.test.min_p,
            r.test.min_p
        );
    }
    if !c.only_a.is_empty() {
        let _ = writeln!(o, "only in A: {}", c.only_a.join(", "));
    }
    if !c.only_b.is_empty() {
        let _ = writeln!(o, "only in B: {}", c.only_b.join(", "));
    }
    let n = c.flagged();
    let reg = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regressed)
        .count();
    if n == 0 {
        let _ = writeln!(
            o,
            "result: no significant change beyond {:.1}% in {} matched result(s)",
            o_.threshold * 100.0,
            c.rows.len()
        );
    } else {
        let _ = writeln!(
            o,
            "result: {n} significant change(s) beyond {:.1}% ({reg} regression(s), {} improvement(s))",
            o_.threshold * 100.0,
            n - reg
        );
    }
    o
}

/// Parse `5%`, `5` (percent) or `0.05` (fraction below 1 with a leading `0.`).
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid threshold {s:?}: give a percentage such as 5%"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("invalid threshold {s:?}: must be 0% or more"));
    }
    Ok(if pct || v >= 1.0 { v / 100.0 } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_as_percentages() {
        assert_eq!(parse_threshold("5%"), Ok(0.05));
        assert_eq!(parse_threshold("10"), Ok(0.1));
        assert_eq!(parse_threshold("0.02"), Ok(0.02));
        assert!(parse_threshold("abc").is_err());
        assert!(parse_threshold("-3%").is_err());
    }

    #[test]
    fn host_differences_name_each_field() {
        let a = Fingerprint {
            cpu_model: "A".into(),
            cpus: 2,
            ..Default::default()
        };
        let mut b = a.clone();
        assert!(host_differences(&a, &b).is_empty());
        b.cpus = 4;
        b.kernel = "6.1".into();
        let d = host_differences(&a, &b);
        assert_eq!(d, vec!["cpus \"2\" vs \"4\"", "kernel \"\" vs \"6.1\""]);
    }
}
