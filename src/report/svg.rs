//! Charts as SVG, written by hand (no dependency): the studies' relative-performance
//! bar charts (one group per workload, one bar per target, ratio to native with its
//! 95% CI, a line at 1.0) and, per workload, the raw medians with their CI and the
//! kept samples as dots.
//!
//! Accessibility: every chart is `role="img"` with a `<title>` and a `<desc>` that
//! lists the values; axes are labelled with units; targets are told apart by the
//! Okabe–Ito colour-blind-safe palette *and* a fill pattern each, so that the bars
//! stay distinct in greyscale and print (Okabe & Ito, "Color Universal Design",
//! 2008; Wong, "Points of view: Color blindness", Nature Methods 8, 441, 2011).

use std::fmt::Write;

use super::fmt_num;
use super::view::{fmt_ratio, ScaleView, View};
use crate::results::ScaleEntry;

/// A rendered chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File-name-safe identifier (`relative-cpu`, `medians-dd-zero`).
    pub id: String,
    /// Title, also the SVG's `<title>`.
    pub title: String,
    /// The standalone SVG document.
    pub svg: String,
}

/// Okabe–Ito colours, in the order targets get them.
const COLOURS: &[&str] = &[
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
];

const FONT: &str = "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\"";

/// Escape text for XML/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A name usable in ids and file names.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The `<pattern>` for the `i`-th target: a colour and a texture.
fn pattern_def(prefix: &str, i: usize) -> String {
    let colour = COLOURS[i % COLOURS.len()];
    let id = format!("{prefix}-p{i}");
    // Textures in black at 45% opacity read on every colour, and in greyscale.
    let ink = "stroke=\"#000\" stroke-opacity=\"0.55\"";
    let texture = match i % 8 {
        0 => String::new(),
        1 => format!("<path d=\"M0 6 L6 0\" {ink} stroke-width=\"1.4\"/>"),
        2 => "<circle cx=\"3\" cy=\"3\" r=\"1.2\" fill=\"#000\" fill-opacity=\"0.6\"/>".into(),
        3 => format!("<path d=\"M0 3 H6\" {ink} stroke-width=\"1.4\"/>"),
        4 => format!("<path d=\"M0 6 L6 0 M0 0 L6 6\" {ink} stroke-width=\"1\"/>"),
        5 => format!("<path d=\"M0 0 L6 6\" {ink} stroke-width=\"1.4\"/>"),
        6 => format!("<path d=\"M3 0 V6\" {ink} stroke-width=\"1.4\"/>"),
        _ => format!("<path d=\"M0 3 H6 M3 0 V6\" {ink} stroke-width=\"1\"/>"),
    };
    format!(
        "<pattern id=\"{id}\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\">\
         <rect width=\"6\" height=\"6\" fill=\"{colour}\"/>{texture}</pattern>"
    )
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `n` ticks over `span`.
pub fn nice_step(span: f64, n: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn svg_open(id: &str, w: f64, h: f64, title: &str, desc: &str) -> String {
    svg_open_sized(id, w, h, title, desc, 11)
}

/// The opening of an accessible chart (`role="img"`, `<title>`, `<desc>`, a white
/// background) of `w` × `h` pixels, with text of `font_size` pixels.
pub fn svg_open_sized(id: &str, w: f64, h: f64, title: &str, desc: &str, font_size: u32) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"{id}\" role=\"img\" \
         aria-labelledby=\"{id}-t {id}-d\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" {FONT} font-size=\"{font_size}\">\n\
         <title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">{}</desc>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n",
        esc(title),
        esc(desc)
    )
}

/// Legend: a swatch and the target name per target, wrapped into rows.
fn legend(out: &mut String, prefix: &str, names: &[(usize, &str)], x0: f64, y0: f64, width: f64) {
    let (mut x, mut y) = (x0, y0);
    let _ = writeln!(out, "<g class=\"legend\">");
    for (i, name) in names {
        let w = 22.0 + 7.0 * name.chars().count() as f64 + 14.0;
        if x + w > x0 + width && x > x0 {
            x = x0;
            y += 18.0;
        }
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"16\" height=\"12\" fill=\"url(#{prefix}-p{i})\" stroke=\"#000\" stroke-width=\"0.75\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y - 10.0,
            x + 20.0,
            y,
            esc(name)
        );
        x += w;
    }
    let _ = writeln!(out, "</g>");
}

