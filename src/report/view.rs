//! What every report format shows, derived once from a [`RunRecord`]: the order of
//! targets and workloads, each headline result, the per-class geometric means of
//! the ratios to native, the largest slowdowns and the DNRs. HTML and Markdown
//! render this; neither recomputes anything.

use crate::results::{
    Degradation, FailureRecord, IsolationEntry, ResultEntry, RunRecord, RunStatus, ScaleEntry,
    Step, BASELINE,
};
use crate::stats;
use crate::workloads;

/// Classes in the order reports show them; `other` holds workloads this virtmark
/// does not know (a run written by a newer version).
pub const CLASSES: &[&str] = &["cpu", "memory", "disk", "network", "application", "other"];

/// The resource class of a workload by name (`other` when unknown).
pub fn class_of(workload: &str) -> &'static str {
    workloads::find(workload).map_or("other", |w| w.class.as_str())
}

/// One workload's line of the view.
#[derive(Debug, Clone)]
pub struct WorkloadView<'a> {
    /// Workload name.
    pub name: String,
    /// Resource class.
    pub class: &'static str,
    /// What it stands for, when known.
    pub stands_for: &'static str,
    /// Per target (same order as [`View::targets`]): the headline result, if any.
    pub cells: Vec<Option<&'a ResultEntry>>,
}

/// Geometric mean of a target's ratios within one class.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoMean {
    /// Geometric mean of the ratios to native.
    pub value: f64,
    /// How many workloads it covers.
    pub n: usize,
    /// Its approximate 95% interval ([`crate::stats::geomean_ci`]), when every
    /// ratio it covers has an interval.
    pub ci: Option<(f64, f64)>,
}

impl GeoMean {
    /// `0.87× [0.85–0.90]`, or `≈ 1.00× [0.98–1.02]` when the interval holds 1.
    pub fn text(&self) -> String {
        match self.ci {
            Some((lo, hi)) => format!(
                "{}{}× [{}–{}]",
                if lo <= 1.0 && 1.0 <= hi { "≈ " } else { "" },
                fmt_ratio(self.value),
                fmt_ratio(lo),
                fmt_ratio(hi)
            ),
            None => format!("{}×", fmt_ratio(self.value)),
        }
    }
}

/// A target's summary row.
#[derive(Debug, Clone)]
pub struct TargetSummary {
    /// Target name.
    pub target: String,
    /// Per class in [`CLASSES`] order, `None` when the class has no ratio.
    pub by_class: Vec<Option<GeoMean>>,
    /// Over every workload with a ratio.
    pub overall: Option<GeoMean>,
}

/// A slowdown worth a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Slowdown {
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Ratio to native (< 1).
    pub ratio: f64,
}

impl Slowdown {
    /// `gvisor: net-rr at 0.21× native`.
    pub fn sentence(&self) -> String {
        format!(
            "{}: {} at {}× native",
            self.target,
            self.workload,
            fmt_ratio(self.ratio)
        )
    }
}

/// A (target, workload) without a result.
#[derive(Debug, Clone)]
pub struct Dnr<'a> {
    /// Target name.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// The last failure recorded for it, when one was.
    pub failure: Option<&'a FailureRecord>,
}

impl Dnr<'_> {
    /// `deadline: no answer in 10m`, or `no sample` (interrupted before it ran).
    pub fn reason(&self) -> String {
        self.failure
            .map(|f| format!("{}: {}", f.kind, f.message))
            .unwrap_or_else(|| "no sample".into())
    }
}

/// native's own spread over the run, when it, not a layer, is what widens the
/// ratios' intervals: at least half of native's headline results (and two or more)
/// are noisy.
#[derive(Debug, Clone, PartialEq)]
pub struct HostNoise {
    /// native's headline results with CoV above [`stats::NOISY_COV`].
    pub noisy: usize,
    /// native's headline results.
    pub of: usize,
    /// Lowest, median and highest CoV of native's headline results.
    pub cov: (f64, f64, f64),
    /// Median relative half-width of the other targets' ratio intervals, when
    /// any has one.
    pub half_width: Option<f64>,
}

