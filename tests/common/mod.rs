//! Helpers shared by the integration tests: run the real binary in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary working directory with its own results database.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("results.db")
    }

    /// `virtmark ARGS` with the sandbox as working directory and database.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("virtmark").expect("binary");
        c.current_dir(self.path())
            .env("VIRTMARK_DB", self.db())
            .env_remove("VIRTMARK_SCRATCH")
            .args(args);
        c
    }

    /// The single run directory under ./virtmark-results (or `out`).
    pub fn run_dir(&self, out: &str) -> PathBuf {
        let parent = self.path().join(out);
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&parent)
            .unwrap_or_else(|e| panic!("{}: {e}", parent.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "one run directory in {}", parent.display());
        dirs.pop().unwrap()
    }
}

/// Parse `results.json` of a run directory.
pub fn results_json(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json parses")
}
