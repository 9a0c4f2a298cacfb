//! `nspawn` for real: systemd-nspawn (`--register=no --keep-unit`, no systemd
//! as PID 1 here) runs one workload end to end with a positive result, the
//! instance's limits visible inside, and nothing of the run is left behind —
//! after a normal run, and after SIGKILL of virtmark plus `virtmark cleanup`.

mod common;

use std::time::Duration;

/// nspawn's per-machine state stays in its own `/run`.
fn no_machine_state_on_the_host() {
    let left: Vec<String> = std::fs::read_dir("/run/systemd/nspawn/propagate")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("virtmark-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "nspawn state left on the host: {left:?}");
}

#[test]
fn nspawn_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("nspawn") {
        return;
    }
    let r = common::one_workload_leaves_nothing("nspawn", "dd-zero", Duration::from_secs(60));
    let fp = &r["targets"][0]["fingerprint"];
    assert_eq!(
        fp["memory"]["cgroup_limit"].as_u64(),
        Some(2u64 << 30),
        "{fp:#}"
    );
    no_machine_state_on_the_host();
}

#[test]
fn nspawn_reaches_the_peer_over_a_veth_pair() {
    if common::skip_or_require("nspawn") {
        return;
    }
    common::one_workload_leaves_nothing("nspawn", "net-rr", Duration::from_secs(60));
}

#[test]
fn nspawn_killed_then_cleaned_up() {
    if common::skip_or_require("nspawn") {
        return;
    }
    common::killed_then_cleaned_up("nspawn", "\"kind\":\"process\"", Duration::from_secs(60));
    no_machine_state_on_the_host();
}

#[test]
fn build_compiles_with_the_hosts_toolchain_in_nspawn() {
    if common::skip_or_require("nspawn") {
        return;
    }
    common::build_runs_in(&["nspawn"], Duration::from_secs(60));
}