/// Rows the legend needs for `names` in `width`.
fn legend_rows(names: &[(usize, &str)], width: f64) -> usize {
    let (mut x, mut rows) = (0.0, 1);
    for (_, name) in names {
        let w = 22.0 + 7.0 * name.chars().count() as f64 + 14.0;
        if x + w > width && x > 0.0 {
            x = 0.0;
            rows += 1;
        }
        x += w;
    }
    rows
}

/// The relative-performance charts: one per class of workload that has ratios.
pub fn relative_charts(view: &View) -> Vec<Chart> {
    let compared = view.compared();
    if compared.is_empty() || !view.has_ratios() {
        return vec![];
    }
    view.classes()
        .into_iter()
        .filter_map(|class| {
            let groups: Vec<_> = view.workloads.iter().filter(|w| w.class == class).collect();
            let any = groups
                .iter()
                .any(|w| compared.iter().any(|(i, _)| w.cells[*i].is_some()));
            any.then(|| relative_chart(class, &groups, &compared))
        })
        .collect()
}

fn relative_chart(
    class: &str,
    groups: &[&super::view::WorkloadView],
    compared: &[(usize, &str)],
) -> Chart {
    let id = format!("relative-{}", slug(class));
    let title = format!("{class} workloads: performance relative to native (higher is better)");
    let k = compared.len();
    let bar_w: f64 = if k <= 3 {
        22.0
    } else if k <= 6 {
        16.0
    } else {
        12.0
    };
    let gap = 22.0;
    let group_w = k as f64 * bar_w + gap;
    let left = 64.0;
    let right = 20.0;
    // Wide enough for the title on one line.
    let plot_w = (groups.len() as f64 * group_w)
        .max(360.0)
        .max(title.chars().count() as f64 * 8.6 - left + 10.0);
    // Groups are centred when the plot is wider than they need.
    let x0 = left + (plot_w - groups.len() as f64 * group_w) / 2.0;
    let width = left + plot_w + right;
    let rows = legend_rows(compared, plot_w);
    let top = 30.0 + 18.0 * rows as f64;
    let plot_h = 240.0;
    let longest = groups
        .iter()
        .map(|w| w.name.chars().count())
        .max()
        .unwrap_or(0);
    let rotate = groups.len() > 1 && longest as f64 * 6.5 > group_w;
    let bottom = if rotate {
        30.0 + longest as f64 * 4.6
    } else {
        22.0
    } + 18.0;
    let height = top + plot_h + bottom;

    // Scale: 0 .. the largest ratio or CI end, at least 1.2.
    let mut ymax: f64 = 1.2;
    for w in groups {
        for (i, _) in compared {
            if let Some(r) = w.cells[*i] {
                for v in [r.ratio_to_native, r.ratio_ci_high].into_iter().flatten() {
                    if v.is_finite() {
                        ymax = ymax.max(v * 1.05);
                    }
                }
            }
        }
    }
    let step = nice_step(ymax, 6);
    let ymax = (ymax / step).ceil() * step;
    let y = |v: f64| top + plot_h - (v / ymax) * plot_h;

    let mut desc = format!(
        "Bar chart. For each {class} workload, one bar per target: the median of its samples each divided by the native sample run next to it \
         (by each of native's with fewer than {min} such pairs) \
         (1.0 = native, higher is better), with its distribution-free 95% interval as an error bar.",
        min = crate::stats::PAIRED_MIN
    );
    for w in groups {
        let _ = write!(desc, " {}:", w.name);
        for (i, t) in compared {
            match w.cells[*i] {
                Some(r) => match r.ratio_to_native {
                    Some(ratio) => {
                        let _ = write!(
                            desc,
                            " {t} {} (CI {}–{});",
                            fmt_ratio(ratio),
                            fmt_ratio(r.ratio_ci_low.unwrap_or(f64::NAN)),
                            fmt_ratio(r.ratio_ci_high.unwrap_or(f64::NAN))
                        );
                    }
                    None => {
                        let _ = write!(desc, " {t} no native result;");
                    }
                },
                None => {
                    let _ = write!(desc, " {t} DNR;");
                }
            }
        }
    }

    let mut s = svg_open(&id, width, height, &title, &desc);
    let _ = write!(s, "<defs>");
    for (i, _) in compared {
        s.push_str(&pattern_def(&id, *i));
    }
    let _ = writeln!(s, "</defs>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(&title)
    );
    legend(&mut s, &id, compared, left, 36.0, plot_w);

    // Grid and y axis.
    let _ = writeln!(s, "<g class=\"axis y\">");
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            yy + 4.0,
            trim_tick(v)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#000\"/>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">ratio to native (×, higher is better)</text></g>",
        top + plot_h,
        top + plot_h / 2.0
    );

    // Bars.
    let _ = writeln!(s, "<g class=\"bars\">");
    for (gi, w) in groups.iter().enumerate() {
        let gx = x0 + gi as f64 * group_w + gap / 2.0;
        let _ = writeln!(s, "<g class=\"group\" data-workload=\"{}\">", esc(&w.name));
        for (slot, (i, t)) in compared.iter().enumerate() {
            let x = gx + slot as f64 * bar_w;
            let ratio = w.cells[*i].and_then(|r| r.ratio_to_native.map(|v| (r, v)));
            match ratio {
                Some((r, v)) => {
                    let yv = y(v.max(0.0));
                    let tip = format!(
                        "{t} on {}: {}× native ({:.0}% interval {}–{}){}",
                        w.name,
                        fmt_ratio(v),
                        r.ratio_ci_level.unwrap_or(0.0) * 100.0,
                        fmt_ratio(r.ratio_ci_low.unwrap_or(f64::NAN)),
                        fmt_ratio(r.ratio_ci_high.unwrap_or(f64::NAN)),
                        if r.noisy { ", noisy" } else { "" }
                    );
                    let _ = writeln!(
                        s,
                        "<rect class=\"bar\" data-target=\"{}\" x=\"{x:.1}\" y=\"{yv:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                         fill=\"url(#{id}-p{i})\" stroke=\"#000\" stroke-width=\"0.75\"><title>{}</title></rect>",
                        esc(t),
                        bar_w - 2.0,
                        (top + plot_h - yv).max(0.0),
                        esc(&tip)
                    );
                    if let (Some(lo), Some(hi)) = (r.ratio_ci_low, r.ratio_ci_high) {
                        if lo.is_finite() && hi.is_finite() {
                            let cx = x + (bar_w - 2.0) / 2.0;
                            let (y1, y2) = (y(lo.max(0.0)), y(hi));
                            let _ = writeln!(
                                s,
                                "<path class=\"ci\" d=\"M{cx:.1} {y1:.1}V{y2:.1}M{:.1} {y1:.1}H{:.1}M{:.1} {y2:.1}H{:.1}\" stroke=\"#000\" stroke-width=\"1.2\" fill=\"none\"/>",
                                cx - 3.0,
                                cx + 3.0,
                                cx - 3.0,
                                cx + 3.0
                            );
                        }
                    }
                }
                None => {
                    let label = if w.cells[*i].is_some() { "n/a" } else { "DNR" };
                    let cx = x + (bar_w - 2.0) / 2.0 + 3.5;
                    let _ = writeln!(
                        s,
                        "<text class=\"dnr\" data-target=\"{}\" transform=\"translate({cx:.1} {:.1}) rotate(-90)\" font-size=\"10\" fill=\"#555\">{label}<title>{} on {}: {}</title></text>",
                        esc(t),
                        top + plot_h - 4.0,
                        esc(t),
                        esc(&w.name),
                        if label == "DNR" { "did not return a result" } else { "native has no result to compare with" }
                    );
                }
            }
        }
        let lx = gx + (k as f64 * bar_w) / 2.0;
        let ly = top + plot_h + 14.0;
        if rotate {
            let _ = writeln!(
                s,
                "<text transform=\"translate({lx:.1} {ly:.1}) rotate(-35)\" text-anchor=\"end\">{}</text>",
                esc(&w.name)
            );
        } else {
            let _ = writeln!(
                s,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{}</text>",
                esc(&w.name)
            );
        }
        let _ = writeln!(s, "</g>");
    }
    let _ = writeln!(s, "</g>");

    // Native line and x axis.
    let y1 = y(1.0);
    let _ = writeln!(
        s,
        "<line class=\"native\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{y1:.1}\" y2=\"{y1:.1}\" stroke=\"#000\" stroke-width=\"1.2\" stroke-dasharray=\"6 3\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">native = 1.0</text>",
        left + plot_w,
        left + plot_w - 2.0,
        y1 - 4.0
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">workload</text>",
        left + plot_w,
        top + plot_h,
        top + plot_h,
        left + plot_w / 2.0,
        height - 6.0
    );
    s.push_str("</svg>\n");
    Chart { id, title, svg: s }
}

