//! The table printed at the end of a run: one row per workload, one column per
//! target; each cell the median with its unit and the ratio to native with its
//! interval (or "≈ native"), short marks for flags, long reasons as numbered
//! footnotes below. Fits 120 columns with eight targets.

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use super::fmt_num;
use super::view::fmt_ratio;
use crate::results::{ResultEntry, RunRecord, Step};

/// Width used when standard output is not a terminal (or its width is unknown).
pub const DEFAULT_WIDTH: u16 = 120;
/// From this width on, cells also show n and the spread.
const WIDE: u16 = 160;

/// Short marks and what they mean, in the order of the legend.
const MARK_NOISY: &str = "~";
const MARK_LEVEL: &str = "°";
const MARK_FAILED: &str = "!";

fn cell_for(r: &ResultEntry, failed: usize, wide: bool) -> String {
    let mut marks = String::new();
    if r.noisy {
        marks.push_str(MARK_NOISY);
    }
    let level = r.ratio_ci_level.unwrap_or(r.ci_level);
    if level < crate::stats::LEVEL - 1e-9 {
        marks.push_str(MARK_LEVEL);
    }
    if failed > 0 {
        marks.push_str(MARK_FAILED);
    }
    // The marks go on the second line, where they never make the cell wider.
    let mut s = format!("{} {}", fmt_num(r.median), r.unit);
    if wide {
        s.push_str(&format!("\nn={} CoV {:.1}%", r.n, r.cov * 100.0));
    }
    let ci = r.ratio_interval().filter(|ci| ci.exists());
    let ratio = match (r.ratio_to_native, ci) {
        (Some(_), Some(ci)) if ci.holds(1.0) => "≈ native".to_string(),
        (Some(v), _) => format!("×{}", fmt_ratio(v)),
        (None, _) => String::new(),
    };
    let line2 = [ratio, marks].join(" ");
    if !line2.trim().is_empty() {
        s.push('\n');
        s.push_str(line2.trim());
    }
    if let Some(ci) = ci {
        s.push_str(&format!("\n[{}–{}]", fmt_ratio(ci.low), fmt_ratio(ci.high)));
    }
    s
}

/// The terminal's width, or [`DEFAULT_WIDTH`].
fn width() -> u16 {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        if let Some(w) = Table::new().width() {
            return w.max(60);
        }
    }
    DEFAULT_WIDTH
}

/// Render the summary table of a run's headline results for this terminal.
pub fn render(run: &RunRecord) -> String {
    render_width(run, width())
}

