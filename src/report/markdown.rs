//! The Markdown report (GitHub-flavoured): the summary, the ratios to native and
//! one table of raw medians per workload, then the environment in brief.

use std::fmt::Write;

use super::fmt_num;
use super::html::human_bytes;
use super::view::{fmt_ratio, status_text, View, CLASSES};
use crate::results::{RunStatus, BASELINE};

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
        "- status: **{}**\n- started {}{}\n- host {} ({}, {} CPUs, {}, kernel {})\n- targets: {}\n- virtmark {} (git {})\n",
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
        run.virtmark.version,
        run.virtmark.git_revision
    );

    let _ = writeln!(o, "## Summary\n");
    if run.status != RunStatus::Complete {
        let _ = writeln!(o, "> This run is {}.\n", status_text(run.status));
    }
    if view.has_ratios() {
        let classes: Vec<(usize, &str)> = CLASSES
            .iter()
            .enumerate()
            .filter(|(ci, _)| view.summary.iter().any(|s| s.by_class[*ci].is_some()))
            .map(|(ci, c)| (ci, *c))
            .collect();
        let _ = writeln!(
            o,
            "Geometric mean of each target's ratios to native (1.0 = native, higher is better; workloads in brackets).\n"
        );
        let mut cols = vec!["target"];
        cols.extend(classes.iter().map(|c| c.1));
        cols.push("overall");
        header(&mut o, &cols, 1);
        for s in &view.summary {
            let mut cells = vec![cell(&s.target)];
            let gm = |g: &Option<super::view::GeoMean>| {
                g.as_ref()
                    .map(|g| format!("{}× ({})", fmt_ratio(g.value), g.n))
                    .unwrap_or_else(|| "–".into())
            };
            cells.extend(classes.iter().map(|(ci, _)| gm(&s.by_class[*ci])));
            cells.push(format!("**{}**", gm(&s.overall)));
            row(&mut o, &cells);
        }
        o.push('\n');
        if view.slowdowns.is_empty() {
            let _ = writeln!(o, "No target is slower than native on any workload.\n");
        } else {
            let _ = writeln!(o, "Largest slowdowns:\n");
            for (i, s) in view.slowdowns.iter().enumerate() {
                let _ = writeln!(o, "{}. {}", i + 1, cell(&s.sentence()));
            }
            o.push('\n');
        }

        let _ = writeln!(
            o,
            "## Ratio to native\n\nMedian over native's median, higher is better; bootstrap 95% CI in brackets.\n"
        );
        let compared = view.compared();
        let mut cols = vec!["workload"];
        cols.extend(compared.iter().map(|c| c.1));
        header(&mut o, &cols, 1);
        for w in &view.workloads {
            let mut cells = vec![cell(&w.name)];
            for (i, _) in &compared {
                cells.push(match w.cells[*i] {
                    Some(r) => match r.ratio_to_native {
                        Some(v) => format!(
                            "{} [{}–{}]",
                            fmt_ratio(v),
                            fmt_ratio(r.ratio_ci_low.unwrap_or(f64::NAN)),
                            fmt_ratio(r.ratio_ci_high.unwrap_or(f64::NAN))
                        ),
                        None => "n/a".into(),
                    },
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

    let _ = writeln!(o, "## Results per workload\n\n{}.\n", view.method_note());
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
            format!("95% CI ({})", cell(&unit)),
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
                        format!("{}–{}", fmt_num(r.ci_low), fmt_num(r.ci_high)),
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

    let _ = writeln!(o, "## Environment\n");
    let _ = writeln!(o, "- command: `{}`", run.command.replace('`', "'"));
    let _ = writeln!(
        o,
        "- re-run: `virtmark run --plan plan.toml` (plan.toml of this run directory: the exact plan)"
    );
    for t in &run.targets {
        let _ = writeln!(
            o,
            "- target {}: {}{}",
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
                .unwrap_or_default()
        );
    }
    o
}