impl HostNoise {
    /// From native's headline results and the other targets' ratio intervals.
    pub fn of_run(run: &RunRecord) -> Option<HostNoise> {
        let headline = || run.results.iter().filter(|r| r.headline);
        let mut covs: Vec<f64> = headline()
            .filter(|r| r.target == BASELINE && r.n >= 2)
            .map(|r| r.cov)
            .collect();
        let noisy = covs.iter().filter(|&&c| c > stats::NOISY_COV).count();
        if noisy < 2 || 2 * noisy < covs.len() {
            return None;
        }
        covs.sort_by(f64::total_cmp);
        let halves: Vec<f64> = headline()
            .filter(|r| r.target != BASELINE)
            .filter_map(|r| {
                let ci = r.ratio_interval()?;
                let v = r.ratio_to_native?;
                (ci.level > 0.0 && v > 0.0).then(|| (ci.high - ci.low) / 2.0 / v)
            })
            .collect();
        Some(HostNoise {
            noisy,
            of: covs.len(),
            cov: (covs[0], stats::median(&covs), covs[covs.len() - 1]),
            half_width: (!halves.is_empty()).then(|| stats::median(&halves)),
        })
    }

    /// What it means for the reader, and how to get tighter ratios.
    pub fn sentence(&self, auto: bool) -> String {
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let width = self
            .half_width
            .map(|h| {
                format!(
                    " The ratios' intervals are about ±{:.0}% wide (median), \
                     so a ratio nearer 1 than that reads ≈ native.",
                    100.0 * h
                )
            })
            .unwrap_or_default();
        format!(
            "Host noise: native itself, with no layer in between, varied from sample to \
             sample by a CoV above {:.0}% on {} of its {} workloads (all: {}–{}, median {}): the \
             machine (other load on it, or on the physical cores under a virtual machine) \
             is noisy, not a target.{width} For tighter ratios, give each target and \
             workload more samples: {}.",
            100.0 * stats::NOISY_COV,
            self.noisy,
            self.of,
            pct(self.cov.0),
            pct(self.cov.2),
            pct(self.cov.1),
            if auto { "--max-time 30s" } else { "--reps 16" }
        )
    }
}

/// Everything a report shows.
#[derive(Debug)]
pub struct View<'a> {
    /// The run.
    pub run: &'a RunRecord,
    /// Targets in the run's order (native first when present).
    pub targets: Vec<String>,
    /// Workloads in the plan's order, then any others that have results.
    pub workloads: Vec<WorkloadView<'a>>,
    /// Per non-native target.
    pub summary: Vec<TargetSummary>,
    /// The (up to) three largest slowdowns whose interval lies below 1, worst
    /// first.
    pub slowdowns: Vec<Slowdown>,
    /// Every (target, workload) without a headline result.
    pub dnr: Vec<Dnr<'a>>,
    /// native's own spread, when most of its results are noisy: what bounds every
    /// ratio's interval on this host.
    pub host_noise: Option<HostNoise>,
    /// Whether the run has (or planned) the overhead step.
    pub has_overhead: bool,
    /// The scalability step, one block per workload (empty without one).
    pub scale: Vec<ScaleView<'a>>,
    /// The isolation step (`None` without one).
    pub isolation: Option<IsolationView<'a>>,
}

/// One target's line in a scalability chart.
#[derive(Debug, Clone)]
pub struct ScaleLine<'a> {
    /// Target name.
    pub target: String,
    /// Its index in [`View::targets`]: its colour, pattern and marker.
    pub slot: usize,
    /// Its entries, by increasing n.
    pub points: Vec<&'a ScaleEntry>,
}