/// Render the summary table in at most `width` columns.
pub fn render_width(run: &RunRecord, width: u16) -> String {
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let wide = width >= WIDE;
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width);
    let mut header = vec![Cell::new("workload")];
    header.extend(targets.iter().map(Cell::new));
    table.set_header(header);
    // One space before the content and none after: eight targets then fit.
    for (i, c) in table.column_iter_mut().enumerate() {
        c.set_padding((1, u16::from(i == 0)));
    }
    let mut notes: Vec<String> = Vec::new();
    let mut note = |text: String| -> usize {
        match notes.iter().position(|n| *n == text) {
            Some(i) => i + 1,
            None => {
                notes.push(text);
                notes.len()
            }
        }
    };
    let failures = |t: &str, w: &str| -> Vec<&crate::results::FailureRecord> {
        run.failures
            .iter()
            .filter(|f| f.step == Step::Overhead && f.target == t && f.workload == w)
            .collect()
    };
    let mut marks_used = [false; 3];
    let names: Vec<String> = run
        .plan
        .workload_names()
        .into_iter()
        .filter(|w| !crate::probes::is_probe(w))
        .collect();
    if names.is_empty() {
        // Probes only (`virtmark probe`): their own table.
        return [
            super::probes::render_table(run),
            super::probes::render_diagnosis(run),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n\n");
    }
    for w in names {
        let mut row = vec![Cell::new(&w)];
        for t in &targets {
            let r = run
                .results
                .iter()
                .find(|r| r.headline && r.target == *t && r.workload == w);
            let text = match r {
                Some(r) => {
                    let failed = failures(t, &w).len();
                    let text = cell_for(r, failed, wide);
                    marks_used[0] |= text.contains(MARK_NOISY);
                    marks_used[1] |= text.contains(MARK_LEVEL);
                    marks_used[2] |= failed > 0;
                    text
                }
                None => {
                    let (label, why) = match failures(t, &w).last() {
                        Some(f) if f.kind == "unavailable" || f.kind == "unknown_workload" => {
                            ("n/a", f.message.clone())
                        }
                        Some(f) => ("DNR", format!("{}: {}", f.kind, f.message)),
                        None => ("DNR", "no sample (interrupted before it ran)".into()),
                    };
                    format!("{label} [{}]", note(why))
                }
            };
            row.push(Cell::new(text).set_alignment(CellAlignment::Left));
        }
        table.add_row(row);
    }
    let mut out = table.to_string();
    let legend: Vec<&str> = [
        (marks_used[0], "~ noisy (CoV > 5%)"),
        (
            marks_used[1],
            "° interval below 95% (too few samples: its real level is in results.json and the report)",
        ),
        (marks_used[2], "! some repetitions failed (see results.json)"),
    ]
    .into_iter()
    .filter_map(|(used, text)| used.then_some(text))
    .collect();
    let p = &run.plan.run;
    out.push_str(&format!(
        "\nmedian of the kept samples; ×ratio to native: median of the ratios of each sample to the native one run next to it\n\
         (to each of native's with fewer than {} such pairs);\n\
         [distribution-free 95% interval], \
         ≈ native when the interval holds 1;\n{}",
        crate::stats::PAIRED_MIN,
        if p.auto {
            format!(
                "repeated until each ratio is known to ±{}% (at most {} repetitions; beyond {}, at most {} each)",
                p.precision * 100.0,
                p.max_reps,
                p.reps,
                p.max_time()
            )
        } else {
            format!("{} repetitions, first {} discarded", p.reps, p.discard)
        }
    ));
    if !legend.is_empty() {
        out.push_str(&format!("\n{}", legend.join("\n")));
    }
    if let Some(h) = super::view::HostNoise::of_run(run) {
        out.push_str(&format!("\n{}", h.sentence(p.auto)));
    }
    let lost: Vec<String> = run
        .targets
        .iter()
        .filter_map(|t| Some(format!("{}: {}", t.name, super::view::channel_losses(t)?)))
        .collect();
    if !lost.is_empty() {
        out.push_str(&format!("\n{}", lost.join("; ")));
    }
    for (i, n) in notes.iter().enumerate() {
        out.push_str(&format!("\n[{}] {n}", i + 1));
    }
    for extra in [
        super::probes::render_table(run),
        super::probes::render_diagnosis(run),
    ]
    .into_iter()
    .flatten()
    {
        out.push_str("\n\n");
        out.push_str(&extra);
    }
    out
}

/// Render the scalability step: per target and n, per-instance throughput,
/// aggregate, fairness and the knee.
pub fn render_scale(run: &RunRecord) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(vec![
        "target",
        "n",
        "memory each",
        "per instance: mean (min–max)",
        "aggregate: mean × n",
        "sum",
        "fairness",
        "DNR",
    ]);
    for e in &run.scale {
        let per = e.per_instance.map_or("–".into(), |p| {
            format!(
                "{} ({}–{}) {}",
                fmt_num(p.mean),
                fmt_num(p.min),
                fmt_num(p.max),
                e.unit
            )
        });
        let (agg, sum) = e.aggregate.map_or(("–".into(), "–".into()), |a| {
            (
                format!(
                    "{} {}{}{}",
                    fmt_num(a.mean_times_n),
                    e.unit,
                    if e.past_knee { " (past knee)" } else { "" },
                    super::steps::finished_aggregate(e)
                        .map(|f| format!("; {f}"))
                        .unwrap_or_default()
                ),
                fmt_num(a.sum),
            )
        });
        table.add_row(vec![
            e.target.clone(),
            e.instances.to_string(),
            format!("{} MiB", e.memory_per_instance >> 20),
            per,
            agg,
            sum,
            e.fairness.map_or("–".into(), |f| format!("{f:.3}")),
            if e.dnr.is_empty() {
                String::new()
            } else {
                format!(
                    "{} ({}; {})",
                    e.dnr.len(),
                    super::steps::counts_text(&e.counts),
                    e.dnr[0].reason
                )
            },
        ]);
    }
    let workload = run.scale.first().map_or("", |e| e.workload.as_str());
    format!(
        "{table}\nscalability of {workload}: per-instance figure = median of kept repetitions; \
         aggregate = mean per instance × n (as Camargos et al.), every instance counted, a DNR \
         as zero; fairness = Jain's index; \
         knee = first n after which the aggregate grows by less than 5%"
    )
}

