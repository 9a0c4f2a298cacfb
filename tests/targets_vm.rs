//! The VM targets for real: UML and QEMU (TCG) boot, run dd-zero through
//! `virtmark run`, report the right fingerprint, and leave nothing behind — after
//! a normal run and after SIGKILL of virtmark followed by `virtmark cleanup`.
//! `qemu:kvm` on a host whose KVM cannot boot a guest fails with a clear message
//! (exit 2), and `qemu` falls back to TCG.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{results_json, Sandbox};

/// Everything of run `run_id` (target tag suffix `tag`) still present on the host.
fn leftovers(run_id: &str, tags: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    let short = &run_id[run_id.len() - 4..];
    for t in tags {
        let tag = format!("{short}{t}");
        let ns = format!("/run/netns/virtmark-{tag}-p");
        if Path::new(&ns).exists() {
            left.push(format!("netns {ns}"));
        }
        for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
            let cg = Path::new(base).join(format!("virtmark-{tag}"));
            if cg.exists() {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    for p in common::scratch_roots(run_id) {
        left.push(format!("scratch {}", p.display()));
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(run_id)) {
        left.push(format!("mount {l}"));
    }
    // Processes: anything whose command line names the run (scratch paths,
    // umid) — the VM, UML's helpers, the peer.
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let names_run = cmd.contains(&format!("virtmark-{run_id}"))
                || tags
                    .iter()
                    .any(|t| cmd.contains(&format!("umid=virtmark-{short}{t}")));
            if names_run && pid != std::process::id() {
                left.push(format!("process {pid}: {cmd}"));
            }
        }
    }
    left
}

fn wait_gone(run_id: &str, tags: &[&str]) -> Vec<String> {
    // Processes killed by SIGKILL may take a moment to be reaped by init.
    let t = Instant::now();
    loop {
        let l = leftovers(run_id, tags);
        if l.is_empty() || t.elapsed() > Duration::from_secs(5) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as u64
}

/// `virtmark run -t target -w dd-zero`, checked; returns (results.json, stderr).
fn run_dd(target: &str, reps: &str) -> (serde_json::Value, String) {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&[
            "run",
            "-t",
            target,
            "-w",
            "dd-zero",
            "--reps",
            reps,
            "--discard",
            "0",
            "--duration",
            "200ms",
            "--out",
            "out",
        ])
        .timeout(Duration::from_secs(240))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{target}: {stderr}");
    let j = results_json(&sb.run_dir("out"));
    (j, stderr)
}

fn check_run(j: &serde_json::Value, target: &str, technology: &str, cpus: u64) {
    let samples: Vec<&serde_json::Value> = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["target"] == target)
        .collect();
    assert!(!samples.is_empty(), "{target}: no samples: {j:#}");
    for s in &samples {
        assert!(s["metrics"][0]["value"].as_f64().unwrap() > 0.0, "{s}");
    }
    let t = j["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .expect("target record");
    let fp = &t["fingerprint"];
    assert_eq!(fp["verdict"]["technology"], technology, "{fp:#}");
    assert_eq!(fp["cpus"].as_u64(), Some(cpus), "{fp:#}");
    // The guest sees its 2 GiB less what the kernel keeps.
    let mem = fp["memory_bytes"].as_u64().unwrap();
    assert!(
        mem > (3 << 30) / 2 && mem <= 2 << 30,
        "{target}: guest memory {mem}"
    );
    let startup = t["startup_s"].as_f64().unwrap();
    assert!(
        startup > 0.0 && startup < 60.0,
        "{target}: startup {startup}"
    );
    eprintln!("{target}: startup {startup:.2} s");
}