impl ScaleLine<'_> {
    /// The knee: the n beyond which the aggregate stops growing by more than 5%
    /// (the n before the first one past the knee), when the run reached it.
    pub fn knee(&self) -> Option<u32> {
        let i = self
            .points
            .iter()
            .position(|e| e.past_knee && e.aggregate.is_some())?;
        self.points[..i]
            .iter()
            .rev()
            .find(|e| e.aggregate.is_some())
            .map(|e| e.instances)
    }

    /// A sentence for the summary: `ns: 1043 MB/s at n = 1 → 2124 MB/s at n = 4
    /// (2.04×); knee at n = 2`.
    pub fn sentence(&self, unit: &str) -> String {
        let with: Vec<(u32, f64)> = self
            .points
            .iter()
            .filter_map(|e| Some((e.instances, e.aggregate?.mean_times_n)))
            .collect();
        let mut s = format!("{}: ", self.target);
        match (with.first(), with.last()) {
            (Some(a), Some(b)) if a.0 != b.0 => s.push_str(&format!(
                "aggregate {} {unit} at n = {} → {} {unit} at n = {} ({}×)",
                super::fmt_num(a.1),
                a.0,
                super::fmt_num(b.1),
                b.0,
                fmt_ratio(b.1 / a.1)
            )),
            (Some(a), _) => s.push_str(&format!(
                "aggregate {} {unit} at n = {}",
                super::fmt_num(a.1),
                a.0
            )),
            _ => s.push_str("no result at any n"),
        }
        match self.knee() {
            Some(k) => s.push_str(&format!("; knee at n = {k}")),
            None if with.len() > 1 => s.push_str("; no knee up to the largest n"),
            None => {}
        }
        let dnr: usize = self.points.iter().map(|e| e.dnr.len()).sum();
        if dnr > 0 {
            let at: Vec<String> = self
                .points
                .iter()
                .filter(|e| !e.dnr.is_empty())
                .map(|e| e.instances.to_string())
                .collect();
            s.push_str(&format!(
                "; {dnr} instance(s) DNR (at n = {})",
                at.join(", ")
            ));
        }
        s
    }
}

/// The scalability of one workload: a line per target.
#[derive(Debug, Clone)]
pub struct ScaleView<'a> {
    /// Workload name.
    pub workload: String,
    /// Its headline metric.
    pub metric: String,
    /// Throughput unit.
    pub unit: String,
    /// Every n measured, increasing.
    pub ns: Vec<u32>,
    /// One line per target, in [`View::targets`] order.
    pub lines: Vec<ScaleLine<'a>>,
}

impl ScaleView<'_> {
    /// How CPUs were shared: `pinned`, `shared` or `mixed`.
    pub fn cpu_note(&self) -> &'static str {
        let all = self.lines.iter().flat_map(|l| l.points.iter());
        let pinned = all.clone().filter(|e| e.pinned).count();
        match (pinned, all.count()) {
            (0, _) => "CPUs shared by all instances",
            (p, n) if p == n => "each instance pinned to one CPU",
            _ => "some n pinned, some shared",
        }
    }
}

/// The isolation step as the studies' table: a row per stressor, a column group
/// per target.
#[derive(Debug, Clone)]
pub struct IsolationView<'a> {
    /// Stressors in the order run.
    pub stressors: Vec<String>,
    /// Targets in [`View::targets`] order.
    pub targets: Vec<String>,
    /// `[stressor][target]`.
    pub cells: Vec<Vec<Option<&'a IsolationEntry>>>,
}

impl IsolationView<'_> {
    /// The largest degradation of the well-behaved instances per target, as a
    /// sentence (`ns: well-behaved lose at most 0.4% (under cpu); …`).
    pub fn sentences(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ti, t) in self.targets.iter().enumerate() {
            let worst = |pick: fn(&IsolationEntry) -> &Degradation| {
                self.cells
                    .iter()
                    .flat_map(|row| row[ti])
                    .filter_map(|e| match pick(e) {
                        Degradation::Percent(p) if p.is_finite() => Some((*p, e.stressor.as_str())),
                        _ => None,
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            };
            let dnr = self
                .cells
                .iter()
                .flat_map(|row| row[ti])
                .filter(|e| {
                    matches!(e.degradation.misbehaving, Degradation::Dnr { .. })
                        || matches!(e.degradation.well_behaved, Degradation::Dnr { .. })
                })
                .count();
            let mut s = format!("{t}: ");
            match worst(|e| &e.degradation.well_behaved) {
                Some((p, st)) => s.push_str(&format!(
                    "the well-behaved instances lose at most {} of their good responses (under {st})",
                    fmt_percent(p)
                )),
                None => s.push_str("no degradation figure for the well-behaved instances"),
            }
            if let Some((p, st)) = worst(|e| &e.degradation.misbehaving) {
                s.push_str(&format!(
                    "; the misbehaving one at most {} (under {st})",
                    fmt_percent(p)
                ));
            }
            if dnr > 0 {
                s.push_str(&format!("; {dnr} stressor(s) with a DNR"));
            }
            out.push(s);
        }
        out
    }
}

