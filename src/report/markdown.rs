//! The Markdown report (GitHub-flavoured): the summary, the ratios to native and
//! one table of raw medians per workload, then the environment in brief.

use std::fmt::Write;

use super::fmt_num;
use super::html::human_bytes;
use super::view::{fmt_percent, fmt_ratio, level_note, ratio_text, status_text, View, CLASSES};
use crate::results::{Degradation, RunStatus, BASELINE};

/// Escape what would break a table cell or start markup.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', " ")
        .replace('*', "\\*")
        .replace('_', "\\_")
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, cells: &[&str], right_from: usize) {
    row(
        out,
        &cells.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
    );
    let seps: Vec<String> = (0..cells.len())
        .map(|i| if i >= right_from { "---:" } else { "---" }.to_string())
        .collect();
    row(out, &seps);
}

/// Render the Markdown report.
pub fn render(view: &View) -> String {
    let run = view.run;
    let mut o = String::new();
    let _ = writeln!(o, "# virtmark report: run {}\n", run.run_id);
    let _ = writeln!(
        o,
        "- status: **{}**\n- started {}{}\n- host {} ({}, {} CPUs, {}, kernel {})\n- targets: {}\n- steps: {}\n- virtmark {} (git {})\n",
        status_text(run.status),
        run.started,
        run.finished
            .as_deref()
            .map(|f| format!(", finished {f}"))
            .unwrap_or_default(),
        cell(&run.host.hostname),
        cell(&run.host.cpu_model),
        run.host.cpus,
        human_bytes(run.host.memory_bytes),
        cell(&run.host.kernel),
        view.targets.join(", "),
        cell(&view.steps_text()),
        run.virtmark.version,
        run.virtmark.git_revision
    );

    let _ = writeln!(o, "## Summary\n");
    if run.status != RunStatus::Complete {
        let _ = writeln!(o, "> This run is {}.\n", status_text(run.status));
    }
    if !view.has_overhead {
        let _ = writeln!(o, "{}\n", view.no_overhead_text());
    } else if view.has_ratios() {
        let classes: Vec<(usize, &str)> = CLASSES
            .iter()
            .enumerate()
            .filter(|(ci, _)| view.summary.iter().any(|s| s.by_class[*ci].is_some()))
            .map(|(ci, c)| (ci, *c))
            .collect();
        let _ = writeln!(
            o,
            "Geometric mean of each target's ratios to native (1.0 = native, higher is better) with its approximate 95% interval; ≈ when the interval holds 1; workloads in parentheses.\n"
        );
        let mut cols = vec!["target"];
        cols.extend(classes.iter().map(|c| c.1));
        cols.push("overall");
        header(&mut o, &cols, 1);
        for s in &view.summary {
            let mut cells = vec![cell(&s.target)];
            let gm = |g: &Option<super::view::GeoMean>| {
                g.as_ref()
                    .map(|g| format!("{} ({})", g.text(), g.n))
                    .unwrap_or_else(|| "–".into())
            };
            cells.extend(classes.iter().map(|(ci, _)| gm(&s.by_class[*ci])));
            cells.push(format!("**{}**", gm(&s.overall)));
            row(&mut o, &cells);
        }
        o.push('\n');
        if view.slowdowns.is_empty() {
            let _ = writeln!(
                o,
                "No target is slower than native on any workload beyond its interval.\n"
            );
        } else {
            let _ = writeln!(o, "Largest slowdowns (interval below 1):\n");
            for (i, s) in view.slowdowns.iter().enumerate() {
                let _ = writeln!(o, "{}. {}", i + 1, cell(&s.sentence()));
            }
            o.push('\n');
        }
        if let Some(h) = &view.host_noise {
            let _ = writeln!(o, "{}\n", h.sentence(view.run.plan.run.auto));
        }

        let _ = writeln!(
            o,
            "## Ratio to native\n\nThe median of the ratios of every sample to the native sample run next to it (its interval the sign test's; with fewer than {} such pairs, to every native sample), higher is better; distribution-free 95% interval in brackets, its real level in parentheses when below 95%; ≈ native when the interval holds 1.\n",
            crate::stats::PAIRED_MIN
        );
        let compared = view.compared();
        let mut cols = vec!["workload"];
        cols.extend(compared.iter().map(|c| c.1));
        header(&mut o, &cols, 1);
        for w in &view.workloads {
            let mut cells = vec![cell(&w.name)];
            for (i, _) in &compared {
                cells.push(match w.cells[*i] {
                    Some(r) => ratio_text(r, "").unwrap_or_else(|| "n/a".into()),
                    None => "DNR".into(),
                });
            }
            row(&mut o, &cells);
        }
        o.push('\n');
    } else {
        let _ = writeln!(
            o,
            "No ratios to native: {}.\n",
            if view.targets.iter().any(|t| t == BASELINE) {
                "only native has results"
            } else {
                "native was not measured"
            }
        );
    }

    steps_summary(&mut o, view);
    if view.has_overhead {
        let _ = writeln!(o, "## Results per workload\n\n{}.\n", view.method_note());
    }
    for w in &view.workloads {
        let head = w.cells.iter().flatten().next();
        let _ = writeln!(
            o,
            "### {}\n\n{}{}\n",
            cell(&w.name),
            format_args!("class {}", w.class),
            head.map(|r| format!(
                "; {} in {}, {} is better",
                cell(&r.metric),
                cell(&r.unit),
                if r.higher_is_better {
                    "higher"
                } else {
                    "lower"
                }
            ))
            .unwrap_or_default()
        );
        let unit = head.map(|r| r.unit.clone()).unwrap_or_default();
        let (med, ci, range) = (
            format!("median ({})", cell(&unit)),
            format!("CI ({})", cell(&unit)),
            format!("min–max ({})", cell(&unit)),
        );
        header(
            &mut o,
            &["target", &med, &ci, &range, "CoV", "n", "ratio to native"],
            1,
        );
        for (ti, t) in view.targets.iter().enumerate() {
            match w.cells[ti] {
                Some(r) => row(
                    &mut o,
                    &[
                        cell(t),
                        format!(
                            "{}{}",
                            fmt_num(r.median),
                            if r.noisy { " (noisy)" } else { "" }
                        ),
                        if r.ci_level > 0.0 {
                            format!(
                                "{}–{}{}",
                                fmt_num(r.ci_low),
                                fmt_num(r.ci_high),
                                level_note(r.ci_level)
                            )
                        } else {
                            "–".into()
                        },
                        format!("{}–{}", fmt_num(r.min), fmt_num(r.max)),
                        format!("{:.1}%", r.cov * 100.0),
                        r.n.to_string(),
                        match r.ratio_to_native {
                            Some(v) => fmt_ratio(v),
                            None if t == BASELINE => "1 (baseline)".into(),
                            None => "–".into(),
                        },
                    ],
                ),
                None => {
                    let why = view
                        .dnr
                        .iter()
                        .find(|d| d.target == *t && d.workload == w.name)
                        .map(|d| d.reason())
                        .unwrap_or_default();
                    row(
                        &mut o,
                        &[
                            cell(t),
                            format!("DNR: {}", cell(&why)),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                        ],
                    );
                }
            }
        }
        o.push('\n');
    }

    scalability(&mut o, view);
    isolation(&mut o, view);
    super::probes::markdown(&mut o, run);

    let _ = writeln!(o, "## Environment\n");
    let _ = writeln!(o, "- command: `{}`", run.command.replace('`', "'"));
    let _ = writeln!(
        o,
        "- re-run: `{}` (plan.toml of this run directory: the exact plan)",
        view.rerun_command()
    );
    for t in &run.targets {
        let _ = writeln!(
            o,
            "- target {}: {}{}{}",
            cell(&t.name),
            t.fingerprint
                .as_ref()
                .map(|fp| format!(
                    "{} {}, {} CPUs, {}, kernel {}",
                    fp.verdict.kind.as_str(),
                    cell(&fp.verdict.technology),
                    fp.cpus,
                    human_bytes(fp.memory_bytes),
                    cell(&fp.kernel)
                ))
                .unwrap_or_else(|| "no fingerprint recorded".into()),
            t.startup_s
                .map(|s| format!(", start-up {s:.2} s"))
                .unwrap_or_default(),
            super::view::channel_losses(t)
                .map(|l| format!("; {l}"))
                .unwrap_or_default()
        );
    }
    o
}