/// A tick label with as many decimals as the step needs (`50`, `0.25`, `1.5e6`).
fn fmt_tick(v: f64, step: f64) -> String {
    if v.abs() >= 1e6 {
        return format!("{v:.3e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn trim_tick(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Per workload: a horizontal bar per target at the median (raw unit), its 95% CI
/// as an error bar and every kept sample as a dot.
pub fn median_chart(view: &View, wi: usize) -> Option<Chart> {
    let w = &view.workloads[wi];
    let any = w.cells.iter().flatten().next()?;
    let unit = any.unit.clone();
    let metric = any.metric.clone();
    let hib = any.higher_is_better;
    let id = format!("medians-{}", slug(&w.name));
    let title = format!("{}: {metric} per target", w.name);
    let all: Vec<(usize, &str)> = view
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (i, t.as_str()))
        .collect();
    let left = 12.0 + 7.0 * all.iter().map(|t| t.1.chars().count()).max().unwrap_or(6) as f64;
    let left = left.max(70.0);
    let plot_w = (420.0f64).max(title.chars().count() as f64 * 8.0 - left + 10.0);
    let width = left + plot_w + 30.0;
    let row_h = 22.0;
    let top = 26.0;
    let plot_h = row_h * all.len() as f64;
    let height = top + plot_h + 44.0;
    let mut xmax: f64 = 0.0;
    for r in w.cells.iter().flatten() {
        xmax = xmax.max(r.max).max(r.ci_high).max(r.median);
    }
    if !(xmax.is_finite() && xmax > 0.0) {
        xmax = 1.0;
    }
    let step = nice_step(xmax * 1.05, 5);
    let xmax = ((xmax * 1.05) / step).ceil() * step;
    let x = |v: f64| left + (v / xmax).clamp(0.0, 1.0) * plot_w;
    let better = if hib {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut desc = format!(
        "Horizontal bar chart of the median {metric} in {unit} ({better}) per target, with the distribution-free \
         95% interval of the median as an error bar and each kept sample as a dot."
    );
    for (i, t) in &all {
        match w.cells[*i] {
            Some(r) => {
                let _ = write!(
                    desc,
                    " {t}: {} {unit} (CI {}–{});",
                    fmt_num(r.median),
                    fmt_num(r.ci_low),
                    fmt_num(r.ci_high)
                );
            }
            None => {
                let _ = write!(desc, " {t}: DNR;");
            }
        }
    }
    let mut s = svg_open(&id, width, height, &title, &desc);
    let _ = write!(s, "<defs>");
    for slot in 0..all.len() {
        s.push_str(&pattern_def(&id, slot));
    }
    let _ = writeln!(s, "</defs>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"16\" font-size=\"12\" font-weight=\"bold\">{}</text>",
        esc(&title)
    );
    let mut v = 0.0;
    while v <= xmax + 1e-9 * xmax {
        let xx = x(v);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            top + plot_h,
            top + plot_h + 14.0,
            fmt_tick(v, step)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} ({}), {better}</text>",
        left + plot_w / 2.0,
        height - 8.0,
        esc(&metric),
        esc(&unit)
    );
    let _ = writeln!(s, "<g class=\"bars\">");
    for (slot, (i, t)) in all.iter().enumerate() {
        let y0 = top + slot as f64 * row_h + 3.0;
        let bh = row_h - 6.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y0 + bh / 2.0 + 4.0,
            esc(t)
        );
        match w.cells[*i] {
            Some(r) => {
                let tip = format!(
                    "{t}: median {} {unit} ({:.0}% interval {}–{}, min {}, max {}, CoV {:.1}%){}",
                    fmt_num(r.median),
                    r.ci_level * 100.0,
                    fmt_num(r.ci_low),
                    fmt_num(r.ci_high),
                    fmt_num(r.min),
                    fmt_num(r.max),
                    r.cov * 100.0,
                    if r.noisy { ", noisy" } else { "" }
                );
                let _ = writeln!(
                    s,
                    "<rect class=\"bar\" data-target=\"{}\" x=\"{left}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" \
                     fill=\"url(#{id}-p{slot})\" stroke=\"#000\" stroke-width=\"0.75\"><title>{}</title></rect>",
                    esc(t),
                    x(r.median) - left,
                    esc(&tip)
                );
                let cy = y0 + bh / 2.0;
                let (x1, x2) = (x(r.ci_low), x(r.ci_high));
                let _ = writeln!(
                    s,
                    "<path class=\"ci\" d=\"M{x1:.1} {cy:.1}H{x2:.1}M{x1:.1} {:.1}V{:.1}M{x2:.1} {:.1}V{:.1}\" stroke=\"#000\" stroke-width=\"1.2\" fill=\"none\"/>",
                    cy - 4.0,
                    cy + 4.0,
                    cy - 4.0,
                    cy + 4.0
                );
                for v in &r.samples {
                    let _ = write!(
                        s,
                        "<circle class=\"sample\" cx=\"{:.1}\" cy=\"{cy:.1}\" r=\"2.2\" fill=\"#fff\" stroke=\"#000\"/>",
                        x(*v)
                    );
                }
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                    (x(r.median).max(x2) + 6.0).min(width - 60.0),
                    cy + 4.0,
                    esc(&format!("{} {unit}", fmt_num(r.median)))
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "<text class=\"dnr\" x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">DNR</text>",
                    left + 4.0,
                    y0 + bh / 2.0 + 4.0
                );
            }
        }
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#000\"/>",
        top + plot_h
    );
    s.push_str("</svg>\n");
    Some(Chart { id, title, svg: s })
}

