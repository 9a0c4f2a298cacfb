//! Reports, exports and comparison, end to end on the real binary, plus structure
//! checks of the HTML and snapshot-style checks of Markdown and CSV.

mod common;

use std::path::Path;
use std::time::Instant;

use common::Sandbox;
use virtmark::report::{self, testing::synthetic_run};
use virtmark::results::RunRecord;

fn write_run_dir(dir: &Path, run: &RunRecord) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(run).unwrap(),
    )
    .unwrap();
}

fn one_line_error(sb: &Sandbox, args: &[&str], needle: &str) {
    let out = sb.cmd(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line: {err}"
    );
}

#[test]
fn html_has_a_bar_per_target_with_ci_error_bars_and_no_external_url() {
    let run = synthetic_run(4, 3, 4);
    let html = report::html(&run);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Relative charts (one per class): 3 targets besides native × 3 workloads,
    // minus one DNR.
    let rel: String = html
        .split("<svg ")
        .filter(|c| c.contains("id=\"relative-"))
        .map(|c| &c[..c.find("</svg>").unwrap()])
        .collect();
    assert_eq!(rel.matches("<title id=").count(), 2, "a chart per class");
    for t in ["ns", "oci:crun", "oci:runc"] {
        assert!(
            rel.contains(&format!("class=\"bar\" data-target=\"{t}\"")),
            "a bar for {t}"
        );
    }
    assert_eq!(rel.matches("class=\"bar\"").count(), 8);
    assert_eq!(
        rel.matches("class=\"ci\"").count(),
        8,
        "an error bar per bar"
    );
    assert_eq!(rel.matches("class=\"dnr\"").count(), 1);
    assert!(rel.contains("class=\"native\""), "the line at 1.0");
    assert!(rel.contains("role=\"img\"") && rel.contains("<title") && rel.contains("<desc"));
    assert!(
        rel.contains("ratio to native (×, higher is better)"),
        "axis label"
    );
    // Self-contained: the only URL is the SVG namespace.
    let stripped = html.replace("http://www.w3.org/2000/svg", "");
    for bad in [
        "http://", "https://", "<script", "<link", "@import", "src=\"",
    ] {
        assert!(!stripped.contains(bad), "found {bad}");
    }
    // Summary: geometric means and the largest slowdowns in words.
    assert!(html.contains("Largest slowdowns"));
    assert!(html.contains("× native</li>"));
    assert!(html.contains("<strong>DNR</strong> deadline: no answer within 10m"));
    // Environment and provenance.
    for s in [
        "synthetic run for tests",
        "virtmark run --plan plan.toml",
        "Test CPU",
        "[run]",
    ] {
        assert!(html.contains(s), "{s}");
    }
}

#[test]
fn synthetic_8_targets_by_16_workloads_renders_under_2_mb() {
    let run = synthetic_run(8, 16, 4);
    let t0 = Instant::now();
    let html = report::html(&run);
    let took = t0.elapsed();
    println!(
        "8 targets x 16 workloads: report.html {} bytes, rendered in {:.1} ms",
        html.len(),
        took.as_secs_f64() * 1e3
    );
    assert!(html.len() < 2 * 1024 * 1024, "{} bytes", html.len());
    if let Some(keep) = std::env::var_os("VIRTMARK_KEEP_REPORT") {
        // For looking at it: a run directory `virtmark report` and the screenshot
        // script accept.
        write_run_dir(&Path::new(&keep).join("synthetic-8x16"), &run);
        std::fs::write(Path::new(&keep).join("synthetic-8x16/report.html"), &html).unwrap();
    }
}

#[test]
fn markdown_of_a_fixed_run() {
    let run = synthetic_run(3, 2, 4);
    let md = report::markdown(&run);
    let expected = include_str!("report_snapshot.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_snapshot.md"),
            &md,
        )
        .unwrap();
        return;
    }
    assert_eq!(md, expected, "rerun with UPDATE_SNAPSHOTS=1 to accept");
}

