//! `docker` and `docker:runsc` for real: a private dockerd in namespaces of
//! virtmark's, the agent image imported from virtmark's tarball, one workload
//! end to end with a positive result, and nothing of the run left behind —
//! after a normal run, and after SIGKILL of virtmark plus `virtmark cleanup`
//! (daemon, containerd, shims, containers, network namespace, cgroups, data root).

mod common;

use std::time::Duration;

/// Where a private daemon keeps what it makes outside its data root, were its
/// `/run` not a tmpfs of its own mount namespace.
fn host_run_untouched() {
    for p in ["/run/docker", "/run/containerd", "/run/docker.sock"] {
        assert!(
            !std::path::Path::new(p).exists(),
            "{p} exists: a Docker daemon wrote to the host's /run"
        );
    }
}

#[test]
fn docker_runs_dd_zero_and_leaves_nothing() {
    if common::skip_or_require("docker") {
        return;
    }
    let r = common::one_workload_leaves_nothing("docker", "dd-zero", Duration::from_secs(90));
    // The 2 GiB memory limit is the container's, set through `docker run`.
    let fp = &r["targets"][0]["fingerprint"];
    assert_eq!(
        fp["memory"]["cgroup_limit"].as_u64(),
        Some(2u64 << 30),
        "{fp:#}"
    );
    host_run_untouched();
}

#[test]
fn docker_runsc_runs_cpu_int_and_leaves_nothing() {
    if common::skip_or_require("docker:runsc") {
        return;
    }
    common::one_workload_leaves_nothing("docker:runsc", "cpu-int", Duration::from_secs(90));
    host_run_untouched();
}

#[test]
fn docker_reaches_the_peer_over_its_bridge() {
    if common::skip_or_require("docker") {
        return;
    }
    common::one_workload_leaves_nothing("docker", "net-rr", Duration::from_secs(90));
}

#[test]
fn docker_killed_then_cleaned_up() {
    if common::skip_or_require("docker") {
        return;
    }
    common::killed_then_cleaned_up("docker", "\"runtime\":\"docker\"", Duration::from_secs(60));
    host_run_untouched();
}

#[test]
fn build_compiles_with_the_hosts_toolchain_in_docker() {
    if common::skip_or_require("docker") {
        return;
    }
    common::build_runs_in(&["docker"], Duration::from_secs(120));
}
