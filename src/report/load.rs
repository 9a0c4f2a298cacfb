//! Find a stored run: by id in the results database (rebuilt from its tables, so a
//! run whose directory was deleted still reports) or from a run directory's
//! `results.json` (checked: valid JSON, a schema version this virtmark reads, the
//! fields of [`RunRecord`]). Every failure is a one-line user error.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::user;
use crate::results::{derive_results, RunRecord, SCHEMA_VERSION};
use crate::store::db::Db;

/// A run and where its files live.
#[derive(Debug)]
pub struct Loaded {
    /// The whole run.
    pub record: RunRecord,
    /// Its run directory, when it still exists.
    pub dir: Option<PathBuf>,
}

/// Parse the text of a `results.json`; `origin` names the file in errors.
pub fn parse_results_json(text: &str, origin: &str) -> Result<RunRecord> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| user(format!("{origin} is damaged: not valid JSON ({e})")))?;
    let version = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| {
            user(format!(
                "{origin} is not a virtmark results file (no schema_version)"
            ))
        })?;
    if version > SCHEMA_VERSION as u64 {
        return Err(user(format!(
            "{origin} has schema version {version}, newer than this virtmark reads ({SCHEMA_VERSION}): upgrade virtmark"
        )));
    }
    if version == 0 {
        return Err(user(format!(
            "{origin} has schema version 0, which no virtmark wrote"
        )));
    }
    let mut record: RunRecord =
        serde_json::from_value(value).map_err(|e| user(format!("{origin} is damaged: {e}")))?;
    if record.results.is_empty() && !record.samples.is_empty() {
        record.results = derive_results(&record.samples);
    }
    if record.diagnosis.is_empty() {
        record.diagnosis = crate::results::diagnosis::diagnose(&record.results);
    }
    Ok(record)
}

/// Load `results.json` from a run directory (or the file itself).
pub fn from_dir(path: &Path) -> Result<Loaded> {
    let (file, dir) = if path.is_dir() {
        (path.join("results.json"), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        )
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        user(format!(
            "cannot read {}: {e}: give a run directory that holds results.json, or a run id",
            file.display()
        ))
    })?;
    let record = parse_results_json(&text, &file.display().to_string())?;
    Ok(Loaded {
        record,
        dir: Some(dir),
    })
}

/// Load a run by id from the database at `db_path`.
pub fn from_db(db_path: &Path, id: &str) -> Result<Loaded> {
    if !db_path.exists() {
        return Err(user(format!(
            "unknown run {id:?}: it is not a run directory, and there is no results database at {} (choose one with --db)",
            db_path.display()
        )));
    }
    let db = Db::open_existing(db_path)?;
    match db.load_run(id)? {
        Some((record, dir)) => Ok(Loaded {
            record,
            dir: dir.filter(|d| d.is_dir()),
        }),
        None => {
            let recent = db.recent_ids(3)?;
            Err(user(format!(
                "unknown run {id:?} in {} ({}; `virtmark history` lists them)",
                db_path.display(),
                if recent.is_empty() {
                    "it holds no runs".to_string()
                } else {
                    format!("newest: {}", recent.join(", "))
                }
            )))
        }
    }
}

/// Resolve `RUN` as the user gave it: `None` = the newest run in the database; an
/// existing path = a run directory (or its `results.json`); else a run id.
pub fn load(spec: Option<&str>, db_path: &Path) -> Result<Loaded> {
    match spec {
        None => {
            let db = Db::open_existing(db_path)?;
            let id = db.latest_run_id()?.ok_or_else(|| {
                user(format!(
                    "no runs stored in {}: run `virtmark run` first, or name a run directory",
                    db_path.display()
                ))
            })?;
            drop(db);
            from_db(db_path, &id)
        }
        Some(s) => {
            let p = Path::new(s);
            if p.exists() {
                // A run directory killed before it wrote results.json: the database
                // still has every sample, under the directory's name.
                if p.is_dir() && !p.join("results.json").exists() && db_path.exists() {
                    if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                        if let Ok(l) = from_db(db_path, name) {
                            return Ok(Loaded {
                                record: l.record,
                                dir: Some(p.to_path_buf()),
                            });
                        }
                    }
                }
                from_dir(p)
            } else if s.contains('/') || s.ends_with(".json") {
                Err(user(format!(
                    "no run directory or file at {s}: give a run directory or a run id"
                )))
            } else {
                from_db(db_path, s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: anyhow::Error) -> String {
        assert_eq!(crate::error::exit_code(&e), 2, "{e:#}");
        let m = format!("{e:#}");
        assert_eq!(m.lines().count(), 1, "{m}");
        m
    }

    #[test]
    fn bad_results_files_are_one_line_user_errors() {
        let m =
            msg(parse_results_json("{\"schema_version\": 1, \"run_id\"", "r.json").unwrap_err());
        assert!(m.contains("r.json is damaged: not valid JSON"), "{m}");
        let m = msg(parse_results_json("{\"schema_version\": 7}", "r.json").unwrap_err());
        assert!(m.contains("schema version 7, newer"), "{m}");
        let m = msg(parse_results_json("{\"hello\": 1}", "r.json").unwrap_err());
        assert!(m.contains("not a virtmark results file"), "{m}");
        let m = msg(
            parse_results_json("{\"schema_version\": 1, \"run_id\": 3}", "r.json").unwrap_err(),
        );
        assert!(m.contains("r.json is damaged"), "{m}");
    }
}
