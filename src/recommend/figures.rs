//! The taxonomy as a tree (terminal text and SVG, from one structure) and the
//! flow chart of a recommendation with the path taken highlighted.

use std::fmt::Write;

use super::catalog::{Catalog, Class};
use super::flow::Recommendation;
use crate::report::svg::{esc, svg_open_sized, Chart};

/// A node of the taxonomy tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The label.
    pub label: String,
    /// A remark shown after the label, dimmed.
    pub note: String,
    /// Whether it is a solution (a leaf) rather than a class.
    pub solution: bool,
    /// Children, in order.
    pub children: Vec<Node>,
}

impl Node {
    fn class(label: &str, note: &str, children: Vec<Node>) -> Node {
        Node {
            label: label.into(),
            note: note.into(),
            solution: false,
            children,
        }
    }
}

/// The survey's taxonomy with the catalog's solutions as leaves.
pub fn taxonomy(catalog: &Catalog) -> Node {
    let leaves = |class: Class| -> Vec<Node> {
        catalog
            .of_class(class)
            .map(|s| {
                let mut note = vec![
                    match s.license.value {
                        super::catalog::License::Open => "open",
                        super::catalog::License::Dual => "dual license",
                        super::catalog::License::Proprietary => "proprietary",
                    }
                    .to_string(),
                    format!("isolation {}", s.isolation.value.key()),
                ];
                if s.cross_arch.value {
                    note.push("cross-arch".into());
                }
                if s.status.value == super::catalog::Status::Historic {
                    note.push("historic".into());
                }
                note.push(match s.target_name() {
                    Some(t) => format!("virtmark target {t}"),
                    None => "no virtmark target".into(),
                });
                Node {
                    label: s.name.clone(),
                    note: note.join(", "),
                    solution: true,
                    children: vec![],
                }
            })
            .collect()
    };
    let class = |c: Class, note: &str| Node::class(c.title(), note, leaves(c));
    Node::class(
        "virtualization",
        &format!(
            "White & Pilbeam's taxonomy; catalog {}, {} solutions",
            catalog.version,
            catalog.solutions.len()
        ),
        vec![
            Node::class(
                "platform virtualization",
                "a machine or an OS instance to run workloads in",
                vec![
                    class(Class::Emulation, "every instruction in software"),
                    class(
                        Class::Native,
                        "unmodified guests: binary translation or native execution",
                    ),
                    class(
                        Class::HardwareAssisted,
                        "VT-x/AMD-V (the VMM architecture survey)",
                    ),
                    class(
                        Class::Paravirtualization,
                        "a guest modified to call the host",
                    ),
                    class(Class::OsLevel, "isolated user spaces on one shared kernel"),
                ],
            ),
            Node::class(
                "resource virtualization",
                "storage and networks: nothing to run a workload in, so no catalog entries",
                vec![],
            ),
            Node::class(
                "application virtualization",
                "one application in its own environment",
                vec![class(Class::Sandbox, "a kernel in user space")],
            ),
        ],
    )
}

/// The tree as terminal text with box-drawing branches.
pub fn tree_text(root: &Node) -> String {
    fn walk(out: &mut String, n: &Node, prefix: &str, last: bool, top: bool) {
        let branch = if top {
            ""
        } else if last {
            "└── "
        } else {
            "├── "
        };
        let note = if n.note.is_empty() {
            String::new()
        } else if n.solution {
            format!("  [{}]", n.note)
        } else {
            format!("  ({})", n.note)
        };
        let _ = writeln!(out, "{prefix}{branch}{}{note}", n.label);
        let child_prefix = if top {
            String::new()
        } else {
            format!("{prefix}{}", if last { "    " } else { "│   " })
        };
        for (i, c) in n.children.iter().enumerate() {
            walk(out, c, &child_prefix, i + 1 == n.children.len(), false);
        }
    }
    let mut out = String::new();
    walk(&mut out, root, "", true, true);
    out
}

