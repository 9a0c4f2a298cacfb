//! The scalability and isolation steps, and `study`, end to end on real targets.

mod common;

use std::time::{Duration, Instant};

use common::{assert_nothing_left, results_json, Sandbox};
use predicates::prelude::*;

/// Tests whose figures or schedule the others would disturb (isolation
/// degradation under fork and memory bombs, 32 instances) run alone: they take
/// the lock for writing, every other test here for reading. On two cores a
/// fork bomb beside two other runs once stretched a 20 s isolation step to 121 s.
static HEAVY: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn heavy() -> std::sync::RwLockWriteGuard<'static, ()> {
    HEAVY.write().unwrap_or_else(|e| e.into_inner())
}

fn light() -> std::sync::RwLockReadGuard<'static, ()> {
    HEAVY.read().unwrap_or_else(|e| e.into_inner())
}

fn cmd(sb: &Sandbox, args: &[&str]) -> assert_cmd::Command {
    let mut c = sb.cmd(args);
    c.env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(Duration::from_secs(300));
    c
}

#[test]
fn scale_on_ns_with_1_2_4_instances_reports_per_instance_and_aggregate() {
    let _shared = light();
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

/// A workload with a set-up (`dd-copy` writes its source image; the copy is
/// capped at 5 durations) prepares before the
/// barrier: every instance's measured window starts after its set-up, and the
/// windows start together.
#[test]
fn set_up_comes_before_the_barrier_and_the_windows_start_together() {
    let _shared = light();
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    // A source image large enough that writing it takes far longer than the
    // barrier (the quick preset's own is 32 MiB).
    std::fs::write(
        sb.path().join("copy.toml"),
        "[params.dd-copy]\nsize = \"128MiB\"\n",
    )
    .unwrap();
    cmd(
        &sb,
        &[
            "scale",
            "--plan",
            "copy.toml",
            "-t",
            "ns",
            "-w",
            "dd-copy",
            "--duration",
            "200ms",
            "--instances",
            "2",
            "--reps",
            "2",
            "--memory-total",
            "1GiB",
            "--out",
            "out",
        ],
    )
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let note = common::note_f64;
    let samples = j["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4, "{samples:#?}");
    for s in samples {
        let (start, end) = (note(s, "started_at"), note(s, "ended_at"));
        // Before the window: set-up and the wait at the barrier. Writing the
        // 128 MiB source image takes far more than a quarter of a second here
        // (about 2 s); the barrier alone, with both instances ready at once, a
        // few milliseconds.
        let before = s["elapsed_s"].as_f64().unwrap() - (end - start);
        assert!(
            before > 0.25,
            "only {before:.3} s passed before the measured window: {s}"
        );
    }
    let e = &j["scale"][0];
    let spread = e["barrier_spread_ms"].as_f64().expect("barrier spread");
    assert!(spread < 100.0, "{e}");
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

#[test]
fn an_instance_killed_by_its_memory_limit_is_recorded_as_dnr() {
    let _shared = light();
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
    // Every instance counts: the DNR is zero throughput, not a missing figure.
    assert_eq!(e["per_instance"]["max"], 0.0, "{e}");
    assert_eq!(e["aggregate"]["mean_times_n"], 0.0, "{e}");
    assert_eq!(e["counts"]["failed"], 1, "{e}");
    assert!(!j["failures"].as_array().unwrap().is_empty());
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

/// The isolation rounds of `isolate -t ns --stressors memory,fork`, with the
/// containers' limits or without them (`--no-limits`): the results' entries.
fn isolate_bombs_on_ns(no_limits: bool) -> (Vec<serde_json::Value>, String) {
    let sb = Sandbox::new();
    let mut args = vec![
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
    ];
    if no_limits {
        args.push("--no-limits");
    }
    let t0 = Instant::now();
    cmd(&sb, &args)
        .assert()
        .success()
        .stdout(predicate::str::contains("misbehaving"));
    // The whole run kept to its schedule.
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    let j = results_json(&sb.run_dir("out"));
    let run_id = j["run_id"].as_str().unwrap().to_string();
    assert_nothing_left(&run_id);
    let iso = j["isolation"]
        .as_array()
        .expect("isolation entries")
        .clone();
    assert_eq!(iso.len(), 2, "{iso:#?}");
    for e in &iso {
        // The host stayed responsive: a host thread never waited 500 ms for a CPU.
        let lag = e["host_sched_lag_ms"]
            .as_f64()
            .expect("scheduling lag measured");
        assert!(lag < 500.0, "host scheduling lag {lag} ms: {e}");
        assert_eq!(e["counts"]["planned"], 3, "{e}");
    }
    (iso, run_id)
}

fn well_behaved(iso: &[serde_json::Value], st: &str) -> f64 {
    let e = iso.iter().find(|e| e["stressor"] == st).unwrap();
    e["degradation"]["well_behaved"]
        .as_f64()
        .unwrap_or_else(|| panic!("well-behaved degradation of {st}: {e}"))
}

/// Xu et al. / Matthews et al.: the bombs are contained by the container's limits
/// (the well-behaved keep at least 95% of their good responses); without the
/// limits the fork bomb visibly hurts them, while the host stays responsive.
#[test]
fn isolation_on_ns_limits_contain_the_bombs_and_no_limits_hurt_the_neighbours() {
    if common::skip_or_require("ns") {
        return;
    }
    let _one_at_a_time = heavy();
    let (limited, _) = isolate_bombs_on_ns(false);
    let by = |st: &str| {
        limited
            .iter()
            .find(|e| e["stressor"] == st)
            .unwrap()
            .clone()
    };
    let memory = by("memory");
    let notes = memory["stressor_notes"].to_string();
    assert!(
        notes.contains("signal 9") || notes.contains("allocation refused"),
        "the memory bomb must meet the instance's limit: {notes}"
    );
    // The fork bomb is contained: stopped by the task or memory limit, or held to
    // its own instance's CPU share, so that its own instance loses more than its
    // neighbours.
    let fork = by("fork");
    let notes = fork["stressor_notes"].to_string();
    let misbehaving = &fork["degradation"]["misbehaving"];
    let stopped = notes.contains("fork refused") || misbehaving["dnr"].is_string();
    let held = misbehaving
        .as_f64()
        .is_some_and(|m| m > well_behaved(&limited, "fork"));
    assert!(
        stopped || held,
        "the fork bomb must stay in its instance: {notes} / {fork}"
    );
    for st in ["memory", "fork"] {
        let d = well_behaved(&limited, st);
        assert!(d <= 5.0, "{st}: the well-behaved lost {d}% with limits");
    }

    // 32 spinning processes compete with each neighbour's one, outside any CPU
    // share. What shows it varies from run to run on two cores, so any of three
    // witnesses counts, each a clear multiple of the limited case:
    // - the well-behaved lose more responses: at 500/s, 1 s windows, 2 rounds and
    //   2 neighbours, 0.5 point is 10 of 2,000 requests (CI runs: 1.3–4.1% lost
    //   against 0–0.2%);
    // - or they answer visibly later (the p99 under stress over the baseline's);
    // - or the host's own threads wait longer for a CPU: the bomb reached beyond
    //   its instance (CI runs: 17–48 ms against 3–12 ms).
    // With limits, 4,096 tasks throttled by their instance's CPU quota can
    // raise the neighbours' p99 as much as the unlimited bomb does (×10.5
    // against ×4.4 in one CI run), so the p99 alone is not enough.
    // Even so, a paced server's wake-ups can win the CPU from 32 spinners for a
    // whole run (one CI run: 0% lost, p99 ×2.27 against ×2.26, host lag 4.1
    // against 7.9 ms, while the bomb's own instance lost 72.6%): the run is
    // repeated, up to three times, until one shows a witness. That the limits
    // were lifted at all is checked on every run, from the stressors' notes.
    let of_fork = |iso: &[serde_json::Value]| iso.iter().find(|e| e["stressor"] == "fork").cloned();
    let p99_rise = |iso: &[serde_json::Value]| {
        let e = of_fork(iso).unwrap();
        let p = &e["well_behaved_p99_us"];
        p[0].as_f64().unwrap_or(f64::INFINITY) / p[1].as_f64().unwrap_or(f64::INFINITY)
    };
    let lag =
        |iso: &[serde_json::Value]| of_fork(iso).unwrap()["host_sched_lag_ms"].as_f64().unwrap();
    let with = well_behaved(&limited, "fork");
    let (rise_with, lag_with) = (p99_rise(&limited), lag(&limited));
    let show = |label: &str, iso: &[serde_json::Value]| {
        for e in iso {
            eprintln!(
                "{label}: {}: well-behaved {} misbehaving {} host lag {} ms",
                e["stressor"],
                e["degradation"]["well_behaved"],
                e["degradation"]["misbehaving"],
                e["host_sched_lag_ms"]
            );
        }
    };
    show("with limits", &limited);
    let mut tried = Vec::new();
    for _ in 0..3 {
        let (unlimited, _) = isolate_bombs_on_ns(true);
        for (st, cap) in [("memory", "memory cap"), ("fork", "pids cap")] {
            let notes = unlimited.iter().find(|e| e["stressor"] == st).unwrap()["stressor_notes"]
                .to_string();
            assert!(
                notes.contains(cap),
                "without limits only the stressor's own cap stops the {st} bomb: {notes}"
            );
        }
        show("--no-limits", &unlimited);
        let without = well_behaved(&unlimited, "fork");
        let (rise_without, lag_without) = (p99_rise(&unlimited), lag(&unlimited));
        if without >= 2.0 * with + 0.5
            || (without > with && rise_without > 1.5 * rise_with)
            || lag_without > 1.5 * lag_with
        {
            return;
        }
        tried.push(format!(
            "{without}% lost, p99 ×{rise_without:.2}, host lag {lag_without:.1} ms"
        ));
    }
    panic!(
        "without limits the fork bomb must hurt the neighbours more than with them \
         ({with}% lost, p99 ×{rise_with:.2}, host lag {lag_with:.1} ms) in one of three runs: {}",
        tried.join("; ")
    );
}

#[test]
fn no_limits_is_refused_on_native_and_on_vms() {
    let _shared = light();
    let sb = Sandbox::new();
    for t in ["native", "uml"] {
        let out = cmd(
            &sb,
            &["isolate", "-t", t, "--stressors", "cpu", "--no-limits"],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{t}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("refusing --no-limits for {t}")),
            "{err}"
        );
    }
}

/// An instance killed in the middle of the step is a DNR, and counts as zero in
/// the aggregate (not credited with its neighbour's throughput).
#[test]
fn an_instance_killed_mid_step_is_dnr_and_counts_as_zero() {
    let _shared = light();
    let sb = Sandbox::new();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("virtmark"))
        .current_dir(sb.path())
        .env("VIRTMARK_DB", sb.db())
        .args([
            "scale",
            "-t",
            "native",
            "-w",
            "dd-zero",
            "--instances",
            "2",
            "--reps",
            "3",
            "--duration",
            "1500ms",
            "--out",
            "out",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Instance 1's agent: `virtmark agent --scratch …/native-1`, our child's child.
    let parent = child.id().to_string();
    let find = || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_string();
            (ppid == parent
                && cmdline.contains(" agent ")
                && cmdline.trim_end().ends_with("/native-1"))
            .then_some(pid)
        })
    };
    let t0 = Instant::now();
    let pid = loop {
        if let Some(p) = find() {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "instance 1 never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Repetition 0 (warm-up) takes 1.5 s; kill in the middle of repetition 1.
    std::thread::sleep(Duration::from_millis(2300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let j = results_json(&sb.run_dir("out"));
    let e = &j["scale"][0];
    assert_eq!(e["instances"], 2);
    assert_eq!(e["counts"]["finished"], 1, "{e}");
    assert_eq!(e["counts"]["failed"], 1, "{e}");
    assert_eq!(e["dnr"][0]["instance"], 1, "{e}");
    let agg = e["aggregate"]["mean_times_n"].as_f64().unwrap();
    let finished = e["aggregate"]["finished_mean_times_n"].as_f64().unwrap();
    // Instance 1 is zero in both kept repetitions: the aggregate is instance 0's.
    assert!(
        agg > 0.0 && (finished - 2.0 * agg).abs() < 1e-6 * finished,
        "{e}"
    );
    assert_eq!(e["per_instance"]["min"], 0.0, "{e}");
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

/// `scale --pin -t ns --instances 2`: each instance's fingerprint shows its own CPU.
#[test]
fn pinned_ns_instances_each_see_their_own_cpu() {
    let _shared = light();
    if common::skip_or_require("ns") {
        return;
    }
    let sb = Sandbox::new();
    cmd(
        &sb,
        &[
            "scale",
            "--pin",
            "-t",
            "ns",
            "-w",
            "dd-zero",
            "--instances",
            "2",
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
    let j = results_json(&sb.run_dir("out"));
    let note = |s: &serde_json::Value, key: &str| -> String {
        s["notes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|n| n.as_str()?.strip_prefix(key).map(String::from))
            .unwrap_or_else(|| panic!("no {key} in {s}"))
    };
    let mut seen = std::collections::BTreeSet::new();
    for s in j["samples"].as_array().unwrap() {
        if s["instances"] == 2 {
            let (cpus, pinned) = (note(s, "cpus="), note(s, "pinned_to="));
            assert_eq!(cpus, pinned, "{s}");
            seen.insert(cpus);
        }
    }
    let host = std::thread::available_parallelism().unwrap().get();
    assert_eq!(seen.len(), host.min(2), "{seen:?}");
    assert_eq!(j["scale"][0]["pinned"], true);
}

/// Camargos et al.'s Figure 10 on `ns`: OLTP in 1 … 32 instances with the studies'
/// memory split; every n reported, every instance counted.
#[test]
fn scale_oltp_to_32_instances_with_the_studies_memory_split() {
    if common::skip_or_require("ns") {
        return;
    }
    let _one_at_a_time = heavy();
    let sb = Sandbox::new();
    cmd(
        &sb,
        &[
            "scale",
            "-t",
            "ns",
            "-w",
            "oltp",
            "--instances",
            "1,2,4,8,16,32",
            "--reps",
            "2",
            "--duration",
            "300ms",
            "--out",
            "out",
        ],
    )
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let scale = j["scale"].as_array().unwrap();
    assert_eq!(scale.len(), 6, "{scale:#?}");
    for (e, (n, mib)) in scale.iter().zip([
        (1u64, 2039u64),
        (2, 1622),
        (4, 811),
        (8, 405),
        (16, 202),
        (32, 101),
    ]) {
        assert_eq!(e["instances"], n);
        assert_eq!(e["memory_per_instance"], mib << 20, "{e}");
        let c = &e["counts"];
        assert_eq!(c["planned"], n);
        assert_eq!(
            c["finished"].as_u64().unwrap() + c["failed"].as_u64().unwrap(),
            n
        );
        assert_eq!(
            e["dnr"].as_array().unwrap().len() as u64,
            c["failed"].as_u64().unwrap()
        );
        assert!(e["aggregate"]["mean_times_n"].as_f64().unwrap() >= 0.0);
        if n > 1 && c["finished"].as_u64().unwrap() > 1 {
            let overlap = e["window_overlap"].as_f64().expect("overlap");
            assert!((0.0..=1.0).contains(&overlap), "{e}");
        }
    }
    assert_nothing_left(j["run_id"].as_str().unwrap());
}

#[test]
fn destructive_stressors_are_refused_on_native_without_the_flag() {
    let _shared = light();
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
    let _shared = light();
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
    let _shared = light();
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
