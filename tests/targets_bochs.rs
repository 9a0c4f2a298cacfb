//! `bochs` for real: the qemu guest's kernel and initramfs booted by Bochs
//! from a disk image virtmark builds, one CPU workload end to end with a
//! positive result and a recorded start-up, and nothing of the run left behind
//! — after a normal run, and after SIGKILL of virtmark plus `virtmark cleanup`
//! (Bochs, its network namespace, the boot image).
//!
//! Each boot costs about 20–40 s of wall time here (an interpreter running the
//! BIOS, SYSLINUX and a whole kernel boot), so the guests get 256 MiB (less
//! memory for the kernel to set up) and the workload runs once, 300 ms of guest
//! time — which is emulated time, and took 80–150 s of host time here (see
//! docs/targets.md, Bochs); the run gets 10 minutes on a busy machine.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn bochs_runs_cpu_int_and_leaves_nothing() {
    if common::skip_or_require("bochs") {
        return;
    }
    let sb = common::Sandbox::new();
    let out = sb
        .cmd(&[
            "run",
            "-t",
            "bochs",
            "-w",
            "cpu-int",
            "--reps",
            "1",
            "--discard",
            "0",
            "--duration",
            "300ms",
            "--memory",
            "256MiB",
            "--out",
            "out",
        ])
        .timeout(Duration::from_secs(600))
        .output()
        .expect("virtmark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = common::results_json(&sb.run_dir("out"));
    assert_eq!(r["failures"].as_array().map(Vec::len), Some(0), "{r:#}");
    let samples = r["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 1, "{r:#}");
    assert!(
        samples
            .iter()
            .all(|s| s["target"] == "bochs" && s["metrics"][0]["value"].as_f64() > Some(0.0)),
        "{r:#}"
    );
    let t = &r["targets"][0];
    assert_eq!(t["name"], "bochs");
    assert!(t["startup_s"].as_f64().is_some_and(|s| s > 0.0), "{t:#}");
    // The guest sees Bochs's PC: its BIOS, one CPU, the memory asked for.
    let fp = &t["fingerprint"];
    assert_eq!(fp["dmi"]["bios_vendor"], "The Bochs Project", "{fp:#}");
    assert_eq!(fp["cpus"], 1, "{fp:#}");
    let mem = fp["memory_bytes"].as_u64().expect("memory");
    assert!(mem > 128 << 20 && mem <= 256 << 20, "{fp:#}");
    common::assert_nothing_left(r["run_id"].as_str().expect("run id"));
}

#[test]
fn bochs_killed_then_cleaned_up() {
    if common::skip_or_require("bochs") {
        return;
    }
    let sb = common::Sandbox::new();
    let mut child = sb
        .background_run("bochs", "cpu-int", "4", "2s")
        .arg("--memory")
        .arg("256MiB")
        .spawn()
        .expect("virtmark run");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Killed once Bochs runs (its process is in the ledger), mid-boot.
    let ledger: PathBuf = loop {
        let found = std::fs::read_dir(sb.path().join("out"))
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("ledger.jsonl"))
            .filter(|l| {
                std::fs::read_to_string(l).is_ok_and(|t| t.contains("\"kind\":\"process\""))
            });
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "bochs never started");
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
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    common::assert_nothing_left(&run_id);
    // No Bochs of this run survives (its processes are in the ledger too).
    let text = std::fs::read_to_string(&ledger).expect("ledger");
    for line in text.lines().filter(|l| l.contains("\"kind\":\"process\"")) {
        let v: serde_json::Value = serde_json::from_str(line).expect("ledger line");
        let pid = v["pid"].as_i64().expect("pid");
        // Killed, it may take a moment to exit (its guest memory unmapped) and
        // be reaped; a zombie runs nothing.
        let t = Instant::now();
        let running = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim() == "bochs-bin"
                && !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        };
        while running() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!running(), "bochs {pid} survived cleanup");
    }
}