fn open(id: &str, w: f64, h: f64, title: &str, desc: &str) -> String {
    svg_open_sized(id, w, h, title, desc, 12)
}

/// The taxonomy as an SVG figure: an indented tree, classes in bold, solutions
/// with their facts.
pub fn taxonomy_svg(root: &Node) -> Chart {
    let mut rows: Vec<(usize, &Node, Option<usize>)> = vec![];
    fn flatten<'a>(
        n: &'a Node,
        depth: usize,
        parent: Option<usize>,
        rows: &mut Vec<(usize, &'a Node, Option<usize>)>,
    ) {
        let me = rows.len();
        rows.push((depth, n, parent));
        for c in &n.children {
            flatten(c, depth + 1, Some(me), rows);
        }
    }
    flatten(root, 0, None, &mut rows);
    let (dy, dx, top, left) = (20.0, 22.0, 24.0, 12.0);
    let h = top + dy * rows.len() as f64 + 10.0;
    let w = 900.0;
    let title = "The survey's taxonomy with the catalog's solutions";
    let desc = tree_text(root);
    let mut s = open("taxonomy", w, h, title, &desc);
    for (i, (depth, n, parent)) in rows.iter().enumerate() {
        let y = top + dy * i as f64;
        let x = left + dx * *depth as f64;
        if let Some(p) = parent {
            let py = top + dy * *p as f64 + 4.0;
            let px = left + dx * (*depth - 1) as f64 + 5.0;
            let _ = writeln!(
                s,
                "<path d=\"M{px:.1} {py:.1} V{:.1} H{:.1}\" fill=\"none\" stroke=\"#888\"/>",
                y - 4.0,
                x - 3.0
            );
        }
        let weight = if n.solution { "normal" } else { "bold" };
        let fill = if n.solution { "#0072B2" } else { "#1a1a1a" };
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{y:.1}\"><tspan font-weight=\"{weight}\" fill=\"{fill}\">{}</tspan><tspan dx=\"10\" fill=\"#555\" font-size=\"11\">{}</tspan></text>",
            esc(&n.label),
            if n.note.is_empty() {
                String::new()
            } else {
                esc(&n.note)
            }
        );
    }
    s.push_str("</svg>\n");
    Chart {
        id: "taxonomy".into(),
        title: title.into(),
        svg: s,
    }
}

