//! Diagnosis: why a target is slower than native on a workload, from the
//! primitives' costs the probes measured in both and the operations the
//! workload makes natively.
//!
//! Model (first order, additive): the target does the same operations per unit
//! of work as native, and each costs what the probe of its primitive costs
//! there. The predicted time per unit is
//! `T_target = T_native + Σ count × (probe_target − probe_native)`, where
//! `T_native` comes from the native headline median (1 / rate, or the time),
//! `count` is the native median of the workload's `count.*` metric, and the
//! probes' costs are their medians. User CPU time is scaled by the `user-loop`
//! probe's ratio instead (`user_s × (ratio − 1)`). The explained fraction is the
//! predicted extra time over the measured one. The model cannot see what no probe
//! measures (copies, device emulation, the path to the peer, caches), nor
//! overlap between primitives; `docs/probes.md` lists its limits.

use serde::{Deserialize, Serialize};

use super::{ResultEntry, BASELINE};
use crate::agent::counts::{PREFIX, PRIMITIVES};

/// Below this measured slowdown (target time / native time), there is nothing
/// worth explaining.
pub const MIN_SLOWDOWN: f64 = 1.05;

/// Below this explained fraction, the diagnosis says the model explains little.
pub const LITTLE: f64 = 0.5;

/// Above this explained fraction, the diagnosis says the model overestimates.
pub const OVER: f64 = 1.25;

/// One primitive's share of a slowdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimitiveShare {
    /// The counted operation (`syscalls`, `minor_faults`, `ctx_switches`, `user_s`).
    pub primitive: String,
    /// The probe that prices it (`getppid`).
    pub probe: String,
    /// Native count per unit of work.
    pub count: f64,
    /// That unit (`per MB`).
    pub unit: String,
    /// The probe's median cost natively, ns.
    pub native_ns: f64,
    /// The probe's median cost in the target, ns.
    pub target_ns: f64,
    /// Predicted extra time per unit of work, seconds.
    pub extra_s: f64,
    /// `extra_s` over the measured extra time per unit (can be negative, or
    /// exceed 1).
    pub fraction: f64,
}

/// The diagnosis of one (target, workload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// Time per unit of work in the target over native (2.0 = twice as slow;
    /// the inverse of the ratio to native).
    pub measured_slowdown: f64,
    /// What the model predicts for it.
    pub predicted_slowdown: f64,
    /// Predicted extra time over measured extra time; `None` when there is no
    /// slowdown to explain (below [`MIN_SLOWDOWN`]).
    pub explained_fraction: Option<f64>,
    /// Each primitive's share, largest first.
    pub by_primitive: Vec<PrimitiveShare>,
    /// One sentence for readers.
    pub summary: String,
}

impl Diagnosis {
    /// The primitive with the largest predicted extra time.
    pub fn dominant(&self) -> Option<&PrimitiveShare> {
        self.by_primitive.first()
    }
}

fn headline<'a>(results: &'a [ResultEntry], t: &str, w: &str) -> Option<&'a ResultEntry> {
    results
        .iter()
        .find(|r| r.headline && r.target == t && r.workload == w)
}

fn metric<'a>(results: &'a [ResultEntry], t: &str, w: &str, m: &str) -> Option<&'a ResultEntry> {
    results
        .iter()
        .find(|r| r.target == t && r.workload == w && r.metric == m)
}

/// Seconds per unit of work of a headline median, in the unit the counts are
/// per (see [`crate::agent::counts::work_units`]).
fn time_per_unit(r: &ResultEntry) -> f64 {
    if r.unit.ends_with("/s") {
        1.0 / r.median
    } else if r.unit == "s" {
        r.median
    } else {
        1.0
    }
}

