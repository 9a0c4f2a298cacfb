//! The run directory: `plan.toml` (the exact plan, to re-run), `samples.csv` (one
//! row per sample and metric, appended as samples arrive) and `results.json` (the
//! whole [`RunRecord`], rewritten at the end or on interruption).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::user;
use crate::results::{RunRecord, SampleRecord};

/// Header of `samples.csv`.
pub const CSV_HEADER: &str = "run_id,target,workload,rep,discarded,at,elapsed_s,metric,unit,higher_is_better,value,step,instances,instance,stressor";

/// An open run directory.
pub struct RunDir {
    path: PathBuf,
    csv: File,
}

/// Quote a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV rows of one sample (one per metric), each ending with a newline.
pub fn csv_rows(run_id: &str, s: &SampleRecord) -> String {
    let mut out = String::new();
    for m in &s.metrics {
        out.push_str(
            &[
                csv_field(run_id),
                csv_field(&s.target),
                csv_field(&s.workload),
                s.rep.to_string(),
                s.discarded.to_string(),
                csv_field(&s.at),
                format!("{}", s.elapsed_s),
                csv_field(&m.name),
                csv_field(&m.unit),
                m.higher_is_better.to_string(),
                format!("{}", m.value),
                s.step.as_str().to_string(),
                s.instances.map_or(String::new(), |n| n.to_string()),
                s.instance.map_or(String::new(), |n| n.to_string()),
                csv_field(s.stressor.as_deref().unwrap_or("")),
            ]
            .join(","),
        );
        out.push('\n');
    }
    out
}

impl RunDir {
    /// Create `<out>/<run_id>/` and write the plan into it.
    pub fn create(out: &Path, run_id: &str, plan_toml: &str) -> Result<RunDir> {
        let path = out.join(run_id);
        // The parent may exist; the run directory itself must be new (never a
        // directory or link someone made first: root writes logs into it).
        std::fs::create_dir_all(out)
            .and_then(|()| std::fs::create_dir(&path))
            .map_err(|e| {
                user(format!(
                    "cannot create run directory {}: {e}: choose a writable directory with --out",
                    path.display()
                ))
            })?;
        std::fs::write(path.join("plan.toml"), plan_toml).map_err(|e| {
            user(format!(
                "cannot write {}: {e}: choose a writable directory with --out",
                path.join("plan.toml").display()
            ))
        })?;
        let mut csv = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join("samples.csv"))
            .with_context(|| format!("creating {}", path.join("samples.csv").display()))?;
        writeln!(csv, "{CSV_HEADER}")?;
        Ok(RunDir { path, csv })
    }

    /// Open the existing run directory `path` to add samples (a resumed run).
    pub fn open(path: &Path) -> Result<RunDir> {
        use std::os::unix::fs::OpenOptionsExt;
        let csv = OpenOptions::new()
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path.join("samples.csv"))
            .with_context(|| format!("opening {}", path.join("samples.csv").display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            csv,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a sample to `samples.csv` (flushed at once).
    pub fn append_sample(&mut self, run_id: &str, s: &SampleRecord) -> Result<()> {
        self.csv
            .write_all(csv_rows(run_id, s).as_bytes())
            .and_then(|_| self.csv.flush())
            .with_context(|| format!("appending to {}", self.path.join("samples.csv").display()))
    }

    /// Write `results.json` atomically (temporary file, then rename).
    pub fn write_results(&self, run: &RunRecord) -> Result<PathBuf> {
        let dst = self.path.join("results.json");
        let tmp = self.path.join("results.json.tmp");
        let json = serde_json::to_vec_pretty(run)?;
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("writing {}", dst.display()))?;
        Ok(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_link_at_the_run_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("run1")).unwrap();
        assert!(RunDir::create(&out, "run1", "").is_err());
        std::fs::create_dir(out.join("run2")).unwrap();
        assert!(RunDir::create(&out, "run2", "").is_err());
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert!(RunDir::create(&out, "run3", "").is_ok());
    }
    use crate::workloads::Metric;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let s = SampleRecord {
            target: "native".into(),
            workload: "w".into(),
            rep: 2,
            discarded: false,
            at: "t".into(),
            elapsed_s: 1.5,
            metrics: vec![
                Metric::higher("throughput", "MB/s", 10.0),
                Metric::lower("time", "s", 0.5),
            ],
            ..Default::default()
        };
        assert_eq!(
            csv_rows("r1", &s),
            "r1,native,w,2,false,t,1.5,throughput,MB/s,true,10,overhead,,,\nr1,native,w,2,false,t,1.5,time,s,false,0.5,overhead,,,\n"
        );
    }
}
