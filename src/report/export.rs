//! Exports: CSV (one row per sample and metric, the same rows as the run
//! directory's `samples.csv`), JSON (the whole [`RunRecord`] with its schema
//! version) and the charts as standalone SVG and PNG files.
//!
//! PNG is rendered in-process by `resvg` (pure Rust) with the system's fonts; with
//! no font installed the text is missing from the PNGs (the SVGs are unaffected)
//! and a warning says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};

use super::svg::Chart;
use crate::error::user;
use crate::results::RunRecord;
use crate::store::rundir::{csv_rows, CSV_HEADER};

/// Every sample as CSV: `samples.csv`'s header and rows, including discarded
/// warm-up samples, so the statistics can be recomputed from it alone.
pub fn csv(run: &RunRecord) -> String {
    let mut out = String::with_capacity(64 + run.samples.len() * 120);
    out.push_str(CSV_HEADER);
    out.push('\n');
    for s in &run.samples {
        out.push_str(&csv_rows(&run.run_id, s));
    }
    out
}

/// The whole run as pretty-printed JSON (the `results.json` document).
pub fn json(run: &RunRecord) -> Result<String> {
    let mut s = serde_json::to_string_pretty(run).context("serializing the run")?;
    s.push('\n');
    Ok(s)
}

fn fonts() -> &'static std::sync::Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<std::sync::Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_system_fonts();
        db.set_sans_serif_family("DejaVu Sans");
        std::sync::Arc::new(db)
    })
}

/// Whether any font was found for PNG text.
pub fn have_fonts() -> bool {
    !fonts().is_empty()
}

/// Render an SVG document to PNG at `scale` (2.0 gives crisp figures for papers).
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    let opt = resvg::usvg::Options {
        fontdb: fonts().clone(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("parsing the chart SVG")?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .context("chart size")?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .context("allocating the PNG image")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding PNG")
}

/// Write each chart as `<id>.svg` and `<id>.png` into `dir` (created if needed).
pub fn write_charts(charts: &[Chart], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| {
        user(format!(
            "cannot create chart directory {}: {e}: choose another with --charts",
            dir.display()
        ))
    })?;
    if !charts.is_empty() && !have_fonts() {
        eprintln!(
            "virtmark: warning: no system font found: PNG charts will have no text (install fonts-dejavu-core); the SVGs are complete"
        );
    }
    let mut out = Vec::new();
    for c in charts {
        let svg = dir.join(format!("{}.svg", c.id));
        std::fs::write(&svg, &c.svg).with_context(|| format!("writing {}", svg.display()))?;
        out.push(svg);
        let png = dir.join(format!("{}.png", c.id));
        let bytes =
            svg_to_png(&c.svg, 2.0).with_context(|| format!("rendering {}", png.display()))?;
        std::fs::write(&png, bytes).with_context(|| format!("writing {}", png.display()))?;
        out.push(png);
    }
    Ok(out)
}
