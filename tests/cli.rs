//! The command line, end to end, on the real binary.

mod common;

use common::{results_json, Sandbox};
use predicates::prelude::*;

#[test]
fn workloads_lists_the_catalog() {
    let sb = Sandbox::new();
    sb.cmd(&["workloads"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dd-zero"))
        .stdout(predicate::str::contains("dd if=/dev/zero of=/dev/null"));
}

#[test]
fn the_printed_default_plan_runs_as_a_plan_file() {
    let sb = Sandbox::new();
    let out = sb.cmd(&["plan", "--print-default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[run]") && text.contains("reps = 4"));
    std::fs::write(sb.path().join("plan.toml"), text).unwrap();
    // The plan names the whole suite; keep the run short by overriding the workloads.
    sb.cmd(&[
        "run",
        "--plan",
        "plan.toml",
        "-t",
        "native",
        "-w",
        "dd-zero",
        "--reps",
        "2",
        "--duration",
        "100ms",
    ])
    .assert()
    .success();
}

fn one_line_error(sb: &Sandbox, args: &[&str], needle: &str) {
    let out = sb.cmd(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line: {err}"
    );
}

#[test]
fn bad_input_gives_a_one_line_error_and_status_2() {
    let sb = Sandbox::new();
    one_line_error(&sb, &["run", "-w", "spin"], "unknown workload \"spin\"");
    one_line_error(
        &sb,
        &["run", "-t", "mainframe"],
        "unknown target \"mainframe\"",
    );
    one_line_error(
        &sb,
        &["run", "-w", "dd-zero", "--reps", "3", "--discard", "3"],
        "must be less than run.reps = 3",
    );
    // Flag values are checked by the argument parser, which adds a hint line.
    sb.cmd(&["run", "--duration", "0s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("greater than zero"));
    sb.cmd(&["run", "--reps", "many"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("give `auto` or a number"));
    std::fs::write(sb.path().join("prec.toml"), "[run]\nprecision = 3\n").unwrap();
    one_line_error(
        &sb,
        &["run", "--plan", "prec.toml"],
        "run.precision = 3: give a fraction",
    );
    std::fs::write(sb.path().join("bad.toml"), "[run]\nreps = \"many\"\n").unwrap();
    one_line_error(&sb, &["run", "--plan", "bad.toml"], "bad.toml (line 2");
    std::fs::write(sb.path().join("unk.toml"), "[run]\nrepetitions = 3\n").unwrap();
    one_line_error(
        &sb,
        &["run", "--plan", "unk.toml"],
        "unknown field `repetitions`",
    );
    one_line_error(
        &sb,
        &["run", "--plan", "missing.toml"],
        "cannot read plan missing.toml",
    );
    // Nothing was stored by any of these.
    assert!(!sb.path().join("virtmark-results").exists());
}

#[test]
fn an_unwritable_output_directory_is_refused() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("afile"), "x").unwrap();
    one_line_error(
        &sb,
        &["run", "-w", "dd-zero", "--out", "afile/sub"],
        "cannot create run directory",
    );
}

#[test]
fn a_damaged_database_is_refused_and_left_as_it_was() {
    let sb = Sandbox::new();
    let junk = vec![b'x'; 4096];
    std::fs::write(sb.db(), &junk).unwrap();
    one_line_error(
        &sb,
        &["run", "-w", "dd-zero", "--duration", "100ms"],
        "damaged or not a virtmark database",
    );
    assert_eq!(std::fs::read(sb.db()).unwrap(), junk);
    one_line_error(&sb, &["history"], "damaged or not a virtmark database");
}

/// `results.json` of a one-sample native `dd-zero` run with `extra` flags.
fn native_results(extra: &[&str]) -> serde_json::Value {
    let sb = Sandbox::new();
    let mut args = vec![
        "run",
        "-t",
        "native",
        "-w",
        "dd-zero",
        "--reps",
        "1",
        "--discard",
        "0",
        "--duration",
        "100ms",
        "--memory",
        "1GiB",
        "--out",
        "out",
    ];
    args.extend_from_slice(extra);
    sb.cmd(&args).assert().success();
    results_json(&sb.run_dir("out"))
}

/// The native target's fingerprint from a one-sample run with `extra` flags.
fn native_fingerprint(extra: &[&str]) -> serde_json::Value {
    native_results(extra)["targets"][0]["fingerprint"].clone()
}

#[test]
fn native_runs_in_the_targets_memory_envelope_unless_unbounded() {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    assert_eq!(
        uid.stdout, b"0\n",
        "this test needs root: native's envelope is a cgroup"
    );
    let fp = native_fingerprint(&[]);
    assert_eq!(fp["cgroup"]["memory_max"], 1u64 << 30, "{fp}");
    assert!(
        fp["scratch"]["statfs_type"].is_string() && fp["scratch"]["source"].is_string(),
        "the fingerprint names the scratch storage: {fp}"
    );
    let fp = native_fingerprint(&["--native-unbounded"]);
    assert_ne!(fp["cgroup"]["memory_max"], 1u64 << 30, "{fp}");
}

#[test]
fn the_auto_caps_come_from_the_flags() {
    let sb = Sandbox::new();
    one_line_error(
        &sb,
        &["run", "-w", "dd-zero", "--max-reps", "2"],
        "run.max-reps = 2 must be at least run.reps = 4",
    );
    let results = native_results(&["--max-reps", "5", "--max-time", "2s"]);
    let run = &results["plan"]["run"];
    assert_eq!(run["max-reps"], 5, "{run}");
    assert_eq!(run["max-time"], "2s", "{run}");
}

#[test]
fn a_scratch_base_in_memory_is_refused() {
    let sb = Sandbox::new();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a directory on /dev/shm (tmpfs)");
    sb.cmd(&[
        "run",
        "-t",
        "native",
        "-w",
        "dd-zero",
        "--duration",
        "100ms",
    ])
    .env("VIRTMARK_SCRATCH", shm.path())
    .assert()
    .failure()
    .stderr(predicate::str::contains("in memory"))
    .stderr(predicate::str::contains("VIRTMARK_SCRATCH"));
}

#[test]
fn a_short_real_run_writes_its_directory_and_database() {
    let sb = Sandbox::new();
    // Native only: the counts below are per target, and which other targets are
    // available (lxc, …) depends on the machine.
    sb.cmd(&[
        "run",
        "-t",
        "native",
        "-w",
        "dd-zero",
        "--reps",
        "3",
        "--discard",
        "1",
        "--duration",
        "200ms",
        "--out",
        "out",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("dd-zero"))
    .stdout(predicate::str::contains("MB/s"))
    .stderr(predicate::str::contains("rep 3/3"));
    let dir = sb.run_dir("out");
    for f in ["plan.toml", "results.json", "samples.csv"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let plan = std::fs::read_to_string(dir.join("plan.toml")).unwrap();
    assert!(
        plan.contains("reps = 3") && plan.contains("dd-zero"),
        "{plan}"
    );
    // Workload sizes are resolved once by the orchestrator and recorded.
    assert!(
        plan.contains("[params.dd-zero]") && plan.contains("block-size"),
        "{plan}"
    );

    let j = results_json(&dir);
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["status"], "complete");
    assert!(j["virtmark"]["version"].is_string());
    assert!(j["virtmark"]["git_revision"].is_string());
    assert!(j["host"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(j["samples"].as_array().unwrap().len(), 3);
    let results = j["results"].as_array().unwrap();
    let head = results
        .iter()
        .find(|r| r["workload"] == "dd-zero" && r["metric"] == "throughput")
        .expect("dd-zero throughput result");
    for key in [
        "target",
        "workload",
        "metric",
        "unit",
        "higher_is_better",
        "median",
        "n",
        "ci_low",
        "ci_high",
        "ci_level",
        "cov",
        "ratio_to_native",
        "samples",
    ] {
        assert!(head.get(key).is_some(), "results entry lacks {key}");
    }
    assert_eq!(head["target"], "native");
    assert!(head["ratio_to_native"].is_null());
    let kept: Vec<f64> = head["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "one of three discarded");
    let median = head["median"].as_f64().unwrap();
    assert!((median - (kept[0] + kept[1]) / 2.0).abs() < 1e-9);
    assert!(head["ci_low"].as_f64().unwrap() <= median);
    assert!(head["ci_high"].as_f64().unwrap() >= median);
    // Two kept samples: their range covers the median with 1 − 2·(1/2)² = 50%.
    assert_eq!(head["n"], 2);
    assert_eq!(head["ci_level"], 0.5);
    // Each sample records its round and slot; the seed is in the plan.
    assert!(plan.contains("seed = "), "{plan}");
    let rounds: Vec<u64> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["position"]["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, vec![0, 1, 2]);

    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("run_id,target,workload,rep,discarded"));
    let rows: usize = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metrics"].as_array().unwrap().len())
        .sum();
    assert_eq!(lines.len(), 1 + rows, "one row per sample and metric");
    assert_eq!(common::samples_in(&dir.join("samples.csv")), 3);

    // The database holds the same run and every sample.
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    let (status, n): (String, i64) = conn
        .query_row(
            "SELECT status, (SELECT count(*) FROM samples WHERE run_id = runs.id) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), n), ("complete", 3));
    let values: Vec<f64> = conn
        .prepare("SELECT value FROM sample_metrics m JOIN samples s ON s.id = m.sample_id WHERE s.discarded = 0 AND m.name = ?1 ORDER BY s.rep")
        .unwrap()
        .query_map([head["metric"].as_str().unwrap()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(values, kept);

    sb.cmd(&["history"])
        .assert()
        .success()
        .stdout(predicate::str::contains(j["run_id"].as_str().unwrap()))
        .stdout(predicate::str::contains("complete"));
}

#[test]
fn an_interrupted_run_keeps_what_it_measured() {
    let sb = Sandbox::new();
    let mut child = sb
        .background_run("native", "dd-zero", "50", "200ms")
        .spawn()
        .unwrap();
    // Interrupt once a few samples are in (polling: a loaded machine is slow to start).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = std::fs::read_dir(sb.path().join("out"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| Some(common::samples_in(&e.ok()?.path().join("samples.csv"))))
            .unwrap_or(0);
        if rows >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "an interrupted run still ends cleanly: {status}"
    );
    let j = results_json(&sb.run_dir("out"));
    assert_eq!(j["status"], "partial");
    let n = j["samples"].as_array().unwrap().len();
    assert!((2..50).contains(&n), "kept {n} samples");
    let conn = rusqlite::Connection::open(sb.db()).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as usize, n);
    // No agent of this run is left running, and its scratch is gone.
    let run_id = j["run_id"].as_str().unwrap();
    let agents = std::process::Command::new("pgrep")
        .args(["-f", &format!("virtmark-{run_id}")])
        .output()
        .unwrap();
    assert!(agents.stdout.is_empty(), "agents left: {:?}", agents);
    assert!(
        common::scratch_roots(run_id).is_empty(),
        "{:?}",
        common::scratch_roots(run_id)
    );
}

#[test]
fn the_agent_answers_malformed_requests_and_keeps_serving() {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&["agent", "--scratch", "."])
        .write_stdin("garbage\n{\"v\":1,\"type\":\"nonsense\"}\n{\"v\":1,\"type\":\"hello\"}\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["type"], "error");
    assert_eq!(lines[0]["kind"], "bad_request");
    assert_eq!(lines[1]["type"], "error");
    assert_eq!(lines[2]["type"], "hello");
    assert!(lines.iter().all(|l| l["v"] == 1));
}

#[test]
fn more_cpus_or_memory_than_the_host_has_is_refused() {
    let sb = Sandbox::new();
    one_line_error(
        &sb,
        &["run", "-t", "native", "-w", "dd-zero", "--cpus", "4096"],
        "run.cpus = 4096: this host has",
    );
    one_line_error(
        &sb,
        &["run", "-t", "native", "-w", "dd-zero", "--memory", "64TiB"],
        "run.memory = 64TiB",
    );
}

#[test]
fn the_first_sample_after_a_restart_is_a_discarded_warm_up() {
    let sb = Sandbox::new();
    // dd-zero runs 3 s against a 1.5 s deadline: a DNR every time, and the
    // target (native's agent) restarts. Workloads rotate: rounds 0 and 2 run
    // dd-zero first, so cpu-int comes right after a restart; round 1 runs
    // cpu-int first, on an agent that already ran it.
    std::fs::write(
        sb.path().join("p.toml"),
        "[run]\nauto = false\n[params.dd-zero]\nduration = \"3s\"\n",
    )
    .unwrap();
    sb.cmd(&[
        "run",
        "--plan",
        "p.toml",
        "-t",
        "native",
        "-w",
        "dd-zero,cpu-int",
        "--reps",
        "3",
        "--discard",
        "0",
        "--duration",
        "200ms",
        "--deadline",
        "1500ms",
        "--out",
        "out",
    ])
    .timeout(std::time::Duration::from_secs(120))
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let discarded: Vec<bool> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["workload"] == "cpu-int")
        .map(|s| s["discarded"].as_bool().unwrap())
        .collect();
    assert_eq!(discarded, vec![true, false, true], "{j:#}");
    assert_eq!(j["targets"][0]["restarts"], 3, "{:#}", j["targets"]);
    let dnr = j["failures"].as_array().unwrap();
    assert_eq!(dnr.len(), 3);
    assert!(dnr.iter().all(|f| f["kind"] == "deadline"), "{dnr:#?}");
}

#[test]
fn under_auto_a_workload_too_slow_for_the_deadline_is_one_dnr_not_max_reps() {
    let sb = Sandbox::new();
    // dd-zero runs 3 s against a 1.5 s deadline and never gives a sample: one
    // DNR that says why, not eight deadlines and restarts; cpu-int goes on.
    std::fs::write(
        sb.path().join("p.toml"),
        "[params.dd-zero]\nduration = \"3s\"\n",
    )
    .unwrap();
    sb.cmd(&[
        "run",
        "--plan",
        "p.toml",
        "-t",
        "native",
        "-w",
        "dd-zero,cpu-int",
        "--duration",
        "200ms",
        "--deadline",
        "1500ms",
        "--out",
        "out",
    ])
    .timeout(std::time::Duration::from_secs(120))
    .assert()
    .success();
    let j = results_json(&sb.run_dir("out"));
    let dnr = j["failures"].as_array().unwrap();
    assert_eq!(dnr.len(), 1, "{dnr:#?}");
    assert_eq!(dnr[0]["workload"], "dd-zero");
    assert_eq!(dnr[0]["kind"], "deadline");
    let why = dnr[0]["message"].as_str().unwrap();
    assert!(
        why.contains("too slow here for the plan's deadline"),
        "{why}"
    );
    let samples = j["samples"].as_array().unwrap();
    assert!(samples.iter().all(|s| s["workload"] == "cpu-int"), "{j:#}");
    assert!(samples.len() >= 4, "{j:#}");
}

#[test]
fn plan_check_accepts_the_default_plan_and_refuses_out_of_range_parameters() {
    let sb = Sandbox::new();
    let text = String::from_utf8(
        sb.cmd(&["plan", "--print-default"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(sb.path().join("good.toml"), &text).unwrap();
    sb.cmd(&["plan", "--check", "good.toml"])
        .assert()
        .success()
        .stdout(predicates::str::contains("good.toml: valid"));
    std::fs::write(
        sb.path().join("bad.toml"),
        "[params.oltp]\ntransactions = 100000000000\n",
    )
    .unwrap();
    sb.cmd(&["plan", "--check", "bad.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "params.oltp: transactions = 100000000000 is out of range: give 1 to 10000000",
        ));
}