/// The scalability and isolation lines of the summary.
fn steps_summary(o: &mut String, view: &View) {
    for sv in &view.scale {
        let _ = writeln!(
            o,
            "Scalability of {} ({}):\n",
            cell(&sv.workload),
            cell(&sv.metric)
        );
        for l in &sv.lines {
            let _ = writeln!(o, "- {}", cell(&l.sentence(&sv.unit)));
        }
        o.push('\n');
    }
    if let Some(iso) = &view.isolation {
        let _ = writeln!(o, "Isolation (good responses lost against the baseline):\n");
        for s in iso.sentences() {
            let _ = writeln!(o, "- {}", cell(&s));
        }
        o.push('\n');
    }
}

/// One table per workload: target, n, memory, per-instance, aggregate, fairness, DNR.
fn scalability(o: &mut String, view: &View) {
    if view.scale.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Scalability\n\nn instances start together and run the workload at once (after Camargos et al.); \
         per instance = mean (min–max) over instances of each one's median; aggregate = mean per instance × n, \
         every instance counted (a DNR as zero); \
         fairness = Jain's index; knee = beyond it the aggregate grows by less than 5%.\n"
    );
    for sv in &view.scale {
        let _ = writeln!(
            o,
            "### {}\n\n{} in {}, higher is better; {}.\n",
            cell(&sv.workload),
            cell(&sv.metric),
            cell(&sv.unit),
            sv.cpu_note()
        );
        let u = cell(&sv.unit);
        let per = format!("per instance: mean (min–max) ({u})");
        let agg = format!("aggregate: mean × n ({u})");
        let sum = format!("sum ({u})");
        header(
            o,
            &[
                "target",
                "n",
                "memory each",
                &per,
                &agg,
                &sum,
                "fairness",
                "DNR",
            ],
            1,
        );
        for l in &sv.lines {
            let knee = l.knee();
            for e in &l.points {
                let mark = if knee == Some(e.instances) {
                    " (knee)"
                } else if e.past_knee {
                    " (past knee)"
                } else {
                    ""
                };
                let dnr = if e.dnr.is_empty() {
                    "–".to_string()
                } else {
                    let reasons: Vec<String> = e
                        .dnr
                        .iter()
                        .map(|d| format!("#{}: {}", d.instance, cell(&d.reason)))
                        .collect();
                    format!(
                        "{} of {} ({}; {})",
                        e.dnr.len(),
                        e.instances,
                        super::steps::counts_text(&e.counts),
                        reasons.join("; ")
                    )
                };
                row(
                    o,
                    &[
                        cell(&e.target),
                        e.instances.to_string(),
                        format!(
                            "{}{}",
                            human_bytes(e.memory_per_instance),
                            if e.pinned { ", pinned" } else { "" }
                        ),
                        e.per_instance.map_or("–".into(), |p| {
                            format!(
                                "{} ({}–{})",
                                fmt_num(p.mean),
                                fmt_num(p.min),
                                fmt_num(p.max)
                            )
                        }),
                        e.aggregate.map_or("–".into(), |a| {
                            format!(
                                "{}{mark}{}",
                                fmt_num(a.mean_times_n),
                                super::steps::finished_aggregate(e)
                                    .map(|f| format!(" ({f})"))
                                    .unwrap_or_default()
                            )
                        }),
                        e.aggregate.map_or("–".into(), |a| fmt_num(a.sum)),
                        e.fairness.map_or("–".into(), |f| format!("{f:.3}")),
                        dnr,
                    ],
                );
            }
        }
        o.push('\n');
    }
}

