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
                    format!("DNR\n{why}")
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
