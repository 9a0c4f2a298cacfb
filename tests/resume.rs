//! `virtmark run --resume RUN` after `kill -9` mid-run: the run completes with
//! every planned sample, each cell once, and the first attempt's leftovers gone.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{assert_nothing_left, results_json, samples_in, Sandbox};

#[test]
fn a_killed_run_resumes_to_complete_with_every_planned_sample() {
    let sb = Sandbox::new();
    let reg = sb.path().join("registry");
    let mut child = sb
        .background_run("native", "cpu-int,cpu-fp", "5", "200ms")
        .env("VIRTMARK_REGISTRY", &reg)
        .spawn()
        .expect("virtmark run");
    // Kill it once some samples are stored, before all are.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_dir = loop {
        let found = std::fs::read_dir(sb.path().join("out"))
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .map(|e| e.path())
            .filter(|d| samples_in(&d.join("samples.csv")) >= 3);
        if let Some(d) = found {
            break d;
        }
        assert!(Instant::now() < deadline, "the run stored no samples");
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let before = samples_in(&run_dir.join("samples.csv"));
    assert!(
        before < 10,
        "the run finished before it was killed ({before} samples)"
    );
    let run_id = run_dir.file_name().unwrap().to_string_lossy().into_owned();

    let out = sb
        .cmd(&["run", "--resume", &run_id])
        .env("VIRTMARK_REGISTRY", &reg)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{before} stored attempt(s) replayed")),
        "{stderr}"
    );

    let r = results_json(&run_dir);
    assert_eq!(r["status"], "complete");
    assert_eq!(r["run_id"], run_id.as_str());
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 10, "every planned sample");
    let cells: BTreeSet<(String, String, u64)> = samples
        .iter()
        .map(|s| {
            (
                s["target"].as_str().unwrap().to_string(),
                s["workload"].as_str().unwrap().to_string(),
                s["rep"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells.len(), 10, "each cell once");
    // The seeded rounds go on where they stopped: five rounds of two slots, each
    // slot once, and each round holds one repetition of each workload.
    let mut slots: Vec<(u64, u64, String)> = samples
        .iter()
        .map(|s| {
            (
                s["position"]["round"].as_u64().unwrap(),
                s["position"]["slot"].as_u64().unwrap(),
                s["workload"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    slots.sort();
    for (i, (round, slot, _)) in slots.iter().enumerate() {
        assert_eq!(
            (*round, *slot),
            ((i / 2) as u64, (i % 2) as u64),
            "{slots:?}"
        );
    }
    for pair in slots.chunks(2) {
        assert_ne!(pair[0].2, pair[1].2, "{slots:?}");
    }
    for s in samples {
        assert_eq!(s["discarded"].as_bool().unwrap(), s["rep"] == 0, "{s}");
    }
    // Statistics over all ten samples: four kept per workload, for the headline
    // (in this run not every sample carried every operation count: left open).
    for res in r["results"].as_array().unwrap() {
        if res["headline"] == true {
            assert_eq!(res["n"], 4, "{res}");
        }
    }
    assert_eq!(samples_in(&run_dir.join("samples.csv")), 10);
    // Resuming a complete run is refused.
    sb.cmd(&["run", "--resume", &run_id])
        .env("VIRTMARK_REGISTRY", &reg)
        .assert()
        .code(2);
    assert_nothing_left(&run_id);
}
