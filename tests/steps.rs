//! The scalability and isolation steps, and `study`, end to end on real targets.

mod common;

use std::time::{Duration, Instant};

use common::{assert_nothing_left, results_json, Sandbox};
use predicates::prelude::*;

fn cmd(sb: &Sandbox, args: &[&str]) -> assert_cmd::Command {
    let mut c = sb.cmd(args);
    c.env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(Duration::from_secs(300));
    c
}

#[test]
fn scale_on_ns_with_1_2_4_instances_reports_per_instance_and_aggregate() {
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    cmd(
        &sb,
        &[
            "scale",
            "-t",
            "ns",
            "-w",
            "dd-zero",
            "--instances",
            "1,2,4",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--memory-total",
            "1GiB",
            "--out",
            "out",
        ],
    )
    .assert()
    .success()
    .stdout(predicate::str::contains("aggregate"));
    let dir = sb.run_dir("out");
    let j = results_json(&dir);
    let scale = j["scale"].as_array().expect("scale entries");
    assert_eq!(scale.len(), 3, "{scale:#?}");
    for (e, n) in scale.iter().zip([1u64, 2, 4]) {
        assert_eq!(e["target"], "ns");
        assert_eq!(e["instances"], n);
        assert_eq!(e["memory_per_instance"], (1u64 << 30) / n);
        let per = &e["per_instance"];
        let (mean, min, max) = (
            per["mean"].as_f64().unwrap(),
            per["min"].as_f64().unwrap(),
            per["max"].as_f64().unwrap(),
        );
        assert!(min > 0.0 && min <= mean && mean <= max, "{per}");
        let agg = e["aggregate"]["mean_times_n"].as_f64().unwrap();
        assert!((agg - mean * n as f64).abs() < 1e-6 * agg);
        assert!(e["aggregate"]["sum"].as_f64().unwrap() > 0.0);
        let f = e["fairness"].as_f64().unwrap();
        assert!(f > 0.0 && f <= 1.0 + 1e-9);
        assert!(e["dnr"].as_array().unwrap().is_empty(), "{e}");
    }
    // Every instance's samples are stored, tagged with the step.
    let samples = j["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2 * (1 + 2 + 4));
    assert!(samples.iter().all(|s| s["step"] == "scale"));
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

#[test]
fn an_instance_killed_by_its_memory_limit_is_recorded_as_dnr() {
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    // 48 MiB for the whole container: the agent starts, the 64 MiB array of
    // mem-bw does not fit, the kernel kills the instance.
    std::fs::write(
        sb.path().join("plan.toml"),
        "[params.mem-bw]\nsize = \"64MiB\"\n",
    )
    .unwrap();
    cmd(
        &sb,
        &[
            "scale",
            "--plan",
            "plan.toml",
            "-t",
            "ns",
            "-w",
            "mem-bw",
            "--instances",
            "1",
            "--reps",
            "1",
            "--discard",
            "0",
            "--duration",
            "200ms",
            "--memory-total",
            "48MiB",
            "--out",
            "out",
        ],
    )
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let e = &j["scale"][0];
    let dnr = e["dnr"].as_array().unwrap();
    assert_eq!(dnr.len(), 1, "{e}");
    assert!(e["per_instance"].is_null());
    assert!(!j["failures"].as_array().unwrap().is_empty());
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

#[test]
fn isolation_on_ns_limits_the_memory_and_fork_bombs_and_leaves_nothing() {
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    let t0 = Instant::now();
    cmd(
        &sb,
        &[
            "isolate",
            "-t",
            "ns",
            "--instances",
            "3",
            "--stressors",
            "memory,fork",
            "--window",
            "1s",
            "--reps",
            "2",
            "--memory",
            "64MiB",
            "--out",
            "out",
        ],
    )
    .assert()
    .success()
    .stdout(predicate::str::contains("misbehaving"));
    // The host stayed responsive: the whole run kept to its schedule.
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    let j = results_json(&sb.run_dir("out"));
    let iso = j["isolation"].as_array().expect("isolation entries");
    assert_eq!(iso.len(), 2, "{iso:#?}");
    let by = |st: &str| iso.iter().find(|e| e["stressor"] == st).unwrap().clone();
    let memory = by("memory");
    let notes = memory["stressor_notes"].to_string();
    assert!(
        notes.contains("signal 9") || notes.contains("allocation refused"),
        "the memory bomb must meet the instance's limit: {notes}"
    );
    let fork = by("fork");
    let notes = fork["stressor_notes"].to_string();
    let misbehaving_dnr = fork["degradation"]["misbehaving"]["dnr"].is_string();
    assert!(
        notes.contains("fork refused") || notes.contains("pids") || misbehaving_dnr,
        "the fork bomb must meet the pids limit: {notes} / {fork}"
    );
    // The well-behaved instances kept answering under both stressors.
    for e in [&memory, &fork] {
        assert!(
            e["degradation"]["well_behaved"].is_number(),
            "well-behaved instances returned results: {e}"
        );
    }
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

#[test]
fn destructive_stressors_are_refused_on_native_without_the_flag() {
    let sb = Sandbox::new();
    let out = cmd(
        &sb,
        &["isolate", "-t", "native", "--stressors", "cpu,memory"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing the memory stressor(s) on native"),
        "{err}"
    );
    assert!(err.contains("--allow-host-stress"), "{err}");
    assert!(!sb.path().join("virtmark-results").exists());
}

#[test]
fn isolation_on_native_with_cpu_and_udp_stressors_reports_degradation() {
    let sb = Sandbox::new();
    cmd(
        &sb,
        &[
            "isolate",
            "-t",
            "native",
            "--instances",
            "2",
            "--stressors",
            "cpu,udp-send,udp-recv",
            "--window",
            "500ms",
            "--reps",
            "2",
            "--out",
            "out",
        ],
    )
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let iso = j["isolation"].as_array().unwrap();
    assert_eq!(iso.len(), 3);
    for e in iso {
        assert!(e["degradation"]["misbehaving"].is_number(), "{e}");
        assert!(e["degradation"]["well_behaved"].is_number(), "{e}");
        assert!(e["baseline_rate"][1].as_f64().unwrap() > 0.0);
        let notes = e["stressor_notes"].to_string();
        assert!(
            notes.contains("started") && notes.contains("exit status 0"),
            "{notes}"
        );
    }
}

#[test]
fn study_runs_the_three_steps_into_one_report() {
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    cmd(
        &sb,
        &[
            "study",
            "-t",
            "native,ns",
            "-w",
            "dd-zero,net-rr",
            "--scale-workload",
            "dd-zero",
            "--instances",
            "1,2",
            "--stressors",
            "cpu",
            "--window",
            "500ms",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--out",
            "out",
        ],
    )
    .assert()
    .success();
    let dir = sb.run_dir("out");
    let j = results_json(&dir);
    assert!(j["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["target"] == "ns" && r["ratio_to_native"].is_number()));
    assert_eq!(
        j["scale"].as_array().unwrap().len(),
        4,
        "2 targets × n = 1, 2"
    );
    let iso = j["isolation"].as_array().unwrap();
    assert!(
        iso.iter().all(|e| e["target"] == "ns"),
        "native left out: {iso:?}"
    );
    assert_eq!(iso.len(), 1);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Scalability") && html.contains("Isolation"));
    assert_nothing_left(j["run_id"].as_str().unwrap());
}