/// Format nanoseconds for people.
pub fn fmt_ns(ns: f64) -> String {
    if ns.abs() >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns.abs() >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn share_text(s: &PrimitiveShare) -> String {
    if s.primitive == "user_s" {
        format!(
            "user CPU time × {:.1} (user-loop)",
            s.target_ns / s.native_ns
        )
    } else {
        let delta = s.target_ns - s.native_ns;
        format!(
            "{} {} {} × {}{} each",
            crate::units::fmt_num(s.count),
            s.primitive.replace('_', " "),
            s.unit,
            if delta >= 0.0 { "+" } else { "−" },
            fmt_ns(delta.abs())
        )
    }
}

/// Diagnose every (target, workload) that has a headline result, native counts
/// and the probes' costs in both; in the order of `results`.
pub fn diagnose(results: &[ResultEntry]) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    for r in results
        .iter()
        .filter(|r| r.headline && r.target != BASELINE)
    {
        if crate::probes::is_probe(&r.workload) {
            continue;
        }
        let Some(native) = headline(results, BASELINE, &r.workload) else {
            continue;
        };
        if !(native.median > 0.0 && r.median > 0.0) {
            continue;
        }
        let measured = if r.higher_is_better {
            native.median / r.median
        } else {
            r.median / native.median
        };
        let t_native = time_per_unit(native);
        let measured_extra = (measured - 1.0) * t_native;
        let mut shares = Vec::new();
        for (count, probe) in PRIMITIVES {
            let Some(c) = metric(results, BASELINE, &r.workload, &format!("{PREFIX}{count}"))
            else {
                continue;
            };
            let (Some(pn), Some(pt)) = (
                headline(results, BASELINE, probe),
                headline(results, &r.target, probe),
            ) else {
                continue;
            };
            if !(pn.median > 0.0 && pt.median > 0.0) {
                continue;
            }
            let extra_s = if *count == "user_s" {
                c.median * (pt.median / pn.median - 1.0)
            } else {
                c.median * (pt.median - pn.median) * 1e-9
            };
            shares.push(PrimitiveShare {
                primitive: count.to_string(),
                probe: probe.to_string(),
                count: c.median,
                unit: c.unit.clone(),
                native_ns: pn.median,
                target_ns: pt.median,
                extra_s,
                fraction: if measured_extra > 0.0 {
                    extra_s / measured_extra
                } else {
                    0.0
                },
            });
        }
        if shares.is_empty() {
            continue;
        }
        shares.sort_by(|a, b| b.extra_s.total_cmp(&a.extra_s));
        let predicted_extra: f64 = shares.iter().map(|s| s.extra_s).sum();
        let predicted = 1.0 + predicted_extra / t_native;
        let explained = (measured >= MIN_SLOWDOWN).then(|| predicted_extra / measured_extra);
        let head = format!(
            "{} {} ×{} native ({:.1}× the time per unit)",
            r.target,
            r.workload,
            crate::units::fmt_ratio(1.0 / measured),
            measured
        );
        let summary = match explained {
            None => format!("{head}: no slowdown to explain"),
            Some(f) => {
                let top = &shares[0];
                let top_text = share_text(top);
                if f < LITTLE {
                    format!(
                        "{head}: the probes explain only {:.0}% of the slowdown (largest: {top_text}, {:.0}%); the rest comes from what no probe measures",
                        f * 100.0,
                        top.fraction * 100.0
                    )
                } else if f > OVER {
                    format!(
                        "{head}: {top_text} predicts {:.0}% of the slowdown measured; all primitives {:.0}%: the model overestimates (costs that overlap, or probes and workload measured under different load)",
                        top.fraction * 100.0,
                        f * 100.0
                    )
                } else {
                    format!(
                        "{head}: {top_text} explains {:.0}% of the slowdown; all primitives {:.0}%",
                        top.fraction * 100.0,
                        f * 100.0
                    )
                }
            }
        };
        out.push(Diagnosis {
            target: r.target.clone(),
            workload: r.workload.clone(),
            measured_slowdown: measured,
            predicted_slowdown: predicted,
            explained_fraction: explained,
            by_primitive: shares,
            summary,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{derive_results, SampleRecord};
    use crate::workloads::Metric;

    fn sample(target: &str, workload: &str, metrics: Vec<Metric>) -> SampleRecord {
        SampleRecord {
            target: target.into(),
            workload: workload.into(),
            metrics,
            ..SampleRecord::default()
        }
    }

    fn probe(target: &str, name: &str, ns: f64) -> SampleRecord {
        sample(target, name, vec![Metric::lower("cost", "ns/op", ns)])
    }

    /// dd-zero: 3906 syscalls per MB; natively 1000 MB/s (1 ms per MB); the
    /// target's syscall costs 10 µs more, so 39 ms more per MB is predicted.
    #[test]
    fn a_syscall_bound_slowdown_is_explained_by_the_syscall_probe() {
        let native = vec![
            Metric::higher("throughput", "MB/s", 1000.0),
            Metric::lower("count.syscalls", "per MB", 3906.0),
            Metric::lower("count.minor_faults", "per MB", 0.1),
        ];
        let samples = vec![
            sample("native", "dd-zero", native),
            sample(
                "gvisor",
                "dd-zero",
                vec![Metric::higher("throughput", "MB/s", 25.0)],
            ),
            probe("native", "getppid", 100.0),
            probe("gvisor", "getppid", 10_100.0),
            probe("native", "page-fault", 1000.0),
            probe("gvisor", "page-fault", 5000.0),
        ];
        let d = diagnose(&derive_results(&samples));
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert!((d.measured_slowdown - 40.0).abs() < 1e-9);
        // 1 ms + 3906 × 10 µs + 0.1 × 4 µs = 40.0604 ms per MB.
        assert!(
            (d.predicted_slowdown - 40.0604).abs() < 1e-9,
            "{}",
            d.predicted_slowdown
        );
        let f = d.explained_fraction.unwrap();
        assert!((f - 39.0604 / 39.0).abs() < 1e-9, "{f}");
        assert_eq!(d.by_primitive[1].probe, "page-fault");
        assert_eq!(d.dominant().unwrap().probe, "getppid");
        assert!(d.summary.contains("syscalls"), "{}", d.summary);
    }

    #[test]
    fn a_slowdown_the_probes_do_not_see_is_said_to_be_explained_little() {
        let samples = vec![
            sample(
                "native",
                "net-rr",
                vec![
                    Metric::higher("throughput", "tx/s", 10_000.0),
                    Metric::lower("count.syscalls", "per tx", 2.0),
                ],
            ),
            sample(
                "uml",
                "net-rr",
                vec![Metric::higher("throughput", "tx/s", 1000.0)],
            ),
            probe("native", "getppid", 100.0),
            probe("uml", "getppid", 1100.0),
        ];
        let d = &diagnose(&derive_results(&samples))[0];
        // 90 µs more per tx measured, 2 µs predicted.
        let f = d.explained_fraction.unwrap();
        assert!((f - 2.0 / 900.0).abs() < 1e-9, "{f}");
        assert!(d.summary.contains("only"), "{}", d.summary);
    }

    #[test]
    fn no_slowdown_means_nothing_to_explain() {
        let samples = vec![
            sample(
                "native",
                "dd-zero",
                vec![
                    Metric::higher("throughput", "MB/s", 1000.0),
                    Metric::lower("count.syscalls", "per MB", 3906.0),
                ],
            ),
            sample(
                "ns",
                "dd-zero",
                vec![Metric::higher("throughput", "MB/s", 1000.0)],
            ),
            probe("native", "getppid", 100.0),
            probe("ns", "getppid", 100.0),
        ];
        let d = &diagnose(&derive_results(&samples))[0];
        assert_eq!(d.explained_fraction, None);
        assert!(d.summary.contains("no slowdown"), "{}", d.summary);
    }
}
