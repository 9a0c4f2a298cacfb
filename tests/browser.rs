//! The HTML report in a real browser: headless Chromium (Debian's `chromium`)
//! loads the report of a real short run and of a synthetic multi-target run,
//! without console errors; the DOM it built holds the charts and their bars; a
//! screenshot shows the bars in their colours.
//!
//! Chromium is installed by scripts/setup.sh (and here when missing and we are
//! root); where it cannot be had the test fails and says why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::Sandbox;

fn chromium() -> PathBuf {
    find_chromium().unwrap_or_else(|| {
        panic!(
            "chromium is not installed and could not be installed (Debian package chromium; \
             scripts/setup.sh installs it as root)"
        )
    })
}

fn find_chromium() -> Option<PathBuf> {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|n| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(n))
                    .find(|p| p.is_file())
            })
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!("browser test: installing Debian's chromium");
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return find();
        }
    }
    None
}

/// Run headless Chromium on `html` with `mode` (`--dump-dom` or
/// `--screenshot=PATH`); returns (stdout, stderr, seconds).
fn headless(chromium: &Path, html: &Path, mode: &str, window: &str) -> (String, String, f64) {
    let profile = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={window}"))
        .arg(mode)
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("start chromium");
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    (stdout, stderr, secs)
}

/// Console messages of the page (Chromium logs them as `CONSOLE(line)`), and
/// resources that failed to load.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Failed to load resource")
                || l.contains("Uncaught")
                || l.contains("net::ERR_")
        })
        .collect()
}

fn count_colour(png: &[u8], rgb: (u8, u8, u8)) -> usize {
    let pm = resvg::tiny_skia::Pixmap::decode_png(png).expect("screenshot decodes");
    pm.pixels()
        .iter()
        .filter(|p| {
            let c = p.demultiply();
            let near = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 6;
            near(c.red(), rgb.0) && near(c.green(), rgb.1) && near(c.blue(), rgb.2)
        })
        .count()
}

fn check_page(chromium: &Path, html: &Path, bars: usize, label: &str) -> f64 {
    let (dom, stderr, secs) = headless(chromium, html, "--dump-dom", "1280,2000");
    let errors = console_errors(&stderr);
    assert!(errors.is_empty(), "{label}: console errors: {errors:#?}");
    assert!(dom.contains("<svg"), "{label}: no chart in the DOM");
    let found = dom.matches("class=\"bar\"").count();
    assert!(
        found >= bars,
        "{label}: {found} bars in the DOM, want ≥ {bars}"
    );
    assert!(dom.contains("class=\"ci\""), "{label}: no error bars");
    secs
}

#[test]
fn a_real_run_report_renders_in_chromium_with_its_charts_and_bars() {
    let chromium = chromium();
    let sb = Sandbox::new();
    sb.cmd(&["run", "-w", "dd-zero", "--reps", "3", "--duration", "200ms"])
        .assert()
        .success();
    let dir = sb.run_dir("virtmark-results");
    let html = dir.join("report.html");
    let secs = check_page(&chromium, &html, 1, "real run");
    println!("real run report: loaded and dumped by chromium in {secs:.2} s");

    // Screenshot: the native bar is drawn in its colour (Okabe–Ito blue #0072B2).
    let png = dir.join("report.png");
    let (_, stderr, _) = headless(
        &chromium,
        &html,
        &format!("--screenshot={}", png.display()),
        "1280,1600",
    );
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    let bytes = std::fs::read(&png).expect("screenshot written");
    let blue = count_colour(&bytes, (0x00, 0x72, 0xB2));
    assert!(blue > 200, "native's bar is visible: {blue} blue pixels");
}

#[test]
fn a_synthetic_8_by_16_report_renders_in_chromium_and_every_bar_is_there() {
    let chromium = chromium();
    let sb = Sandbox::new();
    let run = virtmark::report::testing::synthetic_run(8, 16, 4);
    let dir = sb.path().join("synthetic");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.json"), serde_json::to_vec(&run).unwrap()).unwrap();
    sb.cmd(&["report", "synthetic"]).assert().success();
    let html = dir.join("report.html");
    let size = std::fs::metadata(&html).unwrap().len();
    // 7 targets × 16 workloads in the relative charts (one DNR), 8 × 16 in the
    // per-workload charts (one DNR).
    let secs = check_page(&chromium, &html, 7 * 16 - 1 + 8 * 16 - 1, "synthetic");
    println!(
        "synthetic 8 targets x 16 workloads: report.html {size} bytes, chromium load + DOM dump {secs:.2} s \
         (includes browser start-up)"
    );
    let png = dir.join("report.png");
    headless(
        &chromium,
        &html,
        &format!("--screenshot={}", png.display()),
        "1280,2400",
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    // ns's bars (orange #E69F00 under a hatch) show in the relative chart.
    assert!(count_colour(&bytes, (0xE6, 0x9F, 0x00)) > 200);
}