#[test]
fn csv_of_a_fixed_run() {
    let run = synthetic_run(2, 1, 2);
    let csv = report::export::csv(&run);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_snapshot.csv"),
            &csv,
        )
        .unwrap();
        return;
    }
    assert_eq!(
        csv,
        include_str!("report_snapshot.csv"),
        "rerun with UPDATE_SNAPSHOTS=1 to accept"
    );
}

#[test]
fn csv_export_has_every_sample_and_metric() {
    let run = synthetic_run(2, 2, 3);
    let csv = report::export::csv(&run);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "run_id,target,workload,rep,discarded,at,elapsed_s,metric,unit,higher_is_better,value,step,instances,instance,stressor"
        )
    );
    // (2 targets × 2 workloads − 1 DNR) × 3 reps × 2 metrics.
    assert_eq!(lines.clone().count(), 18);
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("20260101-000000-test,native,dd-zero,0,true,2026-01-01T00:00:00Z,1,throughput,MB/s,true,"),
        "{first}"
    );
}

#[test]
fn json_export_round_trips_the_run() {
    let run = synthetic_run(2, 2, 3);
    let text = report::export::json(&run).unwrap();
    let back = report::load::parse_results_json(&text, "x").unwrap();
    assert_eq!(back, run);
    assert!(text.contains("\"schema_version\": 1"));
}

