//! `virtmark detect` against reality: its JSON on this host, agreement with
//! virt-what (where installed and run as root), and the same inside gVisor
//! (`runsc do`) and User-Mode Linux (`linux` with the host's root over hostfs)
//! (with virtmark's FP-state mediator preloaded, as the `uml` target starts it).
//! Missing tools or privileges fail with the reason; gVisor and UML are skipped
//! only when `VIRTMARK_SKIP_TARGETS` names them.

mod common;

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;
use virtmark::fingerprint::{Fingerprint, Kind};

/// virt-what facts that qualify a technology rather than name one.
const QUALIFIERS: &[&str] = &[
    "xen-hvm",
    "xen-dom0",
    "xen-domU",
    "aws",
    "google_cloud",
    "redhat",
    "rhev",
    "ovirt",
    "nutanix_ahv",
    "alibaba_cloud",
    "alibaba_cloud-ebm",
    "linux_vserver-host",
    "linux_vserver-guest",
    "ldoms-control",
    "ldoms-guest",
    "ldoms-root",
    "ldoms-io",
];

/// Technologies we report that virt-what has no name for.
const BEYOND_VIRT_WHAT: &[&str] = &[
    "gvisor",
    "virtmark-ns",
    "oci",
    "namespaces",
    "kubernetes",
    "systemd-nspawn",
    "unknown",
];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file())
    })
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_virtmark")
}

fn detect_json() -> Fingerprint {
    let out = Command::new(bin())
        .args(["detect", "--json"])
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("detect --json prints a Fingerprint")
}

/// Check one environment's layers against virt-what's facts there.
fn check_agreement(fp: &Fingerprint, facts: &[String], where_: &str) {
    let ours: Vec<&str> = fp.layers.iter().map(|l| l.technology.as_str()).collect();
    eprintln!(
        "{where_}: virt-what {facts:?}; virtmark layers {ours:?}, verdict {:?}",
        fp.verdict
    );
    for fact in facts {
        if QUALIFIERS.contains(&fact.as_str()) {
            continue;
        }
        assert!(
            ours.contains(&fact.as_str()),
            "{where_}: virt-what says {fact:?}, virtmark's layers are {ours:?}"
        );
    }
    if !facts.is_empty() {
        let v = fp.verdict.technology.as_str();
        assert!(
            facts.iter().any(|f| f == v) || BEYOND_VIRT_WHAT.contains(&v),
            "{where_}: verdict {v:?} is none of virt-what's {facts:?}"
        );
    } else if fp.verdict.kind != Kind::None {
        // virt-what silent: we may only say more with something it cannot see.
        assert!(
            BEYOND_VIRT_WHAT.contains(&fp.verdict.technology.as_str())
                || fp
                    .layers
                    .iter()
                    .any(|l| l.kind == Kind::Vm || l.kind == Kind::Container),
            "{where_}: verdict {:?} where virt-what sees nothing",
            fp.verdict
        );
    }
}

fn facts(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn detect_json_is_a_complete_fingerprint() {
    let fp = detect_json();
    assert!(!fp.kernel.is_empty());
    assert!(fp.cpus >= 1);
    assert!(fp.cpu.online >= 1);
    assert!(fp.memory.total > 0);
    assert_eq!(fp.memory.total, fp.memory_bytes);
    assert_eq!(fp.virtualization, fp.verdict.technology);
    assert_ne!(fp.verdict.kind, Kind::Unknown);
    for l in &fp.layers {
        assert!(!l.technology.is_empty());
        assert!(
            !l.evidence.is_empty(),
            "layer {} has no evidence",
            l.technology
        );
    }
    if fp.cpu.hypervisor_bit {
        assert!(!fp.layers.is_empty(), "hypervisor bit set but no layer");
    }
}

#[test]
fn detect_prints_a_readable_summary() {
    Command::new(bin())
        .arg("detect")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicates::str::contains("verdict"))
        .stdout(predicates::str::contains("kernel"))
        .stdout(predicates::str::contains("cgroup"));
}