/// Every chart of a run: the relative charts, one median chart per workload, then
/// the scalability charts.
pub fn all_charts(view: &View) -> Vec<Chart> {
    let mut out = relative_charts(view);
    out.extend((0..view.workloads.len()).filter_map(|i| median_chart(view, i)));
    for sv in &view.scale {
        out.push(scale_chart(sv, ScaleKind::Aggregate));
        out.push(scale_chart(sv, ScaleKind::PerInstance));
    }
    out
}

/// Which of Camargos et al.'s two scalability figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    /// Aggregate throughput (mean per instance × n) against n.
    Aggregate,
    /// Mean throughput per instance against n, with min–max whiskers.
    PerInstance,
}

/// Line dash per target slot, so lines differ without colour.
const DASHES: &[&str] = &[
    "", "7 4", "2 3", "9 3 2 3", "4 4", "1.5 3", "12 4", "6 2 2 2",
];

/// A marker of shape `slot` centred on (`cx`, `cy`): circle, square, triangle,
/// diamond, inverted triangle, pentagon, hexagon, star.
fn marker(slot: usize, cx: f64, cy: f64, fill: &str) -> String {
    let r = 4.6;
    let poly = |k: usize, rot: f64, rr: f64| -> String {
        let pts: Vec<String> = (0..k)
            .map(|i| {
                let a = rot + i as f64 * std::f64::consts::TAU / k as f64;
                format!("{:.1},{:.1}", cx + rr * a.cos(), cy + rr * a.sin())
            })
            .collect();
        format!(
            "<polygon points=\"{}\" fill=\"{fill}\" stroke=\"#000\" stroke-width=\"1\"/>",
            pts.join(" ")
        )
    };
    let up = -std::f64::consts::FRAC_PI_2;
    match slot % 8 {
        0 => format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{r}\" fill=\"{fill}\" stroke=\"#000\" stroke-width=\"1\"/>"
        ),
        1 => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" stroke=\"#000\" stroke-width=\"1\"/>",
            cx - r * 0.85,
            cy - r * 0.85,
            r * 1.7,
            r * 1.7
        ),
        2 => poly(3, up, r * 1.2),
        3 => poly(4, up, r * 1.2),
        4 => poly(3, -up, r * 1.2),
        5 => poly(5, up, r * 1.1),
        6 => poly(6, 0.0, r * 1.05),
        _ => {
            // A five-pointed star.
            let pts: Vec<String> = (0..10)
                .map(|i| {
                    let rr = if i % 2 == 0 { r * 1.35 } else { r * 0.6 };
                    let a = up + i as f64 * std::f64::consts::PI / 5.0;
                    format!("{:.1},{:.1}", cx + rr * a.cos(), cy + rr * a.sin())
                })
                .collect();
            format!(
                "<polygon points=\"{}\" fill=\"{fill}\" stroke=\"#000\" stroke-width=\"1\"/>",
                pts.join(" ")
            )
        }
    }
}

