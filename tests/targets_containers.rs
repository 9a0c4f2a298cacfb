//! The container targets for real: `ns`, `oci:crun`, `oci:runc`, `gvisor`. Each
//! runs dd-zero end to end, its fingerprint must name the technology and show the
//! limits, and afterwards nothing of the run may remain (namespaces, cgroups,
//! mounts, processes, scratch) — after a normal run, after SIGKILL of virtmark
//! plus `virtmark cleanup`, and after a runtime that fails to start.

mod common;

use std::time::Duration;

use common::{assert_nothing_left, results_json, Sandbox};

fn sandbox() -> Sandbox {
    Sandbox::new()
}

fn cmd(sb: &Sandbox, args: &[&str]) -> assert_cmd::Command {
    let mut c = sb.cmd(args);
    c.env("VIRTMARK_REGISTRY", sb.path().join("registry"));
    c
}

fn run_dd(target: &str, technology: &str) {
    if common::skip_or_require(target) {
        return;
    }
    let sb = sandbox();
    cmd(
        &sb,
        &[
            "run",
            "-t",
            target,
            "-w",
            "dd-zero",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--out",
            "out",
        ],
    )
    .timeout(Duration::from_secs(120))
    .assert()
    .success();
    let dir = sb.run_dir("out");
    let r = results_json(&dir);
    let run_id = r["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r:#}");
    let samples = r["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 2, "{r:#}");
    assert!(samples
        .iter()
        .all(|s| s["target"] == target && s["metrics"][0]["value"].as_f64() > Some(0.0)));
    let t = &r["targets"][0];
    assert_eq!(t["name"], target);
    let fp = &t["fingerprint"];
    assert_eq!(fp["verdict"]["technology"], technology, "{fp:#}");
    assert!(t["startup_s"].as_f64().is_some_and(|s| s > 0.0));
    // The 2 GiB memory limit is what the agent sees: as a cgroup limit in a
    // container, as the sandbox's memory under gVisor.
    let two_gib = 2u64 << 30;
    let mem = fp["memory"]["cgroup_limit"]
        .as_u64()
        .or_else(|| fp["memory"]["total"].as_u64());
    assert_eq!(mem, Some(two_gib), "{fp:#}");
    if target != "gvisor" {
        // Every host CPU is the default: no CPU quota is needed for it (runc sets
        // one all the same); the CPU count the agent sees is the host's.
        let quota = fp["cgroup"]["cpu_quota_cpus"].as_f64();
        let cpus = fp["cpus"].as_f64().unwrap();
        assert!(quota.is_none() || quota == Some(cpus), "{fp:#}");
        let host_cpus = std::thread::available_parallelism().unwrap().get() as f64;
        assert_eq!(cpus, host_cpus, "{fp:#}");
        assert_eq!(fp["cgroup"]["pids_max"].as_u64(), Some(4096));
    }
    assert_nothing_left(&run_id);
}

/// `mem-bw`'s samples of a round make their set-ups (three 80 MB arrays, faulted
/// in) together and wait at a barrier: each one's window starts as soon as the
/// one before it in the round has answered, not a set-up later, and never before.
#[test]
fn mem_bw_samples_of_a_round_run_back_to_back_after_their_set_ups() {
    if common::skip_or_require("ns") {
        return;
    }
    let sb = sandbox();
    cmd(
        &sb,
        &[
            "run",
            "-t",
            "native,ns",
            "-w",
            "mem-bw",
            "--reps",
            "4",
            "--out",
            "out",
        ],
    )
    .timeout(Duration::from_secs(120))
    .assert()
    .success();
    let r = results_json(&sb.run_dir("out"));
    assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r:#}");
    let note = common::note_f64;
    let mut samples: Vec<&serde_json::Value> = r["samples"].as_array().unwrap().iter().collect();
    samples.sort_by_key(|s| {
        (
            s["position"]["round"].as_u64(),
            s["position"]["slot"].as_u64(),
        )
    });
    let mut followers = 0;
    for w in samples.windows(2) {
        let (a, b) = (w[0], w[1]);
        // The first round starts the targets, each at its own slot: a group
        // forms from the second on.
        if a["position"]["round"] != b["position"]["round"] || a["position"]["round"] == 0 {
            continue;
        }
        followers += 1;
        let gap = note(b, "started_at") - note(a, "ended_at");
        // What the later sample spent outside its window: its set-up, then the
        // wait at the barrier while the earlier one ran.
        let outside =
            b["elapsed_s"].as_f64().unwrap() - (note(b, "ended_at") - note(b, "started_at"));
        assert!(
            gap > -0.005,
            "the windows overlap by {:.3} s: {a} {b}",
            -gap
        );
        assert!(
            gap < 0.5 * outside,
            "{gap:.3} s between the windows, {outside:.3} s outside the later one: its set-up was not made ahead ({a} {b})"
        );
    }
    // Each round after the first: native and ns, in one group.
    assert_eq!(followers, 3, "{samples:#?}");
    assert_nothing_left(r["run_id"].as_str().unwrap());
}

fn kill_then_cleanup(target: &str) {
    if common::skip_or_require(target) {
        return;
    }
    // The ledger names the runtime or agent process once the target runs.
    common::killed_then_cleaned_up(target, "\"kind\":\"process\"", Duration::from_secs(60));
}

#[test]
fn ns_runs_dd_zero_and_leaves_nothing() {
    run_dd("ns", "virtmark-ns");
}

#[test]
fn crun_runs_dd_zero_and_leaves_nothing() {
    run_dd("oci:crun", "oci");
}

#[test]
fn runc_runs_dd_zero_and_leaves_nothing() {
    run_dd("oci:runc", "oci");
}

#[test]
fn gvisor_runs_dd_zero_and_leaves_nothing() {
    run_dd("gvisor", "gvisor");
}

#[test]
fn ns_killed_then_cleaned_up() {
    kill_then_cleanup("ns");
}

#[test]
fn crun_killed_then_cleaned_up() {
    kill_then_cleanup("oci:crun");
}

#[test]
fn runc_killed_then_cleaned_up() {
    kill_then_cleanup("oci:runc");
}

#[test]
fn gvisor_killed_then_cleaned_up() {
    kill_then_cleanup("gvisor");
}

/// A runtime that answers `--version` but fails to start anything: the target
/// fails, the run still completes, and everything made for it is removed.
#[test]
fn a_failing_runtime_leaves_nothing() {
    if common::skip_or_require("oci:runc") {
        return;
    }
    let sb = sandbox();
    let bin = sb.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("runc");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'injected failure' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd(
        &sb,
        &[
            "run",
            "-t",
            "oci:runc",
            "-w",
            "dd-zero",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--out",
            "out",
        ],
    )
    .env("PATH", path)
    .timeout(Duration::from_secs(120))
    .assert()
    .success();
    let r = results_json(&sb.run_dir("out"));
    let run_id = r["run_id"].as_str().expect("run_id").to_string();
    let failures = r["failures"].as_array().expect("failures");
    assert!(
        failures.iter().any(|f| f["kind"] == "target_failed"),
        "{r:#}"
    );
    assert_nothing_left(&run_id);
}

#[test]
fn build_compiles_with_the_hosts_toolchain_in_every_container_target() {
    let all = ["ns", "oci:crun", "oci:runc", "gvisor", "lxc"];
    let targets: Vec<&str> = all
        .into_iter()
        .filter(|t| !common::skip_or_require(t))
        .collect();
    common::build_runs_in(&targets, Duration::from_secs(300));
}
