//! The HTML report: one self-contained file (inline CSS and SVG, no script, no
//! external resource), readable offline and printable.
//!
//! The page is a list of [`SECTIONS`], each a function from the run's [`View`] to
//! an optional block of HTML (`None` leaves the section out): a run of
//! `virtmark scale` shows the scalability section and no overhead charts, a run of
//! `virtmark study` every section.

use std::fmt::Write;

use super::fmt_num;
use super::svg::ScaleKind;
use super::svg::{self, esc, Chart};
use super::view::{fmt_percent, status_text, View, CLASSES};
use crate::results::{Degradation, IsolationEntry, ResultEntry, RunStatus, BASELINE};

/// What every section gets: the view and the charts drawn once.
pub struct Ctx<'a> {
    /// The derived view of the run.
    pub view: &'a View<'a>,
    /// Relative-performance charts, one per class.
    pub relative: Vec<Chart>,
}

/// One section of the page.
pub struct Section {
    /// Anchor (`summary`).
    pub id: &'static str,
    /// Heading and table-of-contents entry.
    pub title: &'static str,
    /// The section's body, or `None` to leave it out.
    pub render: fn(&Ctx) -> Option<String>,
}

/// The page, in order. Add a section here to extend the report.
pub const SECTIONS: &[Section] = &[
    Section {
        id: "summary",
        title: "Summary",
        render: summary,
    },
    Section {
        id: "relative",
        title: "Performance relative to native",
        render: relative,
    },
    Section {
        id: "workloads",
        title: "Results per workload",
        render: per_workload,
    },
    Section {
        id: "probes",
        title: "Probes and diagnosis",
        render: |ctx| super::probes::html_section(ctx.view.run),
    },
    Section {
        id: "dnr",
        title: "Did not return a result (DNR)",
        render: dnr,
    },
    Section {
        id: "scalability",
        title: "Scalability",
        render: scalability,
    },
    Section {
        id: "isolation",
        title: "Isolation",
        render: isolation,
    },
    Section {
        id: "environment",
        title: "Environment and provenance",
        render: environment,
    },
    Section {
        id: "recommend",
        title: "Recommendation",
        render: |ctx| crate::recommend::report_section(ctx.view.run),
    },
];