#[test]
fn uml_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("uml") {
        return;
    }
    let (j, _) = run_dd("uml", "2");
    // Debian's UML kernel is uniprocessor.
    check_run(&j, "uml", "uml", 1);
    let run_id = j["run_id"].as_str().unwrap();
    let left = wait_gone(run_id, &["uml"]);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn qemu_tcg_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("qemu:tcg") {
        return;
    }
    let (j, _) = run_dd("qemu:tcg", "2");
    check_run(&j, "qemu:tcg", "qemu", host_cpus());
    let run_id = j["run_id"].as_str().unwrap();
    let left = wait_gone(run_id, &["qemu"]);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn debians_cloud_kernel_comes_out_of_its_bzimage_with_a_pvh_entry() {
    if common::skip_allowed("qemu:tcg") {
        return;
    }
    let kernel = virtmark::targets::qemu::kernel()
        .unwrap_or_else(|why| panic!("the QEMU guest kernel is expected here: {why}"));
    let vmlinux = virtmark::targets::pvh::vmlinux(&kernel)
        .unwrap()
        .unwrap_or_else(|why| panic!("{}: {why}", kernel.display()));
    let elf = std::fs::read(&vmlinux).unwrap();
    assert!(virtmark::targets::pvh::has_pvh_entry(&elf));
    // Much larger than the compressed image; the second call is the cached file.
    assert!(elf.len() as u64 > 2 * std::fs::metadata(&kernel).unwrap().len());
    let again = virtmark::targets::pvh::vmlinux(&kernel).unwrap().unwrap();
    assert_eq!(again, vmlinux);
}

/// Start a long run of `workload`, SIGKILL virtmark once the VM serves, then
/// `virtmark cleanup`.
fn kill_then_cleanup(target: &str, workload: &str, tag: &str) {
    let sb = Sandbox::new();
    let mut child = sb
        .background_run(target, workload, "200", "200ms")
        .spawn()
        .unwrap();
    // Wait until a sample is stored: the VM is up and serving.
    let t = Instant::now();
    let run_dir = loop {
        let parent = sb.path().join("out");
        let dir = std::fs::read_dir(&parent)
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        if let Some(d) = dir {
            // samples.csv: a header, then a row per metric of each sample.
            let samples = std::fs::read_to_string(d.join("samples.csv")).unwrap_or_default();
            if samples.lines().count() >= 2 {
                break d;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{target}: no sample within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let run_id = run_dir.file_name().unwrap().to_string_lossy().to_string();
    let ledger = std::fs::read_to_string(run_dir.join("ledger.jsonl")).unwrap();
    // Cleaned up before anything is asserted, so a failing test leaves nothing.
    let out = sb.cmd(&["cleanup"]).output().unwrap();
    assert!(ledger.contains("\"netns\""), "{ledger}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = wait_gone(&run_id, &[tag]);
    assert!(left.is_empty(), "{target}: left behind: {left:#?}");
}

#[test]
fn uml_killed_mid_run_is_cleaned_up() {
    if common::skip_or_require("uml") {
        return;
    }
    kill_then_cleanup("uml", "dd-zero", "uml");
}

#[test]
fn qemu_tcg_killed_mid_run_is_cleaned_up() {
    if common::skip_or_require("qemu:tcg") {
        return;
    }
    // A network workload: the tap, its namespace and the peer are made too.
    kill_then_cleanup("qemu:tcg", "net-rr", "qemu");
}

#[test]
fn qemu_kvm_fails_clearly_where_kvm_cannot_boot_and_qemu_falls_back_to_tcg() {
    if common::skip_or_require("qemu:tcg") {
        return;
    }
    let verdict = Command::new(env!("CARGO_BIN_EXE_virtmark"))
        .args(["targets", "--json", "qemu:kvm"])
        .output()
        .unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&verdict.stdout).unwrap();
    if verdict[0]["available"] == true {
        // A host whose KVM boots guests: `qemu` takes it, and says nothing of TCG.
        assert!(!Path::new("/sys/module/kvm_pvm").exists(), "{verdict}");
        let (j, stderr) = run_dd("qemu", "1");
        assert!(!stderr.contains("using TCG"), "{stderr}");
        assert!(j["targets"].is_array() || j["targets"].is_object(), "{j:#}");
        return;
    }
    let why = verdict[0]["reason"].as_str().unwrap().to_string();
    let sb = Sandbox::new();
    let out = sb
        .cmd(&[
            "run",
            "-t",
            "qemu:kvm",
            "-w",
            "dd-zero",
            "--reps",
            "1",
            "--discard",
            "0",
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("qemu:kvm") && err.contains(&why), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");

    let (j, stderr) = run_dd("qemu", "1");
    assert!(
        stderr.contains(&format!("qemu: using TCG: {why}")),
        "{stderr}"
    );
    check_run(&j, "qemu", "qemu", host_cpus());
}

#[test]
fn build_compiles_with_the_hosts_toolchain_in_uml_and_qemu() {
    let targets: Vec<&str> = ["uml", "qemu:tcg"]
        .into_iter()
        .filter(|t| !common::skip_or_require(t))
        .collect();
    common::build_runs_in(&targets, Duration::from_secs(600));
}