/// Instances without a result, grouped by reason: `instances 2, 3: could not
/// start at 101 MiB`.
pub fn dnr_groups(dnr: &[crate::results::Dnr]) -> Vec<String> {
    let mut groups: Vec<(&str, Vec<u32>)> = Vec::new();
    for d in dnr {
        match groups.iter_mut().find(|g| g.0 == d.reason) {
            Some(g) => g.1.push(d.instance),
            None => groups.push((&d.reason, vec![d.instance])),
        }
    }
    groups
        .into_iter()
        .map(|(reason, is)| {
            let list: Vec<String> = is.iter().map(|i| i.to_string()).collect();
            format!(
                "instance{} {}: {reason}",
                if is.len() > 1 { "s" } else { "" },
                list.join(", ")
            )
        })
        .collect()
}

/// A degradation in percent with one decimal (`12.3%`), `–` when not finite.
pub fn fmt_percent(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.1}%")
    } else {
        "–".into()
    }
}

/// Whether a run has the overhead step: it has overhead samples or DNRs, or its
/// plan asks for it (a plain run, or a study: both a scale and an isolation
/// section). `virtmark scale` and `virtmark isolate` alone have one of the two.
pub fn has_overhead(run: &RunRecord) -> bool {
    run.samples.iter().any(|s| s.step == Step::Overhead)
        || run.failures.iter().any(|f| f.step == Step::Overhead)
        || run.plan.scale.is_some() == run.plan.isolation.is_some()
}

fn scale_views<'a>(run: &'a RunRecord, targets: &[String]) -> Vec<ScaleView<'a>> {
    let mut names: Vec<&str> = Vec::new();
    for e in &run.scale {
        if !names.contains(&e.workload.as_str()) {
            names.push(&e.workload);
        }
    }
    names
        .into_iter()
        .map(|w| {
            let entries: Vec<&ScaleEntry> = run.scale.iter().filter(|e| e.workload == w).collect();
            let mut ns: Vec<u32> = entries.iter().map(|e| e.instances).collect();
            ns.sort_unstable();
            ns.dedup();
            let lines = targets
                .iter()
                .enumerate()
                .filter_map(|(slot, t)| {
                    let mut points: Vec<&ScaleEntry> =
                        entries.iter().copied().filter(|e| e.target == *t).collect();
                    points.sort_by_key(|e| e.instances);
                    (!points.is_empty()).then(|| ScaleLine {
                        target: t.clone(),
                        slot,
                        points,
                    })
                })
                .collect();
            ScaleView {
                workload: w.to_string(),
                metric: entries[0].metric.clone(),
                unit: entries[0].unit.clone(),
                ns,
                lines,
            }
        })
        .collect()
}

fn isolation_view<'a>(run: &'a RunRecord, targets: &[String]) -> Option<IsolationView<'a>> {
    if run.isolation.is_empty() {
        return None;
    }
    let mut stressors: Vec<String> = Vec::new();
    for e in &run.isolation {
        if !stressors.contains(&e.stressor) {
            stressors.push(e.stressor.clone());
        }
    }
    let targets: Vec<String> = targets
        .iter()
        .filter(|t| run.isolation.iter().any(|e| e.target == **t))
        .cloned()
        .collect();
    let cells = stressors
        .iter()
        .map(|s| {
            targets
                .iter()
                .map(|t| {
                    run.isolation
                        .iter()
                        .find(|e| e.stressor == *s && e.target == *t)
                })
                .collect()
        })
        .collect();
    Some(IsolationView {
        stressors,
        targets,
        cells,
    })
}

/// What a target's channel lost, `12 console line(s) skipped, 1 restart(s)`, or
/// `None` when nothing.
pub fn channel_losses(t: &crate::results::TargetRecord) -> Option<String> {
    (t.skipped_lines > 0 || t.restarts > 0).then(|| {
        format!(
            "{} console line(s) skipped, {} restart(s)",
            t.skipped_lines, t.restarts
        )
    })
}

pub use crate::units::fmt_ratio;