/// A ✕ for instances that did not return a result: the target's colour outlined
/// in black, with the count beside it and the reasons as its tooltip.
fn dnr_mark(cx: f64, cy: f64, colour: &str, count: usize, tip: &str, anchor_left: bool) -> String {
    let d = 4.5;
    let path = format!(
        "M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}",
        cx - d,
        cy - d,
        cx + d,
        cy + d,
        cx - d,
        cy + d,
        cx + d,
        cy - d
    );
    let (tx, anchor) = if anchor_left {
        (cx - d - 3.0, "end")
    } else {
        (cx + d + 3.0, "start")
    };
    format!(
        "<g class=\"dnr-mark\"><title>{}</title><path d=\"{path}\" stroke=\"#000\" stroke-width=\"4\"/>\
         <path d=\"{path}\" stroke=\"{colour}\" stroke-width=\"2.2\"/>\
         <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"10\" font-weight=\"bold\">{count} DNR</text></g>",
        esc(tip),
        cy + 3.5
    )
}

fn scale_value(e: &ScaleEntry, kind: ScaleKind) -> Option<f64> {
    match kind {
        ScaleKind::Aggregate => e.aggregate.map(|a| a.mean_times_n),
        ScaleKind::PerInstance => e.per_instance.map(|p| p.mean),
    }
    .filter(|v| v.is_finite())
}