const CSS: &str = r#"
:root{--fg:#1a1a1a;--muted:#555;--line:#ccc;--bg-alt:#f5f5f5;--warn:#8a4b00}
*{box-sizing:border-box}
body{font:15px/1.45 "DejaVu Sans",Verdana,system-ui,sans-serif;color:var(--fg);margin:0 auto;max-width:1180px;padding:1.2rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0 .4rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:2px solid var(--fg);padding-bottom:.2rem}
h3{font-size:1.1rem;margin:1.6rem 0 .4rem}
.meta{color:var(--muted);margin:.2rem 0}
.status{display:inline-block;padding:.1rem .5rem;border:1px solid;border-radius:3px;font-weight:bold}
.status.partial{color:var(--warn)}
nav ol{columns:2;margin:.6rem 0;padding-left:1.4rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:.25rem .55rem;text-align:right;vertical-align:top}
th{background:var(--bg-alt)}th:first-child,td:first-child{text-align:left}
td.dnr{color:var(--muted);text-align:left}
table.env td,table.targets td,table.notes th{text-align:left}
.noisy{color:var(--warn);font-weight:bold}
figure{margin:1rem 0;break-inside:avoid;page-break-inside:avoid}
figure svg{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:.9rem}
.scroll{overflow-x:auto}
.slow li{margin:.15rem 0}
pre{background:var(--bg-alt);padding:.6rem;overflow-x:auto;font-size:.82rem;white-space:pre-wrap}
details{margin:.4rem 0}summary{cursor:pointer}
.note{color:var(--muted);font-size:.9rem}
.workload{break-inside:avoid-page}
.pair{display:flex;flex-wrap:wrap;gap:0 1.5rem}.pair figure{flex:1 1 480px;min-width:0}
tr.grp td{border-top:2px solid var(--fg)}
.tag{font-size:.8rem;border:1px solid var(--muted);border-radius:3px;padding:0 .25rem;color:var(--muted);white-space:nowrap}
table.iso th[scope=colgroup]{text-align:center;border-bottom:1px solid var(--line)}
table.iso td.d1{background:#fdf0d5}table.iso td.d2{background:#f6c48a;font-weight:bold}
td abbr{text-decoration:underline dotted;cursor:help}
table.scale td:not(.dnr),table.iso th,table.iso td{white-space:nowrap}
table.scale td.dnr{min-width:14rem}
ul.dnrs{margin:0;padding-left:1rem;text-align:left}ol.foot{font-size:.9rem;color:var(--muted)}
@media print{body{max-width:none;padding:0;font-size:11pt}nav{display:none}h2{break-after:avoid}
details{display:block}details>summary{display:none}details>*{display:block}a{color:inherit;text-decoration:none}}
"#;

/// Render the whole page.
pub fn render(view: &View) -> String {
    let ctx = Ctx {
        view,
        relative: svg::relative_charts(view),
    };
    let run = view.run;
    let mut body = String::new();
    let mut toc = String::new();
    for s in SECTIONS {
        if let Some(html) = (s.render)(&ctx) {
            let _ = writeln!(toc, "<li><a href=\"#{}\">{}</a></li>", s.id, esc(s.title));
            let _ = writeln!(
                body,
                "<section id=\"{}\">\n<h2>{}</h2>\n{html}</section>",
                s.id,
                esc(s.title)
            );
        }
    }
    let partial = run.status != RunStatus::Complete;
    let targets = view.targets.join(", ");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"virtmark {ver}\">\n\
         <title>virtmark report {id}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header>\n<h1>virtmark report: run {id}</h1>\n\
         <p class=\"meta\"><span class=\"status{pcls}\">{status}</span> · started {started}{finished} · \
         host {host} · targets: {targets} · {steps}</p>\n</header>\n\
         <nav aria-label=\"contents\"><ol>\n{toc}</ol></nav>\n<main>\n{body}</main>\n\
         <footer class=\"note\"><p>Made by virtmark {ver} ({rev}) from the stored run; every figure is \
         derived from the run's stored raw samples.</p></footer>\n</body>\n</html>\n",
        ver = esc(&run.virtmark.version),
        rev = esc(&run.virtmark.git_revision),
        id = esc(&run.run_id),
        pcls = if partial { " partial" } else { "" },
        status = esc(status_text(run.status)),
        started = esc(&run.started),
        finished = run
            .finished
            .as_deref()
            .map(|f| format!(", finished {}", esc(f)))
            .unwrap_or_default(),
        host = esc(&run.host.hostname),
        targets = esc(&targets),
        steps = esc(&view.steps_text()),
    )
}

fn summary(ctx: &Ctx) -> Option<String> {
    let v = ctx.view;
    let mut h = String::new();
    if v.run.status != RunStatus::Complete {
        let _ = writeln!(
            h,
            "<p class=\"status partial\">This run is {}.</p>",
            esc(status_text(v.run.status))
        );
    }
    if !v.has_overhead {
        let _ = writeln!(h, "<p>{}</p>", esc(&v.no_overhead_text()));
    } else if !v.has_ratios() {
        let _ = writeln!(
            h,
            "<p>No ratios to native: {}. Ratios appear when a run measures native and at least one other target.</p>",
            if v.targets.iter().any(|t| t == BASELINE) {
                "only native has results"
            } else {
                "native was not measured"
            }
        );
    } else {
        let classes: Vec<(usize, &str)> = CLASSES
            .iter()
            .enumerate()
            .filter(|(ci, _)| v.summary.iter().any(|s| s.by_class[*ci].is_some()))
            .map(|(ci, c)| (ci, *c))
            .collect();
        let _ = writeln!(
            h,
            "<p>Geometric mean of each target's ratios to native (1.0 = native, higher is better) \
             with its approximate 95% interval, ≈ when it holds 1; number of workloads in parentheses.</p>\n<div class=\"scroll\"><table class=\"summary\">\n<thead><tr><th>target</th>"
        );
        for (_, c) in &classes {
            let _ = write!(h, "<th>{c}</th>");
        }
        let _ = writeln!(h, "<th>overall</th></tr></thead><tbody>");
        for s in &v.summary {
            let _ = write!(h, "<tr><td>{}</td>", esc(&s.target));
            for (ci, _) in &classes {
                let _ = write!(h, "<td>{}</td>", gm_cell(s.by_class[*ci].as_ref()));
            }
            let _ = writeln!(
                h,
                "<td><strong>{}</strong></td></tr>",
                gm_cell(s.overall.as_ref())
            );
        }
        let _ = writeln!(h, "</tbody></table></div>");
        if v.slowdowns.is_empty() {
            let _ = writeln!(
                h,
                "<p>No target is slower than native on any workload beyond its interval.</p>"
            );
        } else {
            let _ = writeln!(
                h,
                "<p>Largest slowdowns (interval below 1):</p><ol class=\"slow\">"
            );
            for s in &v.slowdowns {
                let _ = writeln!(h, "<li>{}</li>", esc(&s.sentence()));
            }
            let _ = writeln!(h, "</ol>");
        }
        if let Some(n) = &v.host_noise {
            let _ = writeln!(
                h,
                "<p class=\"note\">{}</p>",
                esc(&n.sentence(v.run.plan.run.auto))
            );
        }
    }
    for sv in &v.scale {
        let _ = writeln!(
            h,
            "<p><a href=\"#scale-{}\">Scalability of {}</a> ({}):</p><ul class=\"slow\">",
            svg::slug(&sv.workload),
            esc(&sv.workload),
            esc(&sv.metric)
        );
        for l in &sv.lines {
            let _ = writeln!(h, "<li>{}</li>", esc(&l.sentence(&sv.unit)));
        }
        let _ = writeln!(h, "</ul>");
    }
    if let Some(iso) = &v.isolation {
        let _ = writeln!(
            h,
            "<p><a href=\"#isolation\">Isolation</a> (good responses lost against the baseline):</p><ul class=\"slow\">"
        );
        for s in iso.sentences() {
            let _ = writeln!(h, "<li>{}</li>", esc(&s));
        }
        let _ = writeln!(h, "</ul>");
    }
    if v.has_overhead {
        let noisy = v
            .run
            .results
            .iter()
            .filter(|r| r.headline && r.noisy)
            .count();
        let _ = writeln!(
            h,
            "<p class=\"note\">Results: {}; DNR: {}; noisy: {}. Method: {}.</p>",
            v.run.results.iter().filter(|r| r.headline).count(),
            v.dnr.len(),
            noisy,
            esc(&v.method_note())
        );
    }
    Some(h)
}

fn scalability(ctx: &Ctx) -> Option<String> {
    let v = ctx.view;
    if v.scale.is_empty() {
        return None;
    }
    let mut h = String::from(
        "<p>n instances of each target start together, wait at a barrier and run the workload at \
         once (after Camargos et al.). (a) Aggregate throughput: the mean per instance × n, as the \
         studies computed it; (b) throughput per instance: the mean over instances, whiskers from the \
         slowest to the fastest. Each instance's figure is its median over the kept repetitions. \
         Dashed ring: the knee, beyond which the aggregate grows by less than 5%. ✕ with a count: \
         instances that did not return a result (DNR), reasons in the table.</p>\n",
    );
    for sv in &v.scale {
        let _ = writeln!(
            h,
            "<div class=\"workload\" id=\"scale-{}\">\n<h3>{}</h3>\n<p class=\"meta\">{} in {}, higher is better · \
             memory: the total divided between the instances · {}</p>",
            svg::slug(&sv.workload),
            esc(&sv.workload),
            esc(&sv.metric),
            esc(&sv.unit),
            esc(sv.cpu_note())
        );
        let _ = writeln!(h, "<div class=\"pair\">");
        h.push_str(&figure(
            &svg::scale_chart(sv, ScaleKind::Aggregate),
            "(a) Aggregate throughput (mean per instance × n) against the number of instances; one line per target.",
        ));
        h.push_str(&figure(
            &svg::scale_chart(sv, ScaleKind::PerInstance),
            "(b) Mean throughput per instance; whiskers: slowest and fastest instance.",
        ));
        let _ = writeln!(h, "</div>");
        let _ = writeln!(
            h,
            "<div class=\"scroll\"><table class=\"scale\"><thead><tr><th>target</th><th>n</th><th>memory each</th>\
             <th>per instance: mean (min–max) ({u})</th><th>aggregate: mean × n ({u})</th><th>sum ({u})</th>\
             <th title=\"Jain's fairness index over instances, 1 = even\">fairness</th>\
             <th title=\"largest gap between the starts of the instances' measured windows, and the smallest share of the step during which all of them measured\">windows</th><th>DNR</th></tr></thead><tbody>",
            u = esc(&sv.unit)
        );
        for l in &sv.lines {
            let knee = l.knee();
            for (i, e) in l.points.iter().enumerate() {
                let per = e.per_instance.map_or("–".into(), |p| {
                    format!(
                        "{} <span class=\"note\">({}–{})</span>",
                        fmt_num(p.mean),
                        fmt_num(p.min),
                        fmt_num(p.max)
                    )
                });
                let tag = if knee == Some(e.instances) {
                    " <span class=\"tag\" title=\"beyond this n the aggregate grows by less than 5%\">knee</span>"
                } else if e.past_knee {
                    " <span class=\"tag\" title=\"the aggregate grew by less than 5% from the previous n\">past knee</span>"
                } else {
                    ""
                };
                let (agg, sum) = e.aggregate.map_or(("–".to_string(), "–".to_string()), |a| {
                    let finished = super::steps::finished_aggregate(e)
                        .map(|f| format!(" <span class=\"note\">({})</span>", esc(&f)))
                        .unwrap_or_default();
                    (
                        format!("{}{finished}", fmt_num(a.mean_times_n)),
                        fmt_num(a.sum),
                    )
                });
                let dnr = if e.dnr.is_empty() {
                    "–".to_string()
                } else {
                    let items: String = super::view::dnr_groups(&e.dnr)
                        .iter()
                        .map(|g| format!("<li>{}</li>", esc(g)))
                        .collect();
                    format!(
                        "<strong>{} of {}</strong> <span class=\"note\">({})</span><ul class=\"dnrs\">{items}</ul>",
                        e.dnr.len(),
                        e.instances,
                        esc(&super::steps::counts_text(&e.counts))
                    )
                };
                let _ = writeln!(
                    h,
                    "<tr{}><td>{}</td><td>{}</td><td>{}{}</td><td>{per}</td><td>{agg}{tag}</td><td>{sum}</td><td>{}</td><td>{}</td><td{}>{dnr}</td></tr>",
                    if i == 0 { " class=\"grp\"" } else { "" },
                    esc(&e.target),
                    e.instances,
                    esc(&human_bytes(e.memory_per_instance)),
                    if e.pinned { " <span class=\"tag\">pinned</span>" } else { "" },
                    e.fairness.map_or("–".into(), |f| format!("{f:.3}")),
                    esc(&super::steps::alignment(e)),
                    if e.dnr.is_empty() { "" } else { " class=\"dnr\"" },
                );
            }
        }
        let _ = writeln!(h, "</tbody></table></div>\n</div>");
    }
    Some(h)
}

/// A degradation cell: the figure, shaded by size (the figure always shown), or
/// DNR with its reason as a tooltip and a footnote.
fn degradation_cell(
    d: &Degradation,
    rates: (Option<f64>, Option<f64>),
    foot: &mut Vec<String>,
    what: String,
) -> String {
    let rate = |r: Option<f64>| r.map_or("–".into(), fmt_num);
    match d {
        Degradation::Percent(p) => {
            let cls = if *p >= 25.0 {
                " class=\"d2\""
            } else if *p >= 5.0 {
                " class=\"d1\""
            } else {
                ""
            };
            format!(
                "<td{cls} title=\"{}\">{}</td>",
                esc(&format!(
                    "{what}: good responses/s {} in the baseline → {} under the stressor",
                    rate(rates.0),
                    rate(rates.1)
                )),
                fmt_percent(*p)
            )
        }
        Degradation::Dnr { dnr } => {
            foot.push(format!("{what}: {dnr}"));
            format!(
                "<td class=\"dnr\"><abbr title=\"{}\"><strong>DNR</strong></abbr><sup><a href=\"#iso-note-{n}\">{n}</a></sup></td>",
                esc(dnr),
                n = foot.len()
            )
        }
    }
}

fn isolation(ctx: &Ctx) -> Option<String> {
    let iso = ctx.view.isolation.as_ref()?;
    let k = iso
        .cells
        .iter()
        .flatten()
        .flatten()
        .map(|e| e.instances)
        .max()
        .unwrap_or(0);
    let mut h = format!(
        "<p>{k} instances of each target run a request/response workload against the peer at a steady \
         offered rate; a response within its deadline is a good response. First all behave (the baseline), \
         then, for each stressor, instance 0 misbehaves while the others keep going. \
         <strong>Degradation</strong> is the percentage of good responses per second lost against the \
         baseline (as in Xu et al.'s Table II): 0% = perfect isolation, higher = worse, negative = better \
         than the baseline. <em>Misbehaving</em>: the instance running the stressor; <em>well-behaved</em>: \
         the mean over the others. DNR: the instance returned no result. Shading marks ≥ 5% (light) and \
         ≥ 25% (darker, bold); the figure is always printed.</p>\n"
    );
    let _ = writeln!(
        h,
        "<div class=\"scroll\"><table class=\"iso\"><thead><tr><th rowspan=\"2\" scope=\"col\">stressor</th>"
    );
    for t in &iso.targets {
        let _ = write!(h, "<th colspan=\"3\" scope=\"colgroup\">{}</th>", esc(t));
    }
    let _ = writeln!(h, "</tr><tr>");
    for _ in &iso.targets {
        let _ = write!(
            h,
            "<th scope=\"col\">well-behaved</th><th scope=\"col\">misbehaving</th>\
             <th scope=\"col\" title=\"mean of the well-behaved instances' 99th-percentile latency, in the baseline → under the stressor\">well-behaved p99 (µs)<br><span class=\"note\">baseline → stressed</span></th>"
        );
    }
    let _ = writeln!(h, "</tr></thead><tbody>");
    let mut foot = Vec::new();
    for (si, st) in iso.stressors.iter().enumerate() {
        let _ = write!(h, "<tr><th scope=\"row\">{}</th>", esc(st));
        for (ti, t) in iso.targets.iter().enumerate() {
            match iso.cells[si][ti] {
                Some(e) => {
                    h.push_str(&degradation_cell(
                        &e.degradation.well_behaved,
                        (e.baseline_rate[1], e.stressed_rate[1]),
                        &mut foot,
                        format!("{t}, {st}, well-behaved"),
                    ));
                    h.push_str(&degradation_cell(
                        &e.degradation.misbehaving,
                        (e.baseline_rate[0], e.stressed_rate[0]),
                        &mut foot,
                        format!("{t}, {st}, misbehaving"),
                    ));
                    let _ = write!(h, "<td>{}</td>", p99_text(e));
                }
                None => {
                    let _ = write!(h, "<td colspan=\"3\" class=\"dnr\">not run</td>");
                }
            }
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(h, "</tbody></table></div>");
    if !foot.is_empty() {
        let _ = writeln!(h, "<ol class=\"foot\">");
        for (i, f) in foot.iter().enumerate() {
            let _ = writeln!(h, "<li id=\"iso-note-{}\">{}</li>", i + 1, esc(f));
        }
        let _ = writeln!(h, "</ol>");
    }
    // The baseline behind the percentages.
    let base: Vec<String> = iso
        .targets
        .iter()
        .enumerate()
        .filter_map(|(ti, t)| {
            let e = iso.cells.iter().find_map(|row| row[ti])?;
            let r = e.baseline_rate[1]?;
            Some(format!(
                "{t} {} good responses/s per well-behaved instance",
                fmt_num(r)
            ))
        })
        .collect();
    if !base.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"note\">Baseline: {}. Hover a figure for the rates behind it.</p>",
            esc(&base.join("; "))
        );
    }
    let _ = writeln!(
        h,
        "<h3>What each stressor did</h3><div class=\"scroll\"><table class=\"env notes\"><thead><tr><th>target</th><th>stressor</th><th>its report (work done, limit hit, how it ended)</th></tr></thead><tbody>"
    );
    for (si, _) in iso.stressors.iter().enumerate() {
        for e in iso.cells[si].iter().flatten() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.target),
                esc(&e.stressor),
                e.stressor_notes
                    .iter()
                    .cloned()
                    .chain(super::steps::well_behaved_dnr(e))
                    .chain(std::iter::once(super::steps::round_facts(e)))
                    .map(|n| esc(&n))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
    }
    let _ = writeln!(h, "</tbody></table></div>");
    Some(h)
}