fn degradation_text(d: &crate::results::Degradation) -> String {
    match d {
        crate::results::Degradation::Percent(p) => format!("{p:.2}%"),
        crate::results::Degradation::Dnr { dnr } => format!("DNR ({dnr})"),
    }
}

/// Render the isolation step like the studies' table: % degradation of the
/// good-response rate, misbehaving instance and mean of the well-behaved ones.
pub fn render_isolation(run: &RunRecord) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(vec![
        "target",
        "stressor",
        "well-behaved: degradation",
        "misbehaving: degradation",
        "well-behaved p99 (baseline → stressed)",
        "what the stressor did",
    ]);
    let us = |v: Option<f64>| v.map_or("–".into(), |v| format!("{} µs", fmt_num(v)));
    for e in &run.isolation {
        table.add_row(vec![
            e.target.clone(),
            e.stressor.clone(),
            match super::steps::well_behaved_dnr(e) {
                Some(note) => format!("{} ({note})", degradation_text(&e.degradation.well_behaved)),
                None => degradation_text(&e.degradation.well_behaved),
            },
            degradation_text(&e.degradation.misbehaving),
            format!(
                "{} → {}",
                us(e.well_behaved_p99_us[1]),
                us(e.well_behaved_p99_us[0])
            ),
            format!(
                "{}; {}",
                e.stressor_notes.join("; "),
                super::steps::round_facts(e)
            ),
        ]);
    }
    format!(
        "{table}\ndegradation = loss of good responses per second against the all-well-behaved \
         baseline (Xu et al.; Matthews et al.); DNR = the instance returned no result, counted \
         as 100% in the well-behaved mean"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::synthetic_run;

    fn widest(s: &str) -> usize {
        s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn eight_targets_fit_120_columns_with_long_reasons_as_footnotes() {
        let mut run = synthetic_run(8, 16, 6);
        let long = "the agent did not greet: the agent closed its channel; \
                    uml exited with status 1 after printing a very long kernel panic line"
            .to_string();
        for w in ["w03", "w04"] {
            run.failures.push(crate::results::FailureRecord {
                target: "uml".into(),
                workload: w.into(),
                kind: "target_failed".into(),
                message: long.clone(),
                ..Default::default()
            });
            run.results
                .retain(|r| !(r.target == "uml" && r.workload == w));
        }
        run.targets[6].skipped_lines = 12;
        run.targets[6].restarts = 1;
        let out = render_width(&run, 120);
        let table_end = out.find("\nmedian of the kept").unwrap();
        assert!(widest(&out[..table_end]) <= 120, "{out}");
        // So do the legend's lines; only footnotes (long reasons) may be longer.
        for line in out.lines().filter(|l| !l.starts_with('[')) {
            assert!(line.chars().count() <= 120, "{line}");
        }
        // The same reason is one footnote, referenced from both cells.
        assert_eq!(out.matches("DNR [2]").count(), 2, "{out}");
        assert!(out.contains(&format!("[2] target_failed: {long}")), "{out}");
        assert!(out.contains("DNR [1]"), "{out}");
        assert!(
            out.contains("uml: 12 console line(s) skipped, 1 restart(s)"),
            "{out}"
        );
        assert!(out.contains("×0.") && out.contains("≈ native"), "{out}");
        // Wider terminals show more.
        assert!(render_width(&run, 200).contains("n=5 CoV"));
    }
}
