//! Helpers shared by the integration tests: run the real binary in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

    /// `virtmark run -t TARGET -w WORKLOAD --reps REPS --duration DURATION --out
    /// out` in the sandbox, its output discarded: to spawn, then interrupt or
    /// kill mid-run.
    pub fn background_run(
        &self,
        target: &str,
        workload: &str,
        reps: &str,
        duration: &str,
    ) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("virtmark"));
        c.current_dir(self.path())
            .env("VIRTMARK_DB", self.db())
            .env_remove("VIRTMARK_SCRATCH")
            .args([
                "run",
                "-t",
                target,
                "-w",
                workload,
                "--reps",
                reps,
                "--duration",
                duration,
                "--out",
                "out",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
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

/// The number a sample's `key=` note gives (`started_at`, `ended_at`).
pub fn note_f64(sample: &serde_json::Value, key: &str) -> f64 {
    sample["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| n.as_str()?.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} note: {sample}"))
        .parse()
        .unwrap()
}

/// Parse `results.json` of a run directory.
pub fn results_json(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json parses")
}

/// Everything of run `run_id` still present on the host.
pub fn leftovers(run_id: &str) -> Vec<String> {
    let key = format!("virtmark-{}", &run_id[run_id.len() - 4..]);
    let scratch = format!("virtmark-{run_id}");
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&key) {
                found.push(format!("netns {n}"));
            }
        }
    }
    fn walk(dir: &Path, key: &str, depth: usize, found: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(key) {
                found.push(format!("cgroup {}", p.display()));
            } else if depth > 0 {
                walk(&p, key, depth - 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), &key, 4, &mut found);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for m in mounts.lines() {
        if m.contains(&key) || m.contains(&scratch) {
            found.push(format!("mount {m}"));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&scratch) || cmdline.contains(&key) {
                found.push(format!("process {pid}: {cmdline}"));
            }
        }
    }
    for n in scratch_roots(run_id) {
        found.push(format!("scratch {}", n.display()));
    }
    found
}