/// `105.5 → 163.1` (µs).
pub(crate) fn p99_text(e: &IsolationEntry) -> String {
    let us = |v: Option<f64>| v.map_or("–".into(), fmt_num);
    format!(
        "{} → {}",
        us(e.well_behaved_p99_us[1]),
        us(e.well_behaved_p99_us[0])
    )
}

fn gm_cell(g: Option<&super::view::GeoMean>) -> String {
    match g {
        Some(g) => format!("{} <span class=\"note\">({})</span>", esc(&g.text()), g.n),
        None => "–".into(),
    }
}

fn figure(c: &Chart, caption: &str) -> String {
    format!(
        "<figure id=\"fig-{}\">\n<div class=\"scroll\">{}</div>\n<figcaption>{}</figcaption>\n</figure>\n",
        c.id,
        c.svg,
        esc(caption)
    )
}

fn relative(ctx: &Ctx) -> Option<String> {
    if ctx.relative.is_empty() {
        return None;
    }
    let mut h = format!(
        "<p>One group per workload, one bar per target: the median of the target's samples each divided by the native sample run next to it \
         (by each of native's with fewer than {} such pairs) \
         (inverted for lower-is-better metrics, so higher is always better). Error bars: distribution-free \
         95% interval of the ratio (its real level is in the tables). Dashed line: native.</p>\n",
        crate::stats::PAIRED_MIN
    );
    for c in &ctx.relative {
        h.push_str(&figure(
            c,
            "Bars: ratio of the target's median to native's; whiskers: distribution-free 95% interval; dashed line: native (1.0); DNR: no result.",
        ));
    }
    Some(h)
}