fn scale_tip(e: &ScaleEntry) -> String {
    let mut t = format!("{}, n = {}:", e.target, e.instances);
    if let Some(a) = e.aggregate {
        let _ = write!(
            t,
            " aggregate {} {u} (mean × n; sum {});",
            fmt_num(a.mean_times_n),
            fmt_num(a.sum),
            u = e.unit
        );
    }
    if let Some(p) = e.per_instance {
        let _ = write!(
            t,
            " per instance {} {} (min {}, max {});",
            fmt_num(p.mean),
            e.unit,
            fmt_num(p.min),
            fmt_num(p.max)
        );
    }
    if let Some(f) = e.fairness {
        let _ = write!(t, " fairness {f:.3};");
    }
    if !e.dnr.is_empty() {
        let _ = write!(t, " {} instance(s) DNR;", e.dnr.len());
    }
    t.trim_end_matches(';').to_string()
}

fn dnr_tip(e: &ScaleEntry) -> String {
    let reasons: Vec<String> = e
        .dnr
        .iter()
        .map(|d| format!("instance {}: {}", d.instance, d.reason))
        .collect();
    format!(
        "{}, n = {}: {} of {} instance(s) did not return a result ({})",
        e.target,
        e.instances,
        e.dnr.len(),
        e.instances,
        reasons.join("; ")
    )
}