/// ` (75%)` when an interval's real level is below the 95% asked, else nothing.
pub fn level_note(level: f64) -> String {
    if level < stats::LEVEL - 1e-9 {
        format!(" ({:.0}%)", level * 100.0)
    } else {
        String::new()
    }
}

/// A result's ratio to native with its interval: `≈ native [0.97–1.02]` when the
/// interval holds 1, else `{prefix}0.87 [0.85–0.90]`; the interval's level is
/// added when below 95% (`(90%)`), and there is no interval with one kept sample
/// on either side. `None` without a ratio.
pub fn ratio_text(r: &ResultEntry, prefix: &str) -> Option<String> {
    let v = r.ratio_to_native?;
    let ci = r.ratio_interval().filter(|ci| ci.exists());
    Some(match ci {
        Some(ci) => format!(
            "{}{} [{}–{}]{}",
            if ci.holds(1.0) { "≈ native" } else { prefix },
            if ci.holds(1.0) {
                String::new()
            } else {
                fmt_ratio(v)
            },
            fmt_ratio(ci.low),
            fmt_ratio(ci.high),
            level_note(ci.level)
        ),
        None => format!("{prefix}{} (no interval)", fmt_ratio(v)),
    })
}

/// Geometric mean of positive values (`exp` of the mean of logs); `None` when empty
/// or when any value is not positive and finite.
pub fn geometric_mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() || xs.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

/// Whether a run finished every planned sample.
pub fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Complete => "complete",
        RunStatus::Partial => "partial (interrupted): shows what was measured until then",
        RunStatus::Running => "partial (did not finish): shows what was measured until it stopped",
    }
}

