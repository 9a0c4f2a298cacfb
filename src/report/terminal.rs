//! The table printed at the end of a run: per workload, per target, the median
//! with its spread and 95% confidence interval, and the ratio to native.

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use super::fmt_num;
use crate::results::{ResultEntry, RunRecord};

fn cell_for(r: &ResultEntry) -> String {
    let mut s = format!("{} {}", fmt_num(r.median), r.unit);
    if r.noisy {
        s.push_str(" (noisy)");
    }
    s.push_str(&format!(
        "\n{}–{}, CoV {:.1}%\n95% CI {}–{}",
        fmt_num(r.min),
        fmt_num(r.max),
        r.cov * 100.0,
        fmt_num(r.ci_low),
        fmt_num(r.ci_high)
    ));
    if let Some(ratio) = r.ratio_to_native {
        s.push_str(&format!(
            "\n×{:.2} native [{}–{}]",
            ratio,
            r.ratio_ci_low.map_or("–".into(), |v| format!("{v:.2}")),
            r.ratio_ci_high.map_or("–".into(), |v| format!("{v:.2}"))
        ));
    }
    s
}

/// Render the summary table of a run's headline results.
pub fn render(run: &RunRecord) -> String {
    let targets: Vec<&str> = run.targets.iter().map(|t| t.name.as_str()).collect();
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    let mut header = vec![Cell::new("workload")];
    header.extend(targets.iter().map(Cell::new));
    table.set_header(header);
    for w in run.plan.workload_names() {
        let mut row = vec![Cell::new(&w)];
        for t in &targets {
            let r = run
                .results
                .iter()
                .find(|r| r.headline && r.target == *t && r.workload == w);
            let text = match r {
                Some(r) => cell_for(r),
                None => {
                    let why = run
                        .failures
                        .iter()
                        .rev()
                        .find(|f| f.target == *t && f.workload == w)
                        .map(|f| format!("{}: {}", f.kind, f.message))
                        .unwrap_or_else(|| "no sample".into());
                    // The whole reason is in results.json and the report.
                    let short: String = why.chars().take(48).collect();
                    let more = if why.chars().count() > 48 { "…" } else { "" };
                    format!("DNR\n{short}{more}")
                }
            };
            row.push(Cell::new(text).set_alignment(CellAlignment::Left));
        }
        table.add_row(row);
    }
    let mut out = table.to_string();
    let noisy = run.results.iter().filter(|r| r.headline && r.noisy).count();
    out.push_str(&format!(
        "\nmedian of {} kept repetition(s) (first {} discarded); spread = min–max of kept samples; \
         CI = bootstrap 95% of the median{}",
        run.plan.run.reps - run.plan.run.discard,
        run.plan.run.discard,
        if noisy > 0 {
            format!("; {noisy} result(s) noisy (CoV > 5%)")
        } else {
            String::new()
        }
    ));
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