#[test]
fn detect_agrees_with_virt_what_on_this_host() {
    assert!(
        which("virt-what"),
        "virt-what is not installed (Debian package virt-what; scripts/setup.sh installs it)"
    );
    assert!(is_root(), "virt-what must run as root, as CI does");
    let out = StdCommand::new("virt-what")
        .output()
        .expect("virt-what runs");
    assert!(out.status.success(), "virt-what failed: {out:?}");
    check_agreement(
        &detect_json(),
        &facts(&String::from_utf8_lossy(&out.stdout)),
        "host",
    );
}

/// Run a shell script inside gVisor's `runsc do` (the host's root, read-only
/// overlay), returning stdout.
fn in_gvisor(script: &str) -> String {
    assert!(
        which("runsc") && is_root(),
        "needs runsc (Debian package runsc) and root"
    );
    let out = Command::new("runsc")
        .args(["--network=none", "do", "sh", "-c", script])
        .current_dir(std::env::temp_dir())
        .timeout(Duration::from_secs(120))
        .output()
        .expect("runsc runs");
    assert!(
        out.status.success(),
        "runsc do failed here: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn detect_inside_gvisor_says_gvisor_and_agrees_with_virt_what() {
    let with_vw = which("virt-what");
    let script = format!(
        "{} detect --json; echo '=====' ; {}",
        bin(),
        if with_vw { "virt-what" } else { "true" }
    );
    if common::skip_allowed("gvisor") {
        return;
    }
    let out = in_gvisor(&script);
    let (json, vw) = out.split_once("=====").expect("marker line");
    let fp: Fingerprint = serde_json::from_str(json).expect("fingerprint JSON from gVisor");
    assert_eq!(fp.verdict.kind, Kind::Sandbox);
    assert_eq!(fp.verdict.technology, "gvisor");
    if with_vw {
        check_agreement(&fp, &facts(vw), "gvisor");
    }
}

#[test]
fn detect_inside_uml_says_uml_and_agrees_with_virt_what() {
    if common::skip_allowed("uml") {
        return;
    }
    assert!(
        which("linux") && is_root() && Path::new("/dev/shm").is_dir(),
        "needs User-Mode Linux (`linux`, Debian package user-mode-linux), root and /dev/shm"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let init = dir.path().join("init.sh");
    let with_vw = which("virt-what");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sys /sys\n\
             echo '<<<<<'\n{} detect --json\necho '====='\n{}\necho '>>>>>'\n\
             echo o > /proc/sysrq-trigger\n",
            bin(),
            if with_vw { "virt-what" } else { "true" }
        ),
    )
    .expect("write init");
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod init");
    // UML's console is our stdin/stdout; stdin must be /dev/null, not a pipe that
    // reaches end of file (the console would close). `timeout` bounds the boot.
    let shim = virtmark::targets::uml::fpshim().expect("the UML FP-state mediator");
    let out = StdCommand::new("timeout")
        .env("LD_PRELOAD", shim)
        .args(["120", "linux"])
        .args([
            "mem=256M",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            "quiet",
            &format!("init={}", init.display()),
            "con=null",
            "con0=fd:0,fd:1",
        ])
        // UML's pid and mconsole files go to the temporary directory, not ~/.uml.
        .arg(format!("uml_dir={}", dir.path().display()))
        .arg("umid=virtmark-detect-test")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("linux runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(body) = text
        .split_once("<<<<<")
        .and_then(|(_, rest)| rest.split_once(">>>>>"))
        .map(|(b, _)| b)
    else {
        panic!(
            "UML did not run the init script: {}",
            text.chars().take(2000).collect::<String>()
        );
    };
    let (json, vw) = body.split_once("=====").expect("marker line");
    let fp: Fingerprint = serde_json::from_str(json.trim()).expect("fingerprint JSON from UML");
    assert_eq!(fp.verdict.kind, Kind::Paravirt);
    assert_eq!(fp.verdict.technology, "uml");
    if with_vw {
        check_agreement(&fp, &facts(vw), "uml");
    }
}
