//! `bochs` for real: the qemu guest's kernel and initramfs booted by Bochs
//! from a disk image virtmark builds, one CPU workload end to end with a
//! positive result and a recorded start-up, and nothing of the run left behind
//! — after a normal run, and after SIGKILL of virtmark plus `virtmark cleanup`
//! (Bochs, its network namespace, the boot image).
//!
//! Each boot costs about 15–25 s of wall time here (an interpreter running the
//! BIOS, SYSLINUX and a whole kernel boot), so the guests get 256 MiB (less
//! memory for the kernel to set up) and the workload runs once, for its
//! shortest duration. The guest's clock must follow host time (see
//! docs/targets.md, Bochs): the sample's own elapsed time is checked against
//! the host's wall time of the run.

mod common;

use std::time::{Duration, Instant};

#[test]
fn bochs_runs_cpu_int_and_leaves_nothing() {
    if common::skip_or_require("bochs") {
        return;
    }
    let sb = common::Sandbox::new();
    // skip_or_require proved the target (its verification boot is cached), so
    // this run's wall time is its own boot, the sample and the teardown.
    let t0 = Instant::now();
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
        .timeout(Duration::from_secs(180))
        .output()
        .expect("virtmark runs");
    let wall_s = t0.elapsed().as_secs_f64();
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
    // Host time, not emulated time: the guest timed its sample with a clock
    // that neither runs ahead of the host's (the sample fits in what the host
    // saw after the hello) nor behind it (before the fix, 1 s of guest time took
    // 158 s of host time; what the host spends besides the boot and the sample
    // is the fingerprint, the shutdown and the report).
    let elapsed = samples[0]["elapsed_s"].as_f64().expect("elapsed_s");
    let startup = t["startup_s"].as_f64().expect("startup_s");
    assert!(
        elapsed <= wall_s - startup + 0.5,
        "the guest's clock ran ahead: sample {elapsed} s, run {wall_s} s, start-up {startup} s"
    );
    assert!(
        wall_s - startup - elapsed < 30.0,
        "the guest's clock ran behind: sample {elapsed} s, run {wall_s} s, start-up {startup} s"
    );
    let fp = &t["fingerprint"];
    assert_eq!(fp["clocksource"], "jiffies", "{fp:#}");
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
    // Killed once Bochs runs (its process is in the ledger), mid-boot.
    let text = common::killed_mid_run_then_cleaned_up(
        "bochs",
        "cpu-int",
        &["--memory", "256MiB"],
        "\"kind\":\"process\"",
        Duration::from_secs(60),
    );
    // No Bochs of this run survives (its processes are in the ledger too).
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
