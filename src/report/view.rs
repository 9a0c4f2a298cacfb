//! What every report format shows, derived once from a [`RunRecord`]: the order of
//! targets and workloads, each headline result, the per-class geometric means of
//! the ratios to native, the largest slowdowns and the DNRs. HTML and Markdown
//! render this; neither recomputes anything.

use crate::results::{FailureRecord, ResultEntry, RunRecord, RunStatus, BASELINE};
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
    /// The (up to) three largest slowdowns, worst first.
    pub slowdowns: Vec<Slowdown>,
    /// Every (target, workload) without a headline result.
    pub dnr: Vec<Dnr<'a>>,
}

/// A ratio with two decimals (`0.21`), or `–`.
pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "–".into()
    }
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
        let mut names = run.plan.workload_names();
        for r in &run.results {
            if !targets.contains(&r.target) {
                targets.push(r.target.clone());
            }
            if !names.contains(&r.workload) {
                names.push(r.workload.clone());
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
            let ratios: Vec<(&str, &str, f64)> = workloads
                .iter()
                .filter_map(|w| {
                    let r = w.cells[ti]?.ratio_to_native?;
                    Some((w.class, w.name.as_str(), r))
                })
                .collect();
            let gm = |pick: &dyn Fn(&str) -> bool| {
                let xs: Vec<f64> = ratios
                    .iter()
                    .filter(|(c, _, _)| pick(c))
                    .map(|x| x.2)
                    .collect();
                geometric_mean(&xs).map(|value| GeoMean { value, n: xs.len() })
            };
            summary.push(TargetSummary {
                target: t.clone(),
                by_class: CLASSES.iter().map(|c| gm(&|x| x == *c)).collect(),
                overall: gm(&|_| true),
            });
            all_slow.extend(
                ratios
                    .iter()
                    .filter(|x| x.2 < 1.0)
                    .map(|&(_, w, ratio)| Slowdown {
                        target: t.clone(),
                        workload: w.to_string(),
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
                        failure: run
                            .failures
                            .iter()
                            .rev()
                            .find(|f| f.target == *t && f.workload == w.name),
                    });
                }
            }
        }
        View {
            run,
            targets,
            workloads,
            summary,
            slowdowns: all_slow,
            dnr,
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

    /// Kept/discarded repetitions as planned, e.g. `median of 3 kept repetitions
    /// (first 1 discarded as warm-up)`.
    pub fn method_note(&self) -> String {
        let p = &self.run.plan.run;
        format!(
            "median of {} kept repetition(s) (first {} discarded as warm-up); spread = min–max of kept samples; \
             CI = bootstrap 95% (10 000 resamples); noisy = CoV > 5%",
            p.reps.saturating_sub(p.discard),
            p.discard
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