/// The flow chart: every decision as a box, top to bottom; the decisions that
/// constrained something are drawn bold and coloured, with the solutions they
/// excluded beside them.
pub fn flow_svg(rec: &Recommendation) -> Chart {
    let (bw, bh, gap, x0, top) = (400.0, 44.0, 18.0, 20.0, 16.0);
    let n = rec.path.len();
    let h = top + n as f64 * (bh + gap) + 10.0;
    let w = 900.0;
    let title = "The recommendation flow, path taken highlighted";
    let mut desc = String::new();
    for d in &rec.path {
        let _ = write!(
            desc,
            "{}: {}{}; ",
            d.node,
            d.asked,
            if d.excluded.is_empty() {
                String::new()
            } else {
                format!(" (excluded {})", d.excluded.join(", "))
            }
        );
    }
    let mut s = open("flow", w, h, title, desc.trim_end());
    let _ = writeln!(
        s,
        "<defs><marker id=\"flow-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"9\" markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\"><path d=\"M0 0 L10 5 L0 10 z\" fill=\"#1a1a1a\"/></marker></defs>"
    );
    for (i, d) in rec.path.iter().enumerate() {
        let y = top + i as f64 * (bh + gap);
        let (fill, stroke, sw, dash) = if d.applied {
            ("#d9ecf7", "#0072B2", 2.5, "")
        } else {
            ("#f5f5f5", "#999", 1.0, " stroke-dasharray=\"4 3\"")
        };
        let _ = writeln!(
            s,
            "<g class=\"{}\"><rect x=\"{x0}\" y=\"{y:.1}\" width=\"{bw}\" height=\"{bh}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{sw}\"{dash}/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{}{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text></g>",
            if d.applied { "taken" } else { "passed" },
            x0 + 8.0,
            y + 17.0,
            esc(&d.node),
            if d.applied { " ✔" } else { "" },
            x0 + 8.0,
            y + 34.0,
            esc(&clip(&d.asked, 62))
        );
        if i + 1 < n {
            let (ax, ay) = (x0 + bw / 2.0, y + bh);
            let _ = writeln!(
                s,
                "<path d=\"M{ax:.1} {ay:.1} V{:.1}\" stroke=\"#1a1a1a\" stroke-width=\"{}\" marker-end=\"url(#flow-arrow)\"/>",
                ay + gap - 1.0,
                if d.applied && rec.path[i + 1].applied { 2.5 } else { 1.2 }
            );
        }
        if !d.excluded.is_empty() {
            let names: Vec<&str> = d
                .excluded
                .iter()
                .map(|id| {
                    rec.excluded
                        .iter()
                        .find(|e| &e.id == id)
                        .map_or(id.as_str(), |e| e.name.as_str())
                })
                .collect();
            let bx = x0 + bw + 40.0;
            let _ = writeln!(
                s,
                "<path d=\"M{:.1} {:.1} H{:.1}\" stroke=\"#D55E00\" stroke-width=\"1.5\" marker-end=\"url(#flow-arrow)\"/>\
                 <text x=\"{bx:.1}\" y=\"{:.1}\" fill=\"#8a2b00\">excluded {} of {}:</text>",
                x0 + bw,
                y + bh / 2.0,
                bx - 4.0,
                y + 17.0,
                d.excluded.len(),
                d.before,
            );
            for (k, line) in wrap(&names, 60, 3).iter().enumerate() {
                let _ = writeln!(
                    s,
                    "<text x=\"{bx:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#8a2b00\">{}</text>",
                    y + 32.0 + 14.0 * k as f64,
                    esc(line)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    Chart {
        id: "flow".into(),
        title: title.into(),
        svg: s,
    }
}

/// Names joined by commas into at most `max` lines of about `width`
/// characters; what does not fit is counted on the last line.
fn wrap(names: &[&str], width: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for (i, n) in names.iter().enumerate() {
        let last = lines.len() - 1;
        let cur = &lines[last];
        if !cur.is_empty() && cur.chars().count() + n.chars().count() + 2 > width {
            if lines.len() == max {
                lines[last].push_str(&format!(", and {} more", names.len() - i));
                return lines;
            }
            lines[last].push(',');
            lines.push(String::new());
        } else if !cur.is_empty() {
            lines[last].push_str(", ");
        }
        lines.last_mut().expect("one line").push_str(n);
    }
    lines
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_lists_every_class_and_solution_once() {
        let c = Catalog::embedded().unwrap();
        let text = tree_text(&taxonomy(&c));
        for class in Class::ALL {
            assert_eq!(
                text.matches(&format!(" {} ", class.title())).count(),
                1,
                "{text}"
            );
        }
        for s in &c.solutions {
            assert!(
                text.contains(&format!("── {}  [", s.name)),
                "{} in {text}",
                s.name
            );
        }
        assert!(text.contains("resource virtualization"));
        let svg = taxonomy_svg(&taxonomy(&c)).svg;
        assert!(svg.contains("Cloud Hypervisor") && svg.contains("role=\"img\""));
    }

    #[test]
    fn long_lists_of_names_wrap_and_count_what_does_not_fit() {
        let names = ["aaaa", "bbbb", "cccc", "dddd", "eeee"];
        assert_eq!(
            wrap(&names, 12, 5),
            vec!["aaaa, bbbb,", "cccc, dddd,", "eeee"]
        );
        assert_eq!(
            wrap(&names, 12, 2),
            vec!["aaaa, bbbb,", "cccc, dddd, and 1 more"]
        );
        assert_eq!(wrap(&names[..1], 12, 1), vec!["aaaa"]);
    }
}
