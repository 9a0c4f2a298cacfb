//! `virtmark taxonomy` and `virtmark recommend` through the real binary: the
//! survey's own conclusions as flows, with measurements from runs stored in a
//! temporary results database the way `virtmark run` stores them (made-up test
//! fixtures, see `virtmark::recommend::fixtures`), and one real short run.

mod common;

use common::Sandbox;
use serde_json::Value;
use virtmark::recommend::fixtures;

fn recommend_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["recommend", "--json"];
    all.extend_from_slice(args);
    let out = sb.cmd(&all).assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).expect("recommend --json prints JSON")
}

fn ranking(v: &Value) -> &Vec<Value> {
    v["ranking"].as_array().expect("ranking")
}

fn classes(v: &Value) -> Vec<String> {
    ranking(v)
        .iter()
        .map(|r| r["class"].as_str().unwrap().to_string())
        .collect()
}

fn entry<'a>(v: &'a Value, id: &str) -> &'a Value {
    ranking(v)
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not ranked: {v:#}"))
}

fn rank(v: &Value, id: &str) -> u64 {
    entry(v, id)["rank"].as_u64().unwrap()
}

fn reasons(v: &Value, id: &str) -> String {
    entry(v, id)["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn taxonomy_lists_every_class_of_the_survey_and_at_least_20_solutions() {
    let sb = Sandbox::new();
    let svg = sb.path().join("taxonomy.svg");
    let out = sb
        .cmd(&["taxonomy", "--svg", svg.to_str().unwrap()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for class in [
        "emulation",
        "native (full) virtualization",
        "hardware-assisted virtualization",
        "paravirtualization",
        "OS-level virtualization",
        "resource virtualization",
        "application virtualization",
        "application-level sandbox",
    ] {
        assert!(text.contains(&format!("── {class}  (")), "{class}:\n{text}");
    }
    let solutions = text.lines().filter(|l| l.contains("  [")).count();
    assert!(solutions >= 20, "{solutions} solutions:\n{text}");
    let figure = std::fs::read_to_string(&svg).unwrap();
    assert!(figure.starts_with("<svg") && figure.contains("Firecracker"));
}

#[test]
fn a_closed_guest_os_leaves_only_native_hardware_assisted_and_emulation() {
    let sb = Sandbox::new();
    let v = recommend_json(&sb, &["--need", "guest-os=windows"]);
    let cs = classes(&v);
    assert!(!cs.is_empty(), "{v:#}");
    for c in &cs {
        assert!(
            ["native", "hardware-assisted", "emulation"].contains(&c.as_str()),
            "{c} left for a windows guest: {v:#}"
        );
    }
    for c in ["native", "hardware-assisted", "emulation"] {
        assert!(cs.iter().any(|x| x == c), "no {c} left: {v:#}");
    }
    let gvisor = v["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "gvisor")
        .expect("gvisor excluded");
    assert!(gvisor["reasons"][0].as_str().unwrap().contains("guest OS"));
}

#[test]
fn a_cross_architecture_guest_leaves_only_emulation() {
    let sb = Sandbox::new();
    let v = recommend_json(&sb, &["--need", "cross-arch"]);
    let cs = classes(&v);
    assert!(!cs.is_empty(), "{v:#}");
    assert!(cs.iter().all(|c| c == "emulation"), "{cs:?}");
}

#[test]
fn trusted_linux_services_at_maximum_density_lead_to_os_level() {
    let sb = Sandbox::new();
    let v = recommend_json(
        &sb,
        &[
            "--need",
            "guest-os=linux,density=high",
            "--profile",
            "mixed",
        ],
    );
    let cs = classes(&v);
    assert!(!cs.is_empty(), "{v:#}");
    assert!(cs.iter().all(|c| c == "os-level"), "{cs:?}");
    // The path records the density decision and what it excluded.
    let density = v["path"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node"] == "density")
        .unwrap();
    assert_eq!(density["applied"], true);
    assert!(density["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "firecracker"));
}

#[test]
fn untrusted_syscall_heavy_tenants_rank_a_hypervisor_above_a_slow_gvisor() {
    let sb = Sandbox::new();
    let run = fixtures::run(
        "fixture-gvisor-rr",
        "fixture-host",
        &[("gvisor", "net-rr", 0.18)],
    );
    fixtures::store(&sb.db(), &run, sb.path()).unwrap();
    let v = recommend_json(
        &sb,
        &[
            "--need",
            "isolation=user-kernel",
            "--profile",
            "network",
            "--from",
            "fixture-gvisor-rr",
        ],
    );
    assert_eq!(v["run_id"], "fixture-gvisor-rr");
    let g = entry(&v, "gvisor");
    assert_eq!(g["cost"]["measured"], true);
    let ratio = g["cost"]["value"].as_f64().unwrap();
    assert!((ratio - 0.18).abs() < 0.005, "{ratio}");
    assert!(reasons(&v, "gvisor").contains("net-rr 0.18×"), "{v:#}");
    let gr = rank(&v, "gvisor");
    let above: Vec<&Value> = ranking(&v)
        .iter()
        .filter(|r| {
            ["hardware-assisted", "native", "paravirtualization"]
                .contains(&r["class"].as_str().unwrap())
                && r["rank"].as_u64().unwrap() < gr
        })
        .collect();
    assert!(
        !above.is_empty(),
        "no hypervisor-class solution above gVisor: {v:#}"
    );
    let kvm = reasons(&v, "qemu-kvm");
    assert!(rank(&v, "qemu-kvm") < gr, "{v:#}");
    assert!(
        kvm.contains("gVisor measured 0.18×")
            && kvm.contains("net-rr 0.18×")
            && kvm.contains("fixture-gvisor-rr"),
        "{kvm}"
    );
    // Shared-kernel solutions were excluded by the isolation requirement.
    assert!(!classes(&v).iter().any(|c| c == "os-level"));
}

#[test]
fn a_stored_run_ranks_by_its_measured_ratios_and_cites_them() {
    let sb = Sandbox::new();
    let run = fixtures::run(
        "fixture-net",
        "fixture-host",
        &[
            ("ns", "net-rr", 0.98),
            ("gvisor", "net-rr", 0.30),
            ("qemu:tcg", "net-rr", 0.05),
            ("ns", "cpu-int", 1.0),
        ],
    );
    fixtures::store(&sb.db(), &run, sb.path()).unwrap();
    let v = recommend_json(&sb, &["--profile", "network", "--from", "fixture-net"]);
    let (ns, g, q) = (
        rank(&v, "linux-ns"),
        rank(&v, "gvisor"),
        rank(&v, "qemu-tcg"),
    );
    // ns's cost stands clear of both; gVisor's and qemu:tcg's net-rr (about
    // 0.02x and 0.006x here) can have overlapping intervals on a busy machine,
    // and overlapping intervals are shown tied (same rank), never reversed.
    assert!(ns < g && ns < q, "ns {ns}, gvisor {g}, qemu:tcg {q}: {v:#}");
    assert!(g <= q, "gvisor {g} below qemu:tcg {q}: {v:#}");
    let cost = |id: &str| {
        ranking(&v)
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["cost"]["value"].as_f64())
            .unwrap_or_else(|| panic!("{id}: no measured cost: {v:#}"))
    };
    assert!(
        cost("gvisor") > cost("qemu-tcg"),
        "gvisor's measured cost is not above qemu:tcg's: {v:#}"
    );
    for (id, ratio) in [
        ("linux-ns", "0.98×"),
        ("gvisor", "0.30×"),
        ("qemu-tcg", "0.050×"),
    ] {
        let r = reasons(&v, id);
        assert!(
            r.contains(&format!("net-rr {ratio}")) && r.contains("(run fixture-net)"),
            "{r}"
        );
    }
    // Only the profile's workloads count: cpu-int is not evidence for `network`.
    assert!(!reasons(&v, "linux-ns").contains("cpu-int"));
    // The same as text: the ranked table and the evidence with the run id.
    let out = sb
        .cmd(&["recommend", "--profile", "network", "--from", "fixture-net"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Evidence") && text.contains("fixture-net"),
        "{text}"
    );
}

#[test]
fn profile_from_a_run_weights_by_the_workloads_it_measured() {
    let sb = Sandbox::new();
    let run = fixtures::run(
        "fixture-mine",
        "fixture-host",
        &[("gvisor", "dd-zero", 0.01), ("gvisor", "cpu-int", 0.97)],
    );
    fixtures::store(&sb.db(), &run, sb.path()).unwrap();
    let v = recommend_json(
        &sb,
        &["--profile-from", "fixture-mine", "--from", "fixture-mine"],
    );
    let ws: Vec<&str> = v["profile"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(ws, ["dd-zero", "cpu-int"]);
    let g = entry(&v, "gvisor")["cost"]["value"].as_f64().unwrap();
    // Geometric mean of 0.01 and 0.97.
    assert!((g - (0.01f64 * 0.97).sqrt()).abs() < 0.002, "{g}");
    sb.cmd(&[
        "recommend",
        "--profile",
        "network",
        "--profile-from",
        "fixture-mine",
    ])
    .assert()
    .code(2);
}

#[test]
fn the_newest_run_of_this_host_is_the_default_evidence() {
    let sb = Sandbox::new();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let mut other = fixtures::run(
        "fixture-elsewhere",
        "another-host",
        &[("gvisor", "net-rr", 0.9)],
    );
    other.started = "2026-12-01T00:00:00Z".into();
    fixtures::store(&sb.db(), &other, sb.path()).unwrap();
    let mine = fixtures::run("fixture-here", &host, &[("gvisor", "net-rr", 0.2)]);
    fixtures::store(&sb.db(), &mine, sb.path()).unwrap();
    let v = recommend_json(&sb, &["--profile", "network"]);
    assert_eq!(v["run_id"], "fixture-here", "{v:#}");
}

#[test]
fn overlapping_intervals_are_shown_as_tied() {
    let sb = Sandbox::new();
    let run = fixtures::run(
        "fixture-tie",
        "fixture-host",
        &[
            ("oci:crun", "cpu-int", 0.99),
            ("oci:runc", "cpu-int", 0.995),
        ],
    );
    fixtures::store(&sb.db(), &run, sb.path()).unwrap();
    let v = recommend_json(&sb, &["--profile", "cpu", "--from", "fixture-tie"]);
    assert_eq!(rank(&v, "crun"), rank(&v, "docker-runc"), "{v:#}");
    assert_eq!(entry(&v, "crun")["tied"], true);
    assert!(reasons(&v, "crun").contains("tied with"));
}

#[test]
fn bad_requirements_are_user_errors_that_say_what_is_accepted() {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&["recommend", "--need", "isolation=steel"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let e = String::from_utf8(out).unwrap();
    assert!(e.contains("steel") && e.contains("hypervisor"), "{e}");
    let file = sb.path().join("needs.toml");
    std::fs::write(&file, "guest-os = \"windows\"\nprofile = \"disk\"\n").unwrap();
    let v = recommend_json(&sb, &["--requirements", file.to_str().unwrap()]);
    assert_eq!(v["profile"]["name"], "disk");
    assert!(classes(&v).iter().all(|c| c != "os-level"));
    std::fs::write(&file, "guest_os = \"windows\"\n").unwrap();
    sb.cmd(&["recommend", "--requirements", file.to_str().unwrap()])
        .assert()
        .code(2);
}

#[test]
fn a_real_short_run_ranks_ns_above_gvisor_above_qemu_tcg_for_network() {
    let targets = ["ns", "gvisor", "qemu:tcg"];
    if targets.iter().any(|t| common::skip_allowed(t)) {
        return;
    }
    common::require_root();
    for t in targets {
        common::require_target(t);
    }
    let sb = Sandbox::new();
    sb.cmd(&[
        "run",
        "-t",
        "native,ns,gvisor,qemu:tcg",
        "-w",
        "net-rr,cpu-int",
        "--reps",
        "5",
        "--duration",
        "1s",
        "--out",
        "out",
    ])
    .timeout(std::time::Duration::from_secs(600))
    .assert()
    .success();
    let dir = sb.run_dir("out");
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    let v = recommend_json(&sb, &["--profile", "network", "--from", &id]);
    let (ns, g, q) = (
        rank(&v, "linux-ns"),
        rank(&v, "gvisor"),
        rank(&v, "qemu-tcg"),
    );
    eprintln!(
        "{}",
        ranking(&v)
            .iter()
            .filter(|r| r["cost"]["measured"] == true)
            .map(|r| format!(
                "{} rank {} {:.3} [{:.3}-{:.3}]",
                r["id"],
                r["rank"],
                r["cost"]["value"].as_f64().unwrap(),
                r["cost"]["low"].as_f64().unwrap(),
                r["cost"]["high"].as_f64().unwrap()
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // ns's cost stands clear of both; gVisor's and qemu:tcg's net-rr (about
    // 0.02x and 0.006x here) can have overlapping intervals on a busy machine,
    // and overlapping intervals are shown tied (same rank), never reversed.
    assert!(ns < g && ns < q, "ns {ns}, gvisor {g}, qemu:tcg {q}: {v:#}");
    assert!(g <= q, "gvisor {g} below qemu:tcg {q}: {v:#}");
    let cost = |id: &str| {
        ranking(&v)
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["cost"]["value"].as_f64())
            .unwrap_or_else(|| panic!("{id}: no measured cost: {v:#}"))
    };
    assert!(
        cost("gvisor") > cost("qemu-tcg"),
        "gvisor's measured cost is not above qemu:tcg's: {v:#}"
    );
    for target in ["linux-ns", "gvisor", "qemu-tcg"] {
        let r = reasons(&v, target);
        assert!(
            r.contains("net-rr ") && r.contains(&format!("(run {id})")),
            "{r}"
        );
    }
}
