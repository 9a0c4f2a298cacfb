//! A recommendation for the terminal and for the HTML report.

use std::fmt::Write;

use super::flow::{Ranked, Recommendation};
use crate::report::svg::esc;

fn rank_text(r: &Ranked) -> String {
    if r.tied {
        format!("={}", r.rank)
    } else {
        r.rank.to_string()
    }
}

fn cost_text(r: &Ranked) -> String {
    format!(
        "{}× [{}–{}]{}",
        super::flow::x(r.cost.value),
        super::flow::x(r.cost.low),
        super::flow::x(r.cost.high),
        if r.cost.measured {
            ""
        } else {
            " not measured here"
        }
    )
}

/// The recommendation as terminal text: the path, the ranked table, the
/// exclusions and the evidence.
pub fn terminal(rec: &Recommendation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "virtmark recommend (catalog {}): profile {} ({})",
        rec.catalog_version,
        rec.profile.name,
        rec.profile.workloads.join(", ")
    );
    let _ = writeln!(
        out,
        "measurements: {}",
        rec.run_id
            .as_deref()
            .map_or("none (catalog priors only)".to_string(), |r| format!(
                "run {r}"
            ))
    );
    for n in &rec.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "\nPath through the flow:");
    for (i, d) in rec.path.iter().enumerate() {
        let mark = if d.applied { "▶" } else { "·" };
        let _ = write!(out, " {mark} {:>2}. {}: {}", i + 1, d.node, d.asked);
        if !d.excluded.is_empty() {
            let _ = write!(
                out,
                " → excluded {} of {}: {}",
                d.excluded.len(),
                d.before,
                d.excluded.join(", ")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nStep 2, ranked by cost for the profile (ratio to native, 1.00 = native, higher is better; \"=\" marks a tie: the intervals overlap):"
    );
    if rec.ranking.is_empty() {
        let _ = writeln!(
            out,
            "  nothing in the catalog meets every requirement: see the exclusions below"
        );
    } else {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        if t.width().is_none() {
            t.set_width(150);
        }
        t.set_header(vec!["rank", "solution", "class", "cost", "why"]);
        for r in &rec.ranking {
            t.add_row(vec![
                rank_text(r),
                match &r.target {
                    Some(tg) => format!("{} ({tg})", r.name),
                    None => r.name.clone(),
                },
                r.class.key().to_string(),
                cost_text(r),
                r.reasons.join("\n"),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    if !rec.excluded.is_empty() {
        let _ = writeln!(out, "\nStep 1, excluded by the hard constraints:");
        for e in &rec.excluded {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                e.name,
                e.class.key(),
                e.reasons.join("; ")
            );
        }
    }
    if !rec.sources.is_empty() {
        let _ = writeln!(out, "\nSources:");
        for (k, v) in &rec.sources {
            let _ = writeln!(out, "  [{k}] {v}");
        }
    }
    let evidence: Vec<_> = rec
        .ranking
        .iter()
        .flat_map(|r| r.cost.evidence.iter())
        .collect();
    if !evidence.is_empty() {
        let _ = writeln!(out, "\nEvidence (ratio to native with its interval):");
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_header(vec!["run", "target", "workload", "ratio", "interval"]);
        for e in evidence {
            t.add_row(vec![
                e.run_id.clone(),
                e.target.clone(),
                e.workload.clone(),
                format!("{:.3}", e.ratio),
                format!(
                    "{:.3}–{:.3}{}",
                    e.low,
                    e.high,
                    super::flow::level_text(e.level)
                ),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    out
}

/// The recommendation as an HTML fragment: the flow chart with the path
/// highlighted, the ranked table, the exclusions, and the taxonomy figure.
pub fn html(rec: &Recommendation, catalog: &super::catalog::Catalog) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<p>Which solution fits, from this run's measurements and the catalog (version {}): \
         profile <b>{}</b> ({}); requirements: {}. Step 1 applies the hard constraints, step 2 ranks \
         what is left by the geometric mean of the ratios to native over the profile's workloads; \
         solutions whose intervals overlap share a rank (=). Costs marked <i>not measured here</i> \
         are the catalog's priors. <code>virtmark recommend --from {}</code> asks with your own requirements.</p>",
        esc(&rec.catalog_version),
        esc(&rec.profile.name),
        esc(&rec.profile.workloads.join(", ")),
        esc(&if rec.requirements.is_empty() {
            "none".to_string()
        } else {
            rec.requirements.join(", ")
        }),
        esc(rec.run_id.as_deref().unwrap_or("RUN")),
    );
    for n in &rec.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    let flow = super::figures::flow_svg(rec);
    let _ = writeln!(
        h,
        "<figure>{}<figcaption>{}: bold boxes are the decisions that constrained the choice.</figcaption></figure>",
        flow.svg,
        esc(&flow.title)
    );
    let _ = writeln!(
        h,
        "<div class=\"scroll\"><table class=\"recommend\"><thead><tr><th>rank</th><th>solution</th><th>class</th><th>cost</th><th>why</th></tr></thead><tbody>"
    );
    for r in &rec.ranking {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td style=\"text-align:left\"><ul class=\"dnrs\">{}</ul></td></tr>",
            esc(&rank_text(r)),
            esc(&match &r.target {
                Some(t) => format!("{} ({t})", r.name),
                None => r.name.clone(),
            }),
            esc(r.class.key()),
            esc(&cost_text(r)),
            r.reasons
                .iter()
                .map(|x| format!("<li>{}</li>", esc(x)))
                .collect::<String>()
        );
    }
    let _ = writeln!(h, "</tbody></table></div>");
    let evidence: Vec<_> = rec
        .ranking
        .iter()
        .flat_map(|r| r.cost.evidence.iter())
        .collect();
    if !evidence.is_empty() {
        let _ = writeln!(
            h,
            "<table class=\"evidence\"><caption>Evidence: ratio to native with its interval</caption>\
             <thead><tr><th>run</th><th>target</th><th>workload</th><th>ratio</th><th>interval</th></tr></thead><tbody>"
        );
        for e in evidence {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}–{:.3}{}</td></tr>",
                esc(&e.run_id),
                esc(&e.target),
                esc(&e.workload),
                e.ratio,
                e.low,
                e.high,
                esc(&super::flow::level_text(e.level))
            );
        }
        let _ = writeln!(h, "</tbody></table>");
    }
    if !rec.excluded.is_empty() {
        let _ = writeln!(
            h,
            "<details><summary>Excluded in step 1 ({})</summary><ul>",
            rec.excluded.len()
        );
        for e in &rec.excluded {
            let _ = writeln!(
                h,
                "<li><b>{}</b> ({}): {}</li>",
                esc(&e.name),
                esc(e.class.key()),
                esc(&e.reasons.join("; "))
            );
        }
        let _ = writeln!(h, "</ul></details>");
    }
    if !rec.sources.is_empty() {
        let _ = writeln!(h, "<ol class=\"foot\">");
        for (k, v) in &rec.sources {
            let _ = writeln!(h, "<li>[{}] {}</li>", esc(k), esc(v));
        }
        let _ = writeln!(h, "</ol>");
    }
    let tax = super::figures::taxonomy_svg(&super::figures::taxonomy(catalog));
    let _ = writeln!(
        h,
        "<figure>{}<figcaption>{}.</figcaption></figure>",
        tax.svg,
        esc(&tax.title)
    );
    h
}