fn result_row(h: &mut String, t: &str, r: &ResultEntry) {
    let ratio = match super::view::ratio_text(r, "×") {
        Some(text) => esc(&text),
        None if t == BASELINE => "1 (baseline)".into(),
        None => "–".into(),
    };
    let ci = if r.ci_level > 0.0 {
        format!(
            "{}–{}{}",
            fmt_num(r.ci_low),
            fmt_num(r.ci_high),
            super::view::level_note(r.ci_level)
        )
    } else {
        "–".into()
    };
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}–{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(t),
        if r.noisy {
            format!(
                "{} <span class=\"noisy\" title=\"coefficient of variation above 5%\">noisy</span>",
                fmt_num(r.median)
            )
        } else {
            fmt_num(r.median)
        },
        ci,
        fmt_num(r.min),
        fmt_num(r.max),
        format_args!("{:.1}%", r.cov * 100.0),
        r.n,
        ratio
    );
}

fn per_workload(ctx: &Ctx) -> Option<String> {
    let v = ctx.view;
    if v.workloads.is_empty() {
        return None;
    }
    let mut h = format!("<p class=\"note\">{}.</p>\n", esc(&v.method_note()));
    for (wi, w) in v.workloads.iter().enumerate() {
        let head = w.cells.iter().flatten().next();
        let _ =
            writeln!(
            h,
            "<div class=\"workload\" id=\"w-{}\">\n<h3>{}</h3>\n<p class=\"meta\">class {}{}{}</p>",
            svg::slug(&w.name),
            esc(&w.name),
            w.class,
            if w.stands_for.is_empty() {
                String::new()
            } else {
                format!(" · stands for {}", esc(w.stands_for))
            },
            head.map(|r| format!(
                " · headline metric {} in {}, {} is better",
                esc(&r.metric),
                esc(&r.unit),
                if r.higher_is_better { "higher" } else { "lower" }
            ))
            .unwrap_or_default()
        );
        if let Some(c) = svg::median_chart(v, wi) {
            h.push_str(&figure(
                &c,
                "Bars: median of the kept samples; whiskers: distribution-free 95% interval of the median; dots: the kept samples.",
            ));
        }
        let unit = head.map(|r| r.unit.as_str()).unwrap_or("");
        let _ = writeln!(
            h,
            "<div class=\"scroll\"><table class=\"results\"><thead><tr><th>target</th><th>median ({u})</th>\
             <th>CI ({u})</th><th>min–max ({u})</th><th>CoV</th><th>n</th><th>ratio to native [interval]</th></tr></thead><tbody>",
            u = esc(unit)
        );
        for (ti, t) in v.targets.iter().enumerate() {
            match w.cells[ti] {
                Some(r) => result_row(&mut h, t, r),
                None => {
                    let why = v
                        .dnr
                        .iter()
                        .find(|d| d.target == *t && d.workload == w.name)
                        .map(|d| d.reason())
                        .unwrap_or_default();
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td class=\"dnr\" colspan=\"6\"><strong>DNR</strong> {}</td></tr>",
                        esc(t),
                        esc(&why)
                    );
                }
            }
        }
        let _ = writeln!(h, "</tbody></table></div>");
        // Secondary metrics, compactly.
        let secondary: Vec<&ResultEntry> = v
            .run
            .results
            .iter()
            .filter(|r| !r.headline && r.workload == w.name)
            .collect();
        if !secondary.is_empty() {
            let _ = writeln!(
                h,
                "<details><summary>secondary metrics</summary><table><thead><tr><th>target</th><th>metric</th><th>median</th><th>min–max</th><th>CoV</th></tr></thead><tbody>"
            );
            for r in secondary {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}–{}</td><td>{:.1}%</td></tr>",
                    esc(&r.target),
                    esc(&r.metric),
                    fmt_num(r.median),
                    esc(&r.unit),
                    fmt_num(r.min),
                    fmt_num(r.max),
                    r.cov * 100.0
                );
            }
            let _ = writeln!(h, "</tbody></table></details>");
        }
        let _ = writeln!(h, "</div>");
    }
    Some(h)
}