/// One of the two scalability line charts of a workload: a line per target with
/// its own colour, dash and marker; x = number of instances on a log2 axis.
pub fn scale_chart(sv: &ScaleView, kind: ScaleKind) -> Chart {
    let (id, title, ylabel) = match kind {
        ScaleKind::Aggregate => (
            format!("scale-aggregate-{}", slug(&sv.workload)),
            format!("{}: aggregate throughput vs instances", sv.workload),
            format!("aggregate {} (mean × n, {})", sv.metric, sv.unit),
        ),
        ScaleKind::PerInstance => (
            format!("scale-per-instance-{}", slug(&sv.workload)),
            format!("{}: throughput per instance vs instances", sv.workload),
            format!("{} per instance ({})", sv.metric, sv.unit),
        ),
    };
    let names: Vec<(usize, &str)> = sv
        .lines
        .iter()
        .map(|l| (l.slot, l.target.as_str()))
        .collect();
    let left = 74.0;
    let right = 24.0;
    let plot_w = (400.0f64).max(title.chars().count() as f64 * 8.0 - left + 10.0);
    let width = left + plot_w + right;
    let row_w = plot_w;
    let legend_h = 18.0 * line_legend_rows(&names, row_w) as f64;
    let top = 30.0 + legend_h + 8.0;
    let plot_h = 230.0;
    let bottom = 44.0;
    let height = top + plot_h + bottom;

    // y: 0 .. the largest value (the largest max for the per-instance chart).
    let mut ymax: f64 = 0.0;
    for e in sv.lines.iter().flat_map(|l| l.points.iter()) {
        if let Some(v) = scale_value(e, kind) {
            ymax = ymax.max(v);
        }
        if kind == ScaleKind::PerInstance {
            if let Some(p) = e.per_instance.filter(|p| p.max.is_finite()) {
                ymax = ymax.max(p.max);
            }
        }
    }
    if !(ymax.is_finite() && ymax > 0.0) {
        ymax = 1.0;
    }
    let step = nice_step(ymax * 1.08, 5);
    let ymax = ((ymax * 1.08) / step).ceil() * step;
    let y = |v: f64| top + plot_h - (v.max(0.0) / ymax) * plot_h;

    // x: log2 of n, padded so that end points and whiskers clear the axes.
    let lo = sv.ns.first().map_or(0.0, |n| (*n.max(&1) as f64).log2());
    let hi = sv.ns.last().map_or(0.0, |n| (*n.max(&1) as f64).log2());
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let pad = 26.0;
    let x =
        |n: u32| left + pad + ((n.max(1) as f64).log2() - lo) / (hi - lo) * (plot_w - 2.0 * pad);
    let k = sv.lines.len();
    let dodge = |j: usize| {
        if kind == ScaleKind::PerInstance {
            (j as f64 - (k as f64 - 1.0) / 2.0) * 5.0
        } else {
            0.0
        }
    };

    let mut desc = match kind {
        ScaleKind::Aggregate => format!(
            "Line chart: aggregate throughput of {} (mean per instance × n, {}) against the number of              instances n (log2 scale), one line per target.",
            sv.workload, sv.unit
        ),
        ScaleKind::PerInstance => format!(
            "Line chart: mean throughput per instance of {} ({}) against the number of instances n              (log2 scale), one line per target; whiskers span the slowest to the fastest instance.",
            sv.workload, sv.unit
        ),
    };
    for l in &sv.lines {
        let _ = write!(desc, " {}:", l.target);
        for e in &l.points {
            match scale_value(e, kind) {
                Some(v) => {
                    let _ = write!(desc, " n={} {}", e.instances, fmt_num(v));
                    if kind == ScaleKind::PerInstance {
                        if let Some(p) = e.per_instance {
                            let _ = write!(desc, " ({}–{})", fmt_num(p.min), fmt_num(p.max));
                        }
                    }
                }
                None => {
                    let _ = write!(desc, " n={} no result", e.instances);
                }
            }
            if !e.dnr.is_empty() {
                let _ = write!(desc, " [{} DNR]", e.dnr.len());
            }
            desc.push(';');
        }
        if kind == ScaleKind::Aggregate {
            if let Some(kn) = l.knee() {
                let _ = write!(desc, " knee at n={kn};");
            }
        }
    }

    let mut s = svg_open(&id, width, height, &title, &desc);
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(&title)
    );
    line_legend(&mut s, &names, left, 38.0, row_w);

    // Grid, y axis and its label.
    let _ = writeln!(s, "<g class=\"axis y\">");
    let mut v = 0.0;
    while v <= ymax + 1e-9 * ymax {
        let yy = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            yy + 4.0,
            fmt_tick(v, step)
        );
        v += step;
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#000\"/>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text></g>",
        top + plot_h,
        top + plot_h / 2.0,
        esc(&ylabel)
    );
    // x axis: powers of two across the range, and every n measured.
    let mut ticks: Vec<u32> = sv.ns.clone();
    let (a, b) = (
        sv.ns.first().copied().unwrap_or(1),
        sv.ns.last().copied().unwrap_or(1),
    );
    let mut p = 1u32;
    while p <= b && p < (1 << 30) {
        if p >= a {
            ticks.push(p);
        }
        p *= 2;
    }
    ticks.sort_unstable();
    ticks.dedup();
    let _ = writeln!(s, "<g class=\"axis x\">");
    for n in &ticks {
        let xx = x(*n);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
             <line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>",
            top + plot_h,
            top + plot_h,
            top + plot_h + 4.0,
            top + plot_h + 16.0
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">number of instances n (log2 scale)</text></g>",
        left + plot_w,
        top + plot_h,
        top + plot_h,
        left + plot_w / 2.0,
        height - 8.0
    );

    // Lines, whiskers, markers, DNRs and knees.
    let mut strip = 0usize; // DNR marks without a point stack up from the x axis
    for (j, l) in sv.lines.iter().enumerate() {
        let colour = COLOURS[l.slot % COLOURS.len()];
        let dash = DASHES[l.slot % DASHES.len()];
        let dx = dodge(j);
        let mut d = String::new();
        let mut pen = false;
        for e in &l.points {
            match scale_value(e, kind) {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1} {:.1}",
                        if pen { "L" } else { "M" },
                        x(e.instances) + dx,
                        y(v)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        let _ = writeln!(
            s,
            "<g class=\"series\" data-target=\"{}\">\n<path class=\"line\" data-target=\"{}\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.2\"{}/>",
            esc(&l.target),
            esc(&l.target),
            if dash.is_empty() {
                String::new()
            } else {
                format!(" stroke-dasharray=\"{dash}\"")
            }
        );
        for e in &l.points {
            let cx = x(e.instances) + dx;
            let value = scale_value(e, kind);
            if let (ScaleKind::PerInstance, Some(p)) = (kind, e.per_instance) {
                if p.min.is_finite() && p.max.is_finite() {
                    let (y1, y2) = (y(p.min), y(p.max));
                    let _ = writeln!(
                        s,
                        "<path class=\"whisker\" d=\"M{cx:.1} {y1:.1}V{y2:.1}M{:.1} {y1:.1}H{:.1}M{:.1} {y2:.1}H{:.1}\" stroke=\"#000\" stroke-width=\"1.1\" fill=\"none\"><title>{}</title></path>",
                        cx - 3.0,
                        cx + 3.0,
                        cx - 3.0,
                        cx + 3.0,
                        esc(&format!(
                            "{}, n = {}: slowest instance {} {u}, fastest {} {u}",
                            e.target,
                            e.instances,
                            fmt_num(p.min),
                            fmt_num(p.max),
                            u = sv.unit
                        ))
                    );
                }
            }
            if let Some(v) = value {
                let cy = y(v);
                let _ = writeln!(
                    s,
                    "<g class=\"point\" data-target=\"{}\" data-n=\"{}\"><title>{}</title>{}</g>",
                    esc(&e.target),
                    e.instances,
                    esc(&scale_tip(e)),
                    marker(l.slot, cx, cy, colour)
                );
                if !e.dnr.is_empty() {
                    let right_edge = cx + 50.0 > left + plot_w;
                    let _ = writeln!(
                        s,
                        "{}",
                        dnr_mark(
                            cx + if right_edge { -9.0 } else { 9.0 },
                            cy - 12.0,
                            colour,
                            e.dnr.len(),
                            &dnr_tip(e),
                            right_edge
                        )
                    );
                }
                if kind == ScaleKind::Aggregate && l.knee() == Some(e.instances) {
                    let _ = writeln!(
                        s,
                        "<g class=\"knee\" data-target=\"{}\"><title>{}</title>\
                         <circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"10\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.3\" stroke-dasharray=\"3 2\"/>\
                         <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">knee</text></g>",
                        esc(&e.target),
                        esc(&format!(
                            "{}: knee at n = {}: beyond it the aggregate grows by less than 5%",
                            e.target, e.instances
                        )),
                        cy - 14.0
                    );
                }
            } else if !e.dnr.is_empty() {
                let cy = top + plot_h - 10.0 - 14.0 * strip as f64;
                strip += 1;
                let right_edge = cx + 50.0 > left + plot_w;
                let _ = writeln!(
                    s,
                    "{}",
                    dnr_mark(cx, cy, colour, e.dnr.len(), &dnr_tip(e), right_edge)
                );
            }
        }
        let _ = writeln!(s, "</g>");
    }
    s.push_str("</svg>\n");
    Chart { id, title, svg: s }
}