#[test]
fn report_writes_both_files_from_a_run_directory_and_each_format() {
    let sb = Sandbox::new();
    let dir = sb.path().join("r1");
    write_run_dir(&dir, &synthetic_run(3, 2, 4));
    sb.cmd(&["report", "r1"]).assert().success();
    assert!(dir.join("report.html").is_file() && dir.join("report.md").is_file());
    for (fmt, needle) in [
        ("html", "<!DOCTYPE html>"),
        ("md", "# virtmark report"),
        ("csv", "run_id,target"),
        ("json", "\"schema_version\": 1"),
    ] {
        let out = sb.cmd(&["report", "r1", "--format", fmt]).output().unwrap();
        assert!(out.status.success(), "{fmt}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(needle),
            "{fmt}"
        );
    }
    sb.cmd(&["report", "r1", "--format", "md", "-o", "out.md"])
        .assert()
        .success();
    assert!(std::fs::read_to_string(sb.path().join("out.md"))
        .unwrap()
        .starts_with("# virtmark report"));
    // Charts as SVG and PNG.
    sb.cmd(&["report", "r1", "--charts", "charts"])
        .assert()
        .success();
    let png = std::fs::read(sb.path().join("charts/relative-other.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(sb.path().join("charts/relative-other.svg")).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(sb.path().join("charts/medians-dd-zero.png").is_file());
}

#[test]
fn bad_report_input_is_a_one_line_error_with_status_2() {
    let sb = Sandbox::new();
    // Unknown id, no database.
    one_line_error(&sb, &["report", "nosuchrun"], "unknown run \"nosuchrun\"");
    // Newer schema.
    let newer = sb.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(newer.join("results.json"), "{\"schema_version\": 2}").unwrap();
    one_line_error(
        &sb,
        &["report", "newer"],
        "schema version 2, newer than this virtmark reads (1)",
    );
    // Damaged.
    let bad = sb.path().join("bad");
    write_run_dir(&bad, &synthetic_run(2, 1, 2));
    let text = std::fs::read_to_string(bad.join("results.json")).unwrap();
    std::fs::write(bad.join("results.json"), &text[..text.len() / 2]).unwrap();
    one_line_error(&sb, &["report", "bad"], "is damaged: not valid JSON");
    // A path that is not there.
    one_line_error(
        &sb,
        &["report", "./nowhere/x"],
        "no run directory or file at ./nowhere/x",
    );
}

#[test]
fn compare_detects_a_significant_regression_and_exits_1() {
    let sb = Sandbox::new();
    let a = synthetic_run(2, 2, 7);
    let mut b = a.clone();
    b.run_id = "b".into();
    for s in &mut b.samples {
        if s.target == "ns" && s.workload == "dd-zero" {
            for m in &mut s.metrics {
                m.value = if m.higher_is_better {
                    m.value * 0.8
                } else {
                    m.value / 0.8
                };
            }
        }
    }
    b.results = virtmark::results::derive_results(&b.samples);
    write_run_dir(&sb.path().join("a"), &a);
    write_run_dir(&sb.path().join("b"), &b);
    let out = sb.cmd(&["compare", "a", "b"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("REGRESSED"), "{stdout}");
    assert!(stdout.contains("Mann–Whitney U"), "{stdout}");
    assert!(stdout.contains("-20.0%"), "{stdout}");
    assert!(
        stderr.contains("1 significant change(s) beyond 5.0%"),
        "{stderr}"
    );
    // Identical runs: exit 0.
    let out = sb.cmd(&["compare", "a", "a"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no significant change"));
}

#[test]
fn compare_warns_about_different_hosts_and_refuses_runs_with_nothing_in_common() {
    let sb = Sandbox::new();
    let a = synthetic_run(2, 1, 4);
    let mut b = a.clone();
    b.host.cpus = 8;
    b.host.kernel = "6.12".into();
    write_run_dir(&sb.path().join("a"), &a);
    write_run_dir(&sb.path().join("b"), &b);
    let out = sb.cmd(&["compare", "a", "b"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("different hosts: cpus \"2\" vs \"8\"; kernel \"6.1.0-test\" vs \"6.12\""),
        "{stderr}"
    );
    // 3 vs 3 samples: the output says no change can be significant at 0.05.
    assert!(String::from_utf8_lossy(&out.stdout).contains("smallest possible p is"));
    let mut c = a.clone();
    for s in &mut c.samples {
        s.workload = "other".into();
    }
    c.results = virtmark::results::derive_results(&c.samples);
    write_run_dir(&sb.path().join("c"), &c);
    one_line_error(
        &sb,
        &["compare", "a", "c"],
        "have no workload, target and metric in common",
    );
    // Runs that did different work: refused, naming the workload and the field.
    let mut d = a.clone();
    d.run_id = "d".into();
    d.plan
        .params
        .entry("dd-zero".into())
        .or_default()
        .block_size = Some("4KiB".parse().unwrap());
    write_run_dir(&sb.path().join("d"), &d);
    one_line_error(
        &sb,
        &["compare", "a", "d"],
        "did different work, so their figures cannot be compared: dd-zero (dd-zero.block-size: default vs 4KiB)",
    );
}

#[test]
fn a_real_short_run_writes_both_reports_and_reports_again_from_the_database() {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&["run", "-w", "dd-zero", "--reps", "3", "--duration", "200ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = sb.run_dir("virtmark-results");
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(stdout.contains(&format!("{id}/report.html")), "{stdout}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("class=\"bar\" data-target=\"native\""));
    assert!(dir.join("report.md").is_file());
    // `virtmark report` (the latest run) rewrites them.
    std::fs::remove_file(dir.join("report.md")).unwrap();
    sb.cmd(&["report"]).assert().success();
    assert!(dir.join("report.md").is_file());
    // A run directory without results.json (killed before writing it): the
    // database holds its samples under the directory's name.
    std::fs::remove_file(dir.join("results.json")).unwrap();
    let out = sb
        .cmd(&["report", dir.to_str().unwrap(), "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Header and one row per metric of each of the 3 samples.
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 3);
    // With the run directory gone, the database alone still reports.
    std::fs::remove_dir_all(&dir).unwrap();
    let out = sb.cmd(&["report", &id, "--format", "md"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("### dd-zero") && md.contains("| native | "),
        "{md}"
    );
    sb.cmd(&["report", &id]).assert().success();
    assert!(sb.path().join(&id).join("report.html").is_file());
}

#[test]
fn a_partial_run_is_reported_as_partial() {
    let sb = Sandbox::new();
    let mut run = synthetic_run(2, 2, 4);
    run.status = virtmark::results::RunStatus::Partial;
    run.finished = None;
    run.samples.truncate(run.samples.len() - 3);
    run.results = virtmark::results::derive_results(&run.samples);
    write_run_dir(&sb.path().join("p"), &run);
    sb.cmd(&["report", "p"]).assert().success();
    let html = std::fs::read_to_string(sb.path().join("p/report.html")).unwrap();
    assert!(html.contains("partial (interrupted)"));
    let md = std::fs::read_to_string(sb.path().join("p/report.md")).unwrap();
    assert!(md.contains("status: **partial (interrupted)"));
}

/// The `<svg …>…</svg>` whose id starts with `prefix`.
fn svg_with_id<'a>(html: &'a str, prefix: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{prefix}"))
        .unwrap_or_else(|| panic!("no chart {prefix}"));
    let start = html[..start].rfind("<svg ").unwrap();
    let end = start + html[start..].find("</svg>").unwrap();
    &html[start..end]
}

#[test]
fn a_study_renders_scalability_line_charts_and_the_isolation_table() {
    let run = virtmark::report::testing::synthetic_study(3, 2, 4);
    let html = report::html(&run);
    if let Some(keep) = std::env::var_os("VIRTMARK_KEEP_REPORT") {
        write_run_dir(&Path::new(&keep).join("synthetic-study"), &run);
        std::fs::write(Path::new(&keep).join("synthetic-study/report.html"), &html).unwrap();
    }
    // Every section, in the order of SECTIONS.
    let pos = |id: &str| {
        html.find(&format!("<section id=\"{id}\">"))
            .unwrap_or_else(|| panic!("section {id}"))
    };
    assert!(pos("summary") < pos("relative"));
    assert!(pos("dnr") < pos("scalability") && pos("scalability") < pos("isolation"));
    assert!(pos("isolation") < pos("environment"));
    assert!(html.contains("virtmark study --plan plan.toml"));

    // (a) Aggregate: a line and a marker per target and n, the knee marked.
    let agg = svg_with_id(&html, "scale-aggregate-dd-zero");
    assert!(agg.contains("role=\"img\"") && agg.contains("<desc"));
    assert!(agg.contains("number of instances n (log2 scale)"));
    assert!(agg.contains("aggregate throughput (mean × n, MB/s)"));
    for t in ["native", "ns", "oci:crun"] {
        assert!(
            agg.contains(&format!("class=\"line\" data-target=\"{t}\"")),
            "a line for {t}"
        );
    }
    // 3 targets × 5 n; oci:crun at n = 16 (every instance DNR) at zero.
    assert_eq!(agg.matches("class=\"point\"").count(), 15);
    // Distinct markers: circle (native), square (ns), triangle (oci:crun).
    assert!(agg.contains("<circle") && agg.contains("<rect x=") && agg.contains("<polygon"));
    // Dashes tell the lines apart without colour.
    assert!(agg.contains("stroke-dasharray=\"7 4\""));
    // Knees: native at n = 4, ns at n = 2; oci:crun at n = 8, beyond which its
    // aggregate fell to zero (n = 16, every instance DNR).
    assert_eq!(agg.matches("class=\"knee\"").count(), 3);
    assert!(agg.contains("native: knee at n = 4") && agg.contains("ns: knee at n = 2"));
    assert!(agg.contains("oci:crun: knee at n = 8"));
    // DNR: one instance at n = 8 (beside its point), all 16 at n = 16.
    assert_eq!(agg.matches("class=\"dnr-mark\"").count(), 2);
    assert!(agg.contains(">1 DNR</text>") && agg.contains(">16 DNR</text>"));
    assert!(agg.contains("could not start at 127 MiB"));
    // Ticks on the log2 axis.
    for n in [1, 2, 4, 8, 16] {
        assert!(
            agg.contains(&format!("text-anchor=\"middle\">{n}</text>")),
            "tick {n}"
        );
    }

    // (b) Per instance: whiskers min–max for each point.
    let per = svg_with_id(&html, "scale-per-instance-dd-zero");
    assert_eq!(per.matches("class=\"whisker\"").count(), 15);
    assert!(per.contains("throughput per instance (MB/s)"));

    // The scalability table: a row per target and n, DNRs with reasons.
    let table = &html[pos("scalability")..pos("isolation")];
    assert_eq!(table.matches("<tr").count() - 1, 15);
    assert!(table.contains("<strong>16 of 16</strong>"));
    assert!(table.contains("instances 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15: could not start at 127 MiB"));
    assert!(table.contains(">knee</span>") && table.contains(">past knee</span>"));

    // Isolation: a column group per target, a row per stressor, DNR with reason.
    let iso = &html[pos("isolation")..pos("environment")];
    assert!(iso.contains("<th colspan=\"3\" scope=\"colgroup\">ns</th>"));
    assert!(iso.contains("<th colspan=\"3\" scope=\"colgroup\">oci:crun</th>"));
    for st in ["cpu", "memory", "fork"] {
        assert!(
            iso.contains(&format!("<th scope=\"row\">{st}</th>")),
            "{st}"
        );
    }
    assert!(iso.contains(
        "<abbr title=\"killed by signal 9 (the OOM killer)\"><strong>DNR</strong></abbr>"
    ));
    assert!(iso.contains("oci:crun, memory, misbehaving: killed by signal 9"));
    assert!(iso.contains("Degradation</strong> is the percentage of good responses"));
    assert!(
        iso.contains("<td>120.0 → 138.0</td>"),
        "p99 baseline → stressed"
    );
    assert!(iso.contains("stressor fork: done"));
    // Summary lines for both steps.
    let summary = &html[pos("summary")..pos("relative")];
    assert!(summary.contains("ns: aggregate 920.0 MB/s at n = 1 → 1840 MB/s at n = 16"));
    assert!(summary.contains("the well-behaved instances lose at most"));
}

#[test]
fn markdown_of_a_study_has_the_scalability_and_isolation_tables() {
    let run = virtmark::report::testing::synthetic_study(3, 1, 4);
    let md = report::markdown(&run);
    let start = md.find("## Scalability").unwrap();
    let end = md.find("## Environment").unwrap();
    let part = &md[start..end];
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report_snapshot_steps.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, part).unwrap();
        return;
    }
    assert_eq!(
        part,
        include_str!("report_snapshot_steps.md"),
        "rerun with UPDATE_SNAPSHOTS=1 to accept"
    );
}

#[test]
fn an_isolation_only_run_renders_without_overhead_sections() {
    let run = virtmark::report::testing::synthetic_isolation_run(&["ns", "gvisor"]);
    let html = report::html(&run);
    assert!(html.contains("<section id=\"isolation\">"));
    for absent in [
        "<section id=\"relative\">",
        "<section id=\"workloads\">",
        "<section id=\"dnr\">",
        "<section id=\"scalability\">",
        "id=\"relative-",
        "id=\"medians-",
    ] {
        assert!(!html.contains(absent), "{absent}");
    }
    assert!(html.contains("No overhead step in this run: it holds the isolation step"));
    assert!(html.contains("isolation (3 stressor(s))"));
    assert!(!html.contains("no sample"), "no phantom DNR for rr-paced");
    assert!(html.contains("virtmark isolate --plan plan.toml"));
    let md = report::markdown(&run);
    assert!(md.contains("## Isolation") && !md.contains("## Results per workload"));
    assert!(md
        .contains("| stressor | ns: well-behaved | ns: misbehaving | ns: p99 well-behaved (µs) |"));
    assert!(
        md.contains("DNR [1]")
            && md.contains("[1] gvisor, memory, misbehaving: killed by signal 9")
    );
    // No chart but none missing either; JSON keeps the entries.
    assert!(report::charts(&run).is_empty());
    let json = report::export::json(&run).unwrap();
    let back = report::load::parse_results_json(&json, "x").unwrap();
    assert_eq!(back.isolation, run.isolation);
}

#[test]
fn json_export_keeps_scale_and_isolation_and_charts_include_scalability() {
    let sb = Sandbox::new();
    let run = virtmark::report::testing::synthetic_study(2, 1, 3);
    let json = report::export::json(&run).unwrap();
    assert!(json.contains("\"scale\": [") && json.contains("\"isolation\": ["));
    assert_eq!(report::load::parse_results_json(&json, "x").unwrap(), run);
    write_run_dir(&sb.path().join("s"), &run);
    sb.cmd(&["report", "s", "--charts", "charts"])
        .assert()
        .success();
    for id in ["scale-aggregate-dd-zero", "scale-per-instance-dd-zero"] {
        let png = std::fs::read(sb.path().join(format!("charts/{id}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(sb.path().join(format!("charts/{id}.svg"))).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    }
}