/// The studies' table: a row per stressor, per target the well-behaved and the
/// misbehaving degradation and the well-behaved p99; DNR reasons as footnotes.
fn isolation(o: &mut String, view: &View) {
    let Some(iso) = &view.isolation else {
        return;
    };
    let _ = writeln!(
        o,
        "## Isolation\n\nDegradation = % of good responses per second (answered within the deadline) lost \
         against the baseline in which every instance behaved (as in Xu et al.'s Table II): 0% = perfect \
         isolation, higher = worse. Misbehaving: the instance running the stressor; well-behaved: mean over \
         the others. p99: the well-behaved instances' 99th-percentile latency, baseline → stressed.\n"
    );
    let mut cols = vec!["stressor".to_string()];
    for t in &iso.targets {
        let t = cell(t);
        cols.push(format!("{t}: well-behaved"));
        cols.push(format!("{t}: misbehaving"));
        cols.push(format!("{t}: p99 well-behaved (µs)"));
    }
    let refs: Vec<&str> = cols.iter().map(|c| c.as_str()).collect();
    header(o, &refs, 1);
    let mut foot: Vec<String> = Vec::new();
    let mut deg = |d: &Degradation, what: String| match d {
        Degradation::Percent(p) => fmt_percent(*p),
        Degradation::Dnr { dnr } => {
            foot.push(format!("{what}: {}", cell(dnr)));
            format!("DNR [{}]", foot.len())
        }
    };
    for (si, st) in iso.stressors.iter().enumerate() {
        let mut cells = vec![cell(st)];
        for (ti, t) in iso.targets.iter().enumerate() {
            match iso.cells[si][ti] {
                Some(e) => {
                    cells.push(deg(
                        &e.degradation.well_behaved,
                        format!("{t}, {st}, well-behaved"),
                    ));
                    cells.push(deg(
                        &e.degradation.misbehaving,
                        format!("{t}, {st}, misbehaving"),
                    ));
                    cells.push(super::html::p99_text(e));
                }
                None => cells.extend(["not run".to_string(), String::new(), String::new()]),
            }
        }
        row(o, &cells);
    }
    o.push('\n');
    for (i, f) in foot.iter().enumerate() {
        let _ = writeln!(o, "[{}] {}  ", i + 1, f);
    }
    if !foot.is_empty() {
        o.push('\n');
    }
    let _ = writeln!(o, "What each stressor did:\n");
    for (si, _) in iso.stressors.iter().enumerate() {
        for e in iso.cells[si].iter().flatten() {
            let _ = writeln!(
                o,
                "- {} / {}: {}",
                cell(&e.target),
                cell(&e.stressor),
                cell(
                    &e.stressor_notes
                        .iter()
                        .cloned()
                        .chain(super::steps::well_behaved_dnr(e))
                        .chain(std::iter::once(super::steps::round_facts(e)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            );
        }
    }
    o.push('\n');
}
