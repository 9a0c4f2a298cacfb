//! The `lxc` target for real: `virtmark run -t lxc` end to end, the fingerprint
//! names LXC and its limits, nothing of the run remains afterwards; and after a
//! SIGKILL of virtmark mid-run, `virtmark cleanup` removes everything.
//! Fails with the reason where LXC or root is missing (skipped only when
//! `VIRTMARK_SKIP_TARGETS` names lxc).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use common::{alive, created, results_json, Sandbox};
use virtmark::targets::ledger::Resource;

/// Assert that nothing a ledger recorded still exists.
fn assert_all_gone(ledger: &Path) {
    let res = created(ledger);
    assert!(!res.is_empty(), "the ledger recorded nothing");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    for r in &res {
        match r {
            Resource::Dir { path } => {
                assert!(!path.exists(), "{} remains", path.display());
                let p = path.display().to_string();
                assert!(
                    !mounts.lines().any(|l| l.contains(&p)),
                    "a mount under {p} remains"
                );
            }
            Resource::Cgroup { path } => {
                assert!(!path.exists(), "cgroup {} remains", path.display())
            }
            Resource::Netns { name } => assert!(
                !Path::new("/run/netns").join(name).exists(),
                "network namespace {name} remains"
            ),
            Resource::Link { name } => assert!(
                !Path::new("/sys/class/net").join(name).exists(),
                "link {name} remains"
            ),
            Resource::Mount { path } => assert!(
                !mounts.lines().any(|l| l.split(' ').nth(1) == path.to_str()),
                "mount {} remains",
                path.display()
            ),
            Resource::Process { pid, start_time } => assert!(
                !alive(*pid, *start_time),
                "process {pid} remains: {}",
                std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
            ),
            Resource::Container { id, root, .. } => {
                let out = StdCommand::new("pgrep")
                    .args(["-f", "--", &format!("-n {id} ")])
                    .output()
                    .unwrap();
                assert!(
                    String::from_utf8_lossy(&out.stdout).trim().is_empty(),
                    "a process of container {id} remains"
                );
                if let Some(r) = root {
                    assert!(!r.join(id).exists(), "{} remains", r.join(id).display());
                }
            }
        }
    }
    assert!(
        res.iter()
            .any(|r| matches!(r, Resource::Container { runtime, .. } if runtime == "lxc")),
        "the container was not in the ledger: {res:?}"
    );
    assert!(
        res.iter().any(|r| matches!(r, Resource::Cgroup { .. })),
        "no cgroup in the ledger: {res:?}"
    );
}

#[test]
fn lxc_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("lxc") {
        return;
    }
    let sb = Sandbox::new();
    let reg = sb.path().join("registry");
    let out = sb
        .cmd(&[
            "run",
            "-t",
            "lxc",
            "-w",
            "dd-zero",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--out",
            "out",
        ])
        .env("VIRTMARK_REGISTRY", &reg)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = sb.run_dir("out");
    let r = results_json(&dir);
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{r:#}");
    assert!(samples.iter().all(|s| s["target"] == "lxc"));
    let t = &r["targets"][0];
    assert_eq!(t["name"], "lxc");
    let fp = &t["fingerprint"];
    assert_eq!(fp["verdict"]["technology"], "lxc", "{fp:#}");
    assert_eq!(fp["verdict"]["kind"], "container", "{fp:#}");
    // The limits virtmark set are the ones the agent sees.
    assert_eq!(fp["cgroup"]["memory_max"], 2u64 << 30, "{fp:#}");
    assert_eq!(fp["cgroup"]["pids_max"], 4096, "{fp:#}");
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(
        fp["cgroup"]["cpu_quota_cpus"].as_f64(),
        Some(cpus),
        "{fp:#}"
    );
    let startup = t["startup_s"].as_f64().unwrap();
    assert!(startup > 0.0 && startup < 10.0, "startup {startup}");
    // The configuration is kept with the run.
    let conf = std::fs::read_to_string(dir.join("agent-lxc.lxc.conf")).unwrap();
    assert!(conf.contains("lxc.apparmor.profile = unconfined"), "{conf}");
    assert_all_gone(&dir.join("ledger.jsonl"));
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_then_cleanup_leaves_nothing() {
    if common::skip_or_require("lxc") {
        return;
    }
    let sb = Sandbox::new();
    let reg = sb.path().join("registry");
    let mut child = sb
        .background_run("lxc", "dd-zero", "20", "1s")
        .env("VIRTMARK_REGISTRY", &reg)
        .spawn()
        .unwrap();
    // Wait until the container runs (its lxc-execute is in the ledger).
    let mut ledger = PathBuf::new();
    wait_for("the container to start", Duration::from_secs(60), || {
        let Ok(rd) = std::fs::read_dir(sb.path().join("out")) else {
            return false;
        };
        let Some(d) = rd.flatten().next() else {
            return false;
        };
        ledger = d.path().join("ledger.jsonl");
        std::fs::read_to_string(&ledger)
            .is_ok_and(|t| t.contains("\"process\"") && t.contains("\"container\""))
    });
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = sb
        .cmd(&["cleanup"])
        .env("VIRTMARK_REGISTRY", &reg)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cleaned"));
    assert_all_gone(&ledger);
}
