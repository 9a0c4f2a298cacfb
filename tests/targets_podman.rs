//! `podman` for real: rootful Podman 4.3 with the configuration this machine
//! kind needs (explicit ulimits, crun with the v2 tree hidden, cgroupfs, state
//! under the instance's scratch and a private `/run`), one workload end to end
//! with a positive result, nothing left behind — after a normal run and after
//! SIGKILL of virtmark plus `virtmark cleanup` — and nothing written to the
//! host's Podman, crun or CNI state.

mod common;

use std::time::Duration;

fn host_state_untouched() {
    for p in [
        "/var/lib/containers/storage",
        "/run/libpod",
        "/run/containers",
        "/etc/cni/net.d/cni.lock",
        "/var/lib/cni",
    ] {
        assert!(
            !std::path::Path::new(p).exists(),
            "{p} exists: podman wrote to the host's state"
        );
    }
}

#[test]
fn podman_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("podman") {
        return;
    }
    let r = common::one_workload_leaves_nothing("podman", "dd-zero", Duration::from_secs(60));
    let fp = &r["targets"][0]["fingerprint"];
    assert_eq!(
        fp["memory"]["cgroup_limit"].as_u64(),
        Some(2u64 << 30),
        "{fp:#}"
    );
    host_state_untouched();
}

#[test]
fn podman_reaches_the_peer_over_a_veth_pair() {
    if common::skip_or_require("podman") {
        return;
    }
    common::one_workload_leaves_nothing("podman", "net-rr", Duration::from_secs(60));
}

#[test]
fn podman_killed_then_cleaned_up() {
    if common::skip_or_require("podman") {
        return;
    }
    common::killed_then_cleaned_up("podman", "\"kind\":\"process\"", Duration::from_secs(60));
    host_state_untouched();
}

#[test]
fn build_compiles_with_the_hosts_toolchain_in_podman() {
    if common::skip_or_require("podman") {
        return;
    }
    common::build_runs_in(&["podman"], Duration::from_secs(60));
}