fn dnr(ctx: &Ctx) -> Option<String> {
    let v = ctx.view;
    if v.dnr.is_empty() {
        return None;
    }
    let mut h = String::from(
        "<table><thead><tr><th>target</th><th>workload</th><th>why</th></tr></thead><tbody>\n",
    );
    for d in &v.dnr {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"dnr\">{}</td></tr>",
            esc(&d.target),
            esc(&d.workload),
            esc(&d.reason())
        );
    }
    h.push_str("</tbody></table>\n");
    Some(h)
}

fn environment(ctx: &Ctx) -> Option<String> {
    let run = ctx.view.run;
    let mut h = String::new();
    let host = &run.host;
    let _ = writeln!(
        h,
        "<table class=\"env\"><tbody>\
         <tr><th>virtmark</th><td>{} (git {})</td></tr>\
         <tr><th>command</th><td><code>{}</code></td></tr>\
         <tr><th>re-run</th><td><code>{}</code> <span class=\"note\">(plan.toml of run {}: in its run directory and below, every default resolved)</span></td></tr>\
         <tr><th>host</th><td>{} · {} · {} CPU(s) · {} memory · kernel {} · clock {} · virtualization {}</td></tr>\
         </tbody></table>",
        esc(&run.virtmark.version),
        esc(&run.virtmark.git_revision),
        esc(&run.command),
        ctx.view.rerun_command(),
        esc(&run.run_id),
        esc(&host.hostname),
        esc(&host.cpu_model),
        host.cpus,
        esc(&human_bytes(host.memory_bytes)),
        esc(&host.kernel),
        esc(&host.clocksource),
        esc(&format!("{} {}", host.verdict.kind.as_str(), host.verdict.technology)),
    );
    let _ = writeln!(
        h,
        "<details><summary>host fingerprint</summary><pre>{}</pre></details>",
        esc(&host.summary())
    );
    let _ = writeln!(
        h,
        "<h3>Targets</h3><table class=\"targets\"><thead><tr><th>target</th><th>seen from inside</th><th>CPUs</th><th>memory</th><th>kernel</th><th>start-up</th></tr></thead><tbody>"
    );
    for t in &run.targets {
        match &t.fingerprint {
            Some(fp) => {
                let _ =
                    writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&t.name),
                    esc(&format!("{} {}", fp.verdict.kind.as_str(), fp.verdict.technology)),
                    fp.cpus,
                    esc(&human_bytes(fp.memory_bytes)),
                    esc(&fp.kernel),
                    t.startup_s.map(|s| format!("{s:.2} s")).unwrap_or("–".into())
                );
            }
            None => {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"dnr\" colspan=\"4\">no fingerprint recorded</td><td>{}</td></tr>",
                    esc(&t.name),
                    t.startup_s.map(|s| format!("{s:.2} s")).unwrap_or("–".into())
                );
            }
        }
    }
    let _ = writeln!(h, "</tbody></table>");
    for t in &run.targets {
        if let Some(l) = super::view::channel_losses(t) {
            let _ = writeln!(h, "<p class=\"note\">{}: {}</p>", esc(&t.name), esc(&l));
        }
    }
    for t in &run.targets {
        if let Some(fp) = &t.fingerprint {
            let _ = writeln!(
                h,
                "<details><summary>{} fingerprint</summary><pre>{}</pre></details>",
                esc(&t.name),
                esc(&fp.summary())
            );
        }
    }
    let _ = writeln!(h, "<h3>Plan</h3><pre>{}</pre>", esc(&run.plan.to_toml()));
    Some(h)
}

/// Bytes as `23.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    if b == 0 {
        return "unknown".into();
    }
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if b >= 1u64 << shift {
            return format!("{:.1} {unit}", b as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{b} B")
}
