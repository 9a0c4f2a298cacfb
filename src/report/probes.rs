//! The probes' table (cost per operation in each target and its multiple of
//! native) and the diagnosis (which primitives explain each slowdown), for the
//! terminal and the HTML report.

use std::fmt::Write;

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use super::svg::esc;
use crate::results::diagnosis::{fmt_ns, Diagnosis, LITTLE};
use crate::results::{ResultEntry, RunRecord, BASELINE};

fn cost<'a>(run: &'a RunRecord, target: &str, probe: &str) -> Option<&'a ResultEntry> {
    run.results
        .iter()
        .find(|r| r.headline && r.target == target && r.workload == probe)
}

/// The probes measured in `run`, in catalog order.
pub fn probes_in(run: &RunRecord) -> Vec<&'static crate::workloads::Workload> {
    crate::probes::ALL
        .iter()
        .copied()
        .filter(|p| run.results.iter().any(|r| r.workload == p.name))
        .collect()
}

/// Cost text of a cell: the median per operation, and its multiple of native.
fn cell(run: &RunRecord, target: &str, probe: &str) -> String {
    let Some(r) = cost(run, target, probe) else {
        return "–".into();
    };
    let mut s = fmt_ns(r.median);
    if target != BASELINE {
        if let Some(n) = cost(run, BASELINE, probe).filter(|n| n.median > 0.0) {
            s.push_str(&format!(" ×{}", crate::units::fmt_num(r.median / n.median)));
        }
    }
    if r.noisy {
        s.push_str(" ~");
    }
    s
}

/// The probes' table for the terminal: one row per probe, one column per
/// target; `None` when the run measured no probe.
pub fn render_table(run: &RunRecord) -> Option<String> {
    let probes = probes_in(run);
    if probes.is_empty() {
        return None;
    }
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(super::terminal::DEFAULT_WIDTH);
    let mut header = vec![Cell::new("probe")];
    header.extend(targets.iter().map(Cell::new));
    table.set_header(header);
    for p in &probes {
        let mut row = vec![Cell::new(p.name)];
        for t in &targets {
            row.push(Cell::new(cell(run, t, p.name)).set_alignment(CellAlignment::Right));
        }
        table.add_row(row);
    }
    Some(format!(
        "{table}\nprobes: median cost per operation; ×cost relative to native (higher is slower); ~ noisy (CoV > 5%)"
    ))
}

/// The diagnosis for the terminal: one line per (target, workload) slower than
/// native; `None` when there is none.
pub fn render_diagnosis(run: &RunRecord) -> Option<String> {
    let lines: Vec<String> = run
        .diagnosis
        .iter()
        .filter(|d| d.explained_fraction.is_some())
        .map(|d| format!("  {}", d.summary))
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "diagnosis (native time + Σ native count × (probe cost in target − natively)):\n{}",
        lines.join("\n")
    ))
}

/// The Markdown section: the probes' table and the diagnosis, when the run
/// measured probes.
pub fn markdown(o: &mut String, run: &RunRecord) {
    let probes = probes_in(run);
    if probes.is_empty() {
        return;
    }
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let _ = writeln!(o, "## Probes and diagnosis\n");
    let _ = writeln!(o, "| probe | {} |", targets.join(" | "));
    let _ = writeln!(o, "| --- |{}", " ---: |".repeat(targets.len()));
    for p in &probes {
        let cells: Vec<String> = targets.iter().map(|t| cell(run, t, p.name)).collect();
        let _ = writeln!(o, "| `{}` | {} |", p.name, cells.join(" | "));
    }
    let _ = writeln!(
        o,
        "\nMedian cost per operation; ×cost relative to native (higher is slower).\n"
    );
    for d in run
        .diagnosis
        .iter()
        .filter(|d| d.explained_fraction.is_some())
    {
        let _ = writeln!(o, "- {}", d.summary);
    }
    let _ = writeln!(o);
}

/// Colours of the primitives in the stacked bars, in [`crate::agent::counts::PRIMITIVES`] order.
const COLOURS: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

fn colour(primitive: &str) -> &'static str {
    crate::agent::counts::PRIMITIVES
        .iter()
        .position(|(p, _)| *p == primitive)
        .and_then(|i| COLOURS.get(i))
        .copied()
        .unwrap_or("#8c564b")
}

