//! Reports derived from a stored run. Only stored runs are read here.
//!
//! [`view`] derives what every format shows from a [`RunRecord`]; [`mod@html`],
//! [`mod@markdown`], [`export`] (CSV, JSON, chart files) and [`terminal`] render it;
//! [`svg`] draws the charts; [`load`] finds a run by id or directory; [`compare`]
//! sets two runs side by side.

pub mod compare;
pub mod export;
pub mod html;
pub mod load;
pub mod markdown;
pub mod probes;
pub mod steps;
pub mod svg;
pub mod terminal;
pub mod testing;
pub mod view;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::results::RunRecord;

pub use crate::units::fmt_num;

/// The HTML report of a run.
pub fn html(run: &RunRecord) -> String {
    html::render(&view::View::new(run))
}

/// The Markdown report of a run.
pub fn markdown(run: &RunRecord) -> String {
    markdown::render(&view::View::new(run))
}

/// Every chart of a run (relative-performance charts, then one per workload).
pub fn charts(run: &RunRecord) -> Vec<svg::Chart> {
    svg::all_charts(&view::View::new(run))
}

/// Write `report.html` and `report.md` into `dir`; returns their paths.
pub fn write_reports(run: &RunRecord, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let view = view::View::new(run);
    let h = dir.join("report.html");
    let m = dir.join("report.md");
    std::fs::write(&h, html::render(&view)).with_context(|| format!("writing {}", h.display()))?;
    std::fs::write(&m, markdown::render(&view))
        .with_context(|| format!("writing {}", m.display()))?;
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_keep_about_four_significant_digits() {
        use super::fmt_num;
        assert_eq!(fmt_num(12345.678), "12346");
        assert_eq!(fmt_num(123.456), "123.5");
        assert_eq!(fmt_num(12.3456), "12.35");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(0.0012345), "1.234e-3");
        assert_eq!(fmt_num(f64::NAN), "–");
    }
}