fn line_legend_item_w(name: &str) -> f64 {
    40.0 + 7.0 * name.chars().count() as f64 + 14.0
}

fn line_legend_rows(names: &[(usize, &str)], width: f64) -> usize {
    let (mut x, mut rows) = (0.0, 1);
    for (_, name) in names {
        let w = line_legend_item_w(name);
        if x + w > width && x > 0.0 {
            x = 0.0;
            rows += 1;
        }
        x += w;
    }
    rows
}

/// Legend of a line chart: a stretch of each target's line with its marker.
fn line_legend(out: &mut String, names: &[(usize, &str)], x0: f64, y0: f64, width: f64) {
    let (mut x, mut y) = (x0, y0);
    let _ = writeln!(out, "<g class=\"legend\">");
    for (slot, name) in names {
        let w = line_legend_item_w(name);
        if x + w > x0 + width && x > x0 {
            x = x0;
            y += 18.0;
        }
        let colour = COLOURS[slot % COLOURS.len()];
        let dash = DASHES[slot % DASHES.len()];
        let _ = writeln!(
            out,
            "<path d=\"M{x:.1} {:.1}H{:.1}\" stroke=\"{colour}\" stroke-width=\"2.2\"{}/>{}\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 4.0,
            x + 34.0,
            if dash.is_empty() {
                String::new()
            } else {
                format!(" stroke-dasharray=\"{dash}\"")
            },
            marker(*slot, x + 17.0, y - 4.0, colour),
            x + 40.0,
            esc(name)
        );
        x += w;
    }
    let _ = writeln!(out, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(1.2, 6), 0.2);
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(3000.0, 5), 1000.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn ticks_show_the_decimals_the_step_needs() {
        assert_eq!(fmt_tick(50.0, 50.0), "50");
        assert_eq!(fmt_tick(0.25, 0.05), "0.25");
        assert_eq!(fmt_tick(1.5, 0.5), "1.5");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(slug("oci:crun"), "oci-crun");
    }
}