impl<'a> View<'a> {
    /// Derive the view of a run.
    pub fn new(run: &'a RunRecord) -> View<'a> {
        let mut targets: Vec<String> = run.targets.iter().map(|t| t.name.clone()).collect();
        let has_overhead = has_overhead(run);
        // The plan's workloads are the overhead step's; `scale`/`isolate` alone
        // name their own workload there, which has no overhead result.
        let mut names = if has_overhead {
            run.plan.workload_names()
        } else {
            Vec::new()
        };
        // Probes have their own table (`super::probes`).
        names.retain(|w| !crate::probes::is_probe(w));
        for r in &run.results {
            if !targets.contains(&r.target) {
                targets.push(r.target.clone());
            }
            if !names.contains(&r.workload) && !crate::probes::is_probe(&r.workload) {
                names.push(r.workload.clone());
            }
        }
        let extra = run
            .scale
            .iter()
            .map(|e| &e.target)
            .chain(run.isolation.iter().map(|e| &e.target));
        for t in extra {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let workloads: Vec<WorkloadView> = names
            .into_iter()
            .map(|name| {
                let cells = targets
                    .iter()
                    .map(|t| {
                        run.results
                            .iter()
                            .find(|r| r.headline && r.target == *t && r.workload == name)
                    })
                    .collect();
                WorkloadView {
                    class: class_of(&name),
                    stands_for: workloads::find(&name).map_or("", |w| w.stands_for),
                    name,
                    cells,
                }
            })
            .collect();

        let mut summary = Vec::new();
        let mut all_slow = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            if t == BASELINE {
                continue;
            }
            let ratios: Vec<(&str, &ResultEntry, f64)> = workloads
                .iter()
                .filter_map(|w| {
                    let c = w.cells[ti]?;
                    Some((w.class, c, c.ratio_to_native?))
                })
                .collect();
            let gm = |pick: &dyn Fn(&str) -> bool| {
                let xs: Vec<(f64, stats::Interval)> = ratios
                    .iter()
                    .filter(|(c, _, _)| pick(c))
                    .map(|(_, r, v)| (*v, r.ratio_interval().unwrap_or(stats::Interval::NONE)))
                    .collect();
                stats::geomean_ci(&xs).map(|(value, ci)| GeoMean {
                    value,
                    n: xs.len(),
                    ci,
                })
            };
            summary.push(TargetSummary {
                target: t.clone(),
                by_class: CLASSES.iter().map(|c| gm(&|x| x == *c)).collect(),
                overall: gm(&|_| true),
            });
            all_slow.extend(
                ratios
                    .iter()
                    .filter(|(_, r, _)| r.significantly_slower())
                    .map(|&(_, r, ratio)| Slowdown {
                        target: t.clone(),
                        workload: r.workload.clone(),
                        ratio,
                    }),
            );
        }
        all_slow.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
        all_slow.truncate(3);

        let mut dnr = Vec::new();
        for w in &workloads {
            for (ti, t) in targets.iter().enumerate() {
                if w.cells[ti].is_none() {
                    dnr.push(Dnr {
                        target: t.clone(),
                        workload: w.name.clone(),
                        failure: run.failures.iter().rev().find(|f| {
                            f.step == Step::Overhead && f.target == *t && f.workload == w.name
                        }),
                    });
                }
            }
        }
        let scale = scale_views(run, &targets);
        let isolation = isolation_view(run, &targets);
        View {
            host_noise: HostNoise::of_run(run),
            run,
            targets,
            workloads,
            summary,
            slowdowns: all_slow,
            dnr,
            has_overhead,
            scale,
            isolation,
        }
    }

    /// Targets other than native, with their index in [`View::targets`].
    pub fn compared(&self) -> Vec<(usize, &str)> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| *t != BASELINE)
            .map(|(i, t)| (i, t.as_str()))
            .collect()
    }

    /// Classes that have at least one workload, in [`CLASSES`] order.
    pub fn classes(&self) -> Vec<&'static str> {
        CLASSES
            .iter()
            .copied()
            .filter(|c| self.workloads.iter().any(|w| w.class == *c))
            .collect()
    }

    /// Whether any target has a ratio to native (a native run with at least one
    /// other target).
    pub fn has_ratios(&self) -> bool {
        self.summary.iter().any(|s| s.overall.is_some())
    }

    /// The steps the run holds, for the page's header: `overhead (3 workloads),
    /// scalability (oltp, n = 1–32), isolation (2 stressors)`.
    pub fn steps_text(&self) -> String {
        let mut parts = Vec::new();
        if self.has_overhead {
            parts.push(format!("overhead ({} workload(s))", self.workloads.len()));
        }
        for s in &self.scale {
            let n = match (s.ns.first(), s.ns.last()) {
                (Some(a), Some(b)) if a != b => format!("n = {a}–{b}"),
                (Some(a), _) => format!("n = {a}"),
                _ => String::new(),
            };
            parts.push(format!("scalability ({}, {n})", s.workload));
        }
        if let Some(i) = &self.isolation {
            parts.push(format!("isolation ({} stressor(s))", i.stressors.len()));
        }
        if parts.is_empty() {
            "no step measured".into()
        } else {
            parts.join(", ")
        }
    }

    /// The command that re-runs this run from its stored plan.
    pub fn rerun_command(&self) -> &'static str {
        match (
            self.run.plan.scale.is_some(),
            self.run.plan.isolation.is_some(),
        ) {
            (true, true) => "virtmark study --plan plan.toml",
            (true, false) => "virtmark scale --plan plan.toml",
            (false, true) => "virtmark isolate --plan plan.toml",
            (false, false) => "virtmark run --plan plan.toml",
        }
    }

    /// What the run is, when it has no overhead step: the sentence the summary
    /// opens with.
    pub fn no_overhead_text(&self) -> String {
        let what = match (self.scale.is_empty(), self.isolation.is_none()) {
            (false, false) => "the scalability and isolation steps",
            (false, true) => "the scalability step (virtmark scale)",
            (true, false) => "the isolation step (virtmark isolate)",
            (true, true) => "no step with results yet",
        };
        format!(
            "No overhead step in this run: it holds {what}, so there are no ratios to native. \
             The overhead step is virtmark run (or virtmark study, all three steps)."
        )
    }

    /// Kept/discarded repetitions as planned, e.g. `median of 3 kept repetitions
    /// (first 1 discarded as warm-up)`.
    pub fn method_note(&self) -> String {
        let p = &self.run.plan.run;
        let reps = if p.auto {
            format!(
                "repetitions: {} or more, until the ratio's 95% interval is within ±{}% (at most {}, and none beyond {} once they took {} per target and workload; fewer for a target whose samples took {} together)",
                p.reps,
                p.precision * 100.0,
                p.max_reps,
                p.reps,
                p.max_time(),
                crate::units::Dur(p.max_time().get() * p.reps.max(1))
            )
        } else {
            format!("{} repetitions", p.reps)
        };
        format!(
            "median of the kept samples (n; first {} of each and the first after a restart discarded as warm-up); {reps}; \
             spread = min–max of kept samples; CI = distribution-free interval from order statistics \
             at the level it really has (95% asked, fewer samples reach less: shown when below 95%); \
             ≈ native = the ratio's interval holds 1; noisy = CoV > 5%",
            p.discard
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_whose_interval_holds_one_reads_about_native() {
        let mut run = crate::report::testing::synthetic_run(2, 1, 6);
        let i = run
            .results
            .iter()
            .position(|r| r.target == "ns" && r.headline)
            .unwrap();
        let r = &mut run.results[i];
        (r.ratio_ci_low, r.ratio_ci_high, r.ratio_ci_level) = (Some(0.97), Some(1.02), Some(0.9));
        assert_eq!(ratio_text(r, "×").unwrap(), "≈ native [0.97–1.02] (90%)");
        assert!(!r.significantly_slower());
        (r.ratio_ci_low, r.ratio_ci_high, r.ratio_ci_level) = (Some(0.85), Some(0.95), Some(0.97));
        let v = r.ratio_to_native.unwrap();
        assert_eq!(
            ratio_text(r, "×").unwrap(),
            format!("×{} [0.85–0.95]", fmt_ratio(v))
        );
        // Only slowdowns whose interval lies below 1 are listed.
        let view = View::new(&run);
        assert_eq!(view.slowdowns.len(), 1);
        run.results[i].ratio_ci_high = Some(1.01);
        assert!(View::new(&run).slowdowns.is_empty());
    }

    #[test]
    fn host_noise_is_told_when_most_of_natives_results_are_noisy() {
        let mut run = crate::report::testing::synthetic_run(2, 3, 6);
        let set = |run: &mut RunRecord, covs: &[f64]| {
            let native = run
                .results
                .iter_mut()
                .filter(|r| r.headline && r.target == BASELINE);
            for (r, &c) in native.zip(covs) {
                r.cov = c;
            }
        };
        set(&mut run, &[0.01, 0.02, 0.03]);
        assert_eq!(HostNoise::of_run(&run), None);
        // One noisy workload of three is that workload's, not the host's.
        set(&mut run, &[0.01, 0.12, 0.03]);
        assert_eq!(HostNoise::of_run(&run), None);
        set(&mut run, &[0.01, 0.12, 0.20]);
        let h = HostNoise::of_run(&run).expect("two of three noisy");
        assert_eq!((h.noisy, h.of), (2, 3));
        assert_eq!(h.cov, (0.01, 0.12, 0.20));
        let half = h.half_width.expect("ns has ratio intervals");
        assert!(half > 0.0 && half < 1.0, "{half}");
        let s = h.sentence(true);
        assert!(
            s.contains("above 5% on 2 of its 3 workloads (all: 1.0%–20.0%, median 12.0%)"),
            "{s}"
        );
        assert!(s.contains("more samples: --max-time 30s."), "{s}");
        assert!(h.sentence(false).contains("--reps 16"));
        // Every format says it.
        assert_eq!(View::new(&run).host_noise, Some(h));
        assert!(crate::report::terminal::render_width(&run, 120)
            .contains("Host noise: native itself, with no layer"));
    }

    #[test]
    fn geometric_mean_against_hand_computed_values() {
        assert_eq!(geometric_mean(&[]), None);
        assert!((geometric_mean(&[1.0, 4.0]).unwrap() - 2.0).abs() < 1e-12);
        assert!((geometric_mean(&[0.5, 0.5, 0.5]).unwrap() - 0.5).abs() < 1e-12);
        assert!((geometric_mean(&[2.0, 8.0, 4.0]).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(geometric_mean(&[1.0, 0.0]), None);
        assert_eq!(geometric_mean(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn slowdown_sentence_reads_like_the_issue() {
        let s = Slowdown {
            target: "gvisor".into(),
            workload: "net-rr".into(),
            ratio: 0.2149,
        };
        assert_eq!(s.sentence(), "gvisor: net-rr at 0.21× native");
    }
}