/// The scratch roots of run `run_id` still present: `virtmark-<run>-<random>`
/// in the scratch base (`/var/tmp`, where tests leave `VIRTMARK_SCRATCH` unset)
/// or, for the test starts of `virtmark targets`, the temp dir.
pub fn scratch_roots(run_id: &str) -> Vec<PathBuf> {
    let prefix = format!("virtmark-{run_id}");
    let mut found = Vec::new();
    for base in [PathBuf::from("/var/tmp"), std::env::temp_dir()] {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

/// Leftovers may take a moment to go (a runtime's own teardown).
pub fn assert_nothing_left(run_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftovers(run_id);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("left behind by run {run_id}: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the process still runs (a zombie has ended; pid 1 reaps it).
pub fn alive(pid: i32, start_time: u64) -> bool {
    virtmark::targets::ledger::process_start_time(pid) == Some(start_time)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

/// Every resource a ledger recorded as created.
pub fn created(ledger: &Path) -> Vec<virtmark::targets::ledger::Resource> {
    let text = std::fs::read_to_string(ledger).expect("ledger");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "create")
        .filter_map(|v| serde_json::from_value::<virtmark::targets::ledger::Resource>(v).ok())
        .collect()
}

/// Whether the tests of `target` are skipped through the explicit allow-list
/// `VIRTMARK_SKIP_TARGETS` (comma-separated target names); says so loudly.
/// Nothing else skips a test: a target missing on this machine kind fails.
pub fn skip_allowed(target: &str) -> bool {
    let list = std::env::var("VIRTMARK_SKIP_TARGETS").unwrap_or_default();
    let hit = list.split(',').map(str::trim).any(|t| t == target);
    if hit {
        eprintln!("SKIPPED {target}: allow-listed by VIRTMARK_SKIP_TARGETS={list}");
    }
    hit
}

/// Fail unless `virtmark targets` says `target` is available here (which, for
/// the targets that can fail to start, means a test instance answered hello).
pub fn require_target(target: &str) {
    let out = Command::cargo_bin("virtmark")
        .expect("binary")
        .args(["targets", "--json", target])
        .output()
        .expect("virtmark targets runs");
    assert!(
        out.status.success(),
        "virtmark targets {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("targets JSON");
    let row = &rows[0];
    assert!(
        row["available"] == true,
        "{target} is expected on this machine kind but is not available here: {}. \
         scripts/setup.sh installs what it needs; to skip it anyway, say so with \
         VIRTMARK_SKIP_TARGETS={target}",
        row["reason"].as_str().unwrap_or("no reason given")
    );
}

/// Fail unless running as root (CI runs as root; most targets need it).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (namespaces, cgroups, taps): run it as root, as CI does"
    );
}

/// Whether `cmd` is an executable on `PATH`.
pub fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(cmd)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// Fail unless `cmd` is installed, naming its Debian package.
pub fn require_tool(cmd: &str, package: &str) {
    assert!(
        on_path(cmd),
        "{cmd} is not installed (Debian package {package}; scripts/setup.sh installs it)"
    );
}

/// The start of every test of a target: `true` (skip, said loudly) only when
/// `VIRTMARK_SKIP_TARGETS` names it; otherwise root and the target are
/// required, and their absence fails the test with the reason.
pub fn skip_or_require(target: &str) -> bool {
    if skip_allowed(target) {
        return true;
    }
    require_root();
    require_target(target);
    false
}

/// `virtmark run -w build` on `targets` with a two-file tree, one repetition:
/// every target must compile with the host's toolchain (shown read-only
/// inside) and report wall, user and system time.
pub fn build_runs_in(targets: &[&str], timeout: Duration) {
    let sb = Sandbox::new();
    let plan = sb.path().join("plan.toml");
    std::fs::write(&plan, "[params.build]\nfiles = 2\n").expect("plan");
    let list = targets.join(",");
    let out = sb
        .cmd(&[
            "run",
            "--plan",
            "plan.toml",
            "-t",
            &list,
            "-w",
            "build",
            "--reps",
            "1",
            "--discard",
            "0",
            "--out",
            "out",
        ])
        .env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(timeout)
        .output()
        .expect("virtmark runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{list}: {stderr}");
    let j = results_json(&sb.run_dir("out"));
    for t in targets {
        let s = j["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s["target"] == *t && s["workload"] == "build")
            .unwrap_or_else(|| panic!("{t}: no build sample: {:#}", j["failures"]));
        let metric = |name: &str| {
            s["metrics"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == name))
                .and_then(|m| m["value"].as_f64())
                .unwrap_or_else(|| panic!("{t}: no {name} in {s}"))
        };
        assert!(metric("time") > 0.0, "{t}: {s}");
        assert!(metric("user_time") > 0.0, "{t}: {s}");
        assert!(metric("sys_time") >= 0.0, "{t}: {s}");
    }
    assert_nothing_left(j["run_id"].as_str().expect("run id"));
}

/// `virtmark run -t TARGET -w WORKLOAD` with two short repetitions: each gives
/// a positive result, no failure is recorded, the start-up was measured, and
/// nothing of the run remains afterwards. Returns the results.
pub fn one_workload_leaves_nothing(
    target: &str,
    workload: &str,
    timeout: Duration,
) -> serde_json::Value {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&[
            "run",
            "-t",
            target,
            "-w",
            workload,
            "--reps",
            "2",
            "--duration",
            "300ms",
            "--out",
            "out",
        ])
        .env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(timeout)
        .output()
        .expect("virtmark runs");
    assert!(
        out.status.success(),
        "{target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = results_json(&sb.run_dir("out"));
    assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r:#}");
    let samples = r["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{r:#}");
    assert!(
        samples
            .iter()
            .all(|s| s["target"] == target && s["metrics"][0]["value"].as_f64() > Some(0.0)),
        "{r:#}"
    );
    assert_eq!(r["targets"][0]["name"], target);
    assert!(r["targets"][0]["startup_s"]
        .as_f64()
        .is_some_and(|s| s > 0.0));
    assert_nothing_left(r["run_id"].as_str().expect("run id"));
    r
}

/// Start a run on `target`, SIGKILL virtmark once its ledger holds `marker`
/// (the entry of the agent's container or process) and a moment has passed,
/// then `virtmark cleanup`: nothing of the run may remain.
pub fn killed_then_cleaned_up(target: &str, marker: &str, timeout: Duration) {
    killed_mid_run_then_cleaned_up(target, "dd-zero", &[], marker, timeout);
}

/// [`killed_then_cleaned_up`] of a run of `workload` with `extra` arguments;
/// returns the run's ledger, for checks of what it recorded.
#[allow(dead_code)]
pub fn killed_mid_run_then_cleaned_up(
    target: &str,
    workload: &str,
    extra: &[&str],
    marker: &str,
    timeout: Duration,
) -> String {
    let sb = Sandbox::new();
    let registry = sb.path().join("registry");
    let mut child = sb
        .background_run(target, workload, "4", "2s")
        .args(extra)
        .env("VIRTMARK_REGISTRY", &registry)
        .spawn()
        .expect("virtmark run");
    let deadline = Instant::now() + timeout;
    let ledger: PathBuf = loop {
        let found = std::fs::read_dir(sb.path().join("out"))
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("ledger.jsonl"))
            .filter(|l| std::fs::read_to_string(l).is_ok_and(|t| t.contains(marker)));
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "{target} never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().expect("SIGKILL virtmark");
    child.wait().expect("reap virtmark");
    let run_id = ledger
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .expect("run id");
    sb.cmd(&["cleanup"])
        .env("VIRTMARK_REGISTRY", &registry)
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    assert_nothing_left(&run_id);
    std::fs::read_to_string(&ledger).expect("ledger")
}

/// Samples in a run's `samples.csv`: distinct (run, target, workload, rep) of
/// its rows (one row per metric, and a sample has its headline and its counts).
#[allow(dead_code)]
pub fn samples_in(csv: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(csv).unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| l.splitn(5, ',').take(4).collect::<Vec<_>>().join(","))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}