/// A stacked bar: the measured extra time is the full width; each primitive's
/// share, then the unexplained rest in grey (or a mark where the model predicts
/// more than was measured).
fn bar(d: &Diagnosis, f: f64) -> String {
    const W: f64 = 360.0;
    const H: f64 = 18.0;
    let total: f64 = d.by_primitive.iter().map(|s| s.fraction.max(0.0)).sum();
    let scale = W / total.max(1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{:.0}\" height=\"{H:.0}\" viewBox=\"0 0 {:.0} {H:.0}\"><title>{}</title>",
        W + 2.0,
        W + 2.0,
        esc(&format!(
            "{} {}: {:.0}% explained",
            d.target,
            d.workload,
            f * 100.0
        ))
    );
    let mut x = 1.0;
    for s in d.by_primitive.iter().filter(|s| s.fraction > 0.0) {
        let w = s.fraction * scale;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"1\" width=\"{w:.1}\" height=\"{:.0}\" fill=\"{}\"><title>{}: {:.0}%</title></rect>",
            H - 2.0,
            colour(&s.primitive),
            esc(&s.primitive),
            s.fraction * 100.0
        );
        x += w;
    }
    if total < 1.0 {
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"1\" width=\"{:.1}\" height=\"{:.0}\" fill=\"#ddd\"><title>unexplained: {:.0}%</title></rect>",
            W + 1.0 - x,
            H - 2.0,
            (1.0 - total) * 100.0
        );
    } else {
        // The measured slowdown ends here; the model predicts more.
        let m = 1.0 + scale;
        let _ = write!(
            svg,
            "<line x1=\"{m:.1}\" y1=\"0\" x2=\"{m:.1}\" y2=\"{H:.0}\" stroke=\"#000\" stroke-width=\"2\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML section: the probes' table and the diagnosis with a stacked bar per
/// (target, workload); `None` without probes.
pub fn html_section(run: &RunRecord) -> Option<String> {
    let probes = probes_in(run);
    if probes.is_empty() {
        return None;
    }
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let mut h = String::from(
        "<p>Each probe measures one primitive that virtualization can make expensive \
         (<code>docs/probes.md</code>): median cost per operation, and its multiple of native.</p>\n\
         <div class=\"scroll\"><table><thead><tr><th>probe</th><th>primitive</th>",
    );
    for t in &targets {
        let _ = write!(h, "<th>{}</th>", esc(t));
    }
    h.push_str("</tr></thead><tbody>\n");
    for p in &probes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"dnr\">{}</td>",
            esc(p.name),
            esc(p.description)
        );
        for t in &targets {
            let _ = write!(h, "<td>{}</td>", esc(&cell(run, t, p.name)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
    let diagnosed: Vec<&Diagnosis> = run
        .diagnosis
        .iter()
        .filter(|d| d.explained_fraction.is_some())
        .collect();
    if diagnosed.is_empty() {
        h.push_str("<p class=\"note\">No diagnosis: it needs a workload slower than native, its operation counts measured natively, and the probes measured natively and in the target.</p>\n");
        return Some(h);
    }
    h.push_str(
        "<h3>Diagnosis</h3>\n<p>Predicted time per unit of work = native time + Σ native count × \
         (probe cost in the target − natively). The bar is the measured extra time; coloured: \
         the share each primitive explains; grey: unexplained.</p>\n<p>",
    );
    for (p, probe) in crate::agent::counts::PRIMITIVES {
        let _ = write!(
            h,
            "<span class=\"tag\" style=\"border-color:{c};color:{c}\">■ {} ({})</span> ",
            esc(p),
            esc(probe),
            c = colour(p)
        );
    }
    h.push_str(
        "</p>\n<div class=\"scroll\"><table><thead><tr><th>target</th><th>workload</th>\
         <th>slowdown</th><th>explained</th><th>explained by primitive</th><th>reading</th></tr></thead><tbody>\n",
    );
    for d in diagnosed {
        let f = d.explained_fraction.unwrap_or(0.0);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}×</td><td>{:.0}%{}</td><td>{}</td><td class=\"dnr\">{}</td></tr>",
            esc(&d.target),
            esc(&d.workload),
            d.measured_slowdown,
            f * 100.0,
            if f < LITTLE { " <span class=\"noisy\">(little)</span>" } else { "" },
            bar(d, f),
            esc(&d.summary)
        );
    }
    h.push_str("</tbody></table></div>\n");
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{derive_results, diagnosis::diagnose, SampleRecord, TargetRecord};
    use crate::workloads::Metric;

    /// A run of dd-zero and two probes on native and gvisor, two kept samples each.
    fn run() -> RunRecord {
        let mut r = crate::report::testing::synthetic_run(1, 1, 1);
        r.targets = ["native", "gvisor"]
            .iter()
            .map(|t| TargetRecord {
                name: t.to_string(),
                ..TargetRecord::default()
            })
            .collect();
        let mut samples = Vec::new();
        for rep in 0..2 {
            let s = |t: &str, w: &str, metrics: Vec<Metric>| SampleRecord {
                target: t.into(),
                workload: w.into(),
                rep,
                metrics,
                ..SampleRecord::default()
            };
            samples.push(s(
                "native",
                "dd-zero",
                vec![
                    Metric::higher("throughput", "MB/s", 1000.0),
                    Metric::lower("count.syscalls", "per MB", 3906.0),
                ],
            ));
            samples.push(s(
                "gvisor",
                "dd-zero",
                vec![Metric::higher("throughput", "MB/s", 10.0)],
            ));
            for (t, ns) in [("native", 100.0), ("gvisor", 25_000.0)] {
                samples.push(s(t, "getppid", vec![Metric::lower("cost", "ns/op", ns)]));
                samples.push(s(t, "stat", vec![Metric::lower("cost", "ns/op", ns * 3.0)]));
            }
        }
        r.plan.run.workloads = Some(vec!["dd-zero".into(), "getppid".into(), "stat".into()]);
        r.results = derive_results(&samples);
        r.samples = samples;
        r.failures.clear();
        r.diagnosis = diagnose(&r.results);
        r
    }

    #[test]
    fn every_format_shows_the_probes_and_the_diagnosis() {
        let r = run();
        let text = crate::report::terminal::render_width(&r, 120);
        assert!(text.contains("getppid") && text.contains("×250"), "{text}");
        assert!(text.contains("syscalls per MB"), "{text}");
        // Probes stay out of the workloads' table.
        let table_end = text.find("probes: median").unwrap();
        assert_eq!(text[..table_end].matches("stat").count(), 1, "{text}");
        let html = crate::report::html(&r);
        assert!(html.contains("<section id=\"probes\">"), "no section");
        assert!(html.contains("explained by primitive"), "no diagnosis");
        let md = crate::report::markdown(&r);
        assert!(md.contains("## Probes and diagnosis"), "{md}");
        assert!(md.contains("| `getppid` |"), "{md}");
    }

    #[test]
    fn a_run_without_probes_has_no_probe_section() {
        let r = crate::report::testing::synthetic_run(3, 2, 3);
        assert!(render_table(&r).is_none());
        assert!(html_section(&r).is_none());
        assert!(!crate::report::html(&r).contains("id=\"probes\""));
    }
}
