//! Network plumbing for targets that have their own network: every address lives
//! inside network namespaces that virtmark creates (and records in the ledger), so
//! no traffic ever leaves the machine or touches the host's own interfaces.
//!
//! - [`veth_pair`]: a peer namespace and a target namespace joined by a veth pair
//!   (`ns`, OCI runtimes, LXC, gVisor);
//! - [`tap_site`]: a peer namespace holding a tap device for a VM (UML, QEMU), whose
//!   process is started inside that namespace.
//!
//! The peer (`virtmark serve`) is started inside the peer namespace with
//! [`spawn_in_netns`].

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::ledger::Resource;
use super::Guard;

/// Addresses used inside virtmark's own namespaces: `10.213.<n>.0/30` per instance.
pub fn addresses(index: u8) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(10, 213, index, 1),
        Ipv4Addr::new(10, 213, index, 2),
    )
}

/// Prefix length of those addresses.
pub const PREFIX: u8 = 30;

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether network namespaces can be made here (root and iproute2).
pub fn check_available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root to create network namespaces".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Err("the ip command (Debian package iproute2) is not installed".into());
    }
    Ok(())
}

/// Create a named network namespace (recorded first) with loopback up.
pub fn create_netns(guard: &mut Guard, name: &str) -> Result<PathBuf> {
    guard.create(
        Resource::Netns {
            name: name.to_string(),
        },
        || ip(&["netns", "add", name]),
    )?;
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(PathBuf::from("/run/netns").join(name))
}

/// Two namespaces joined by a veth pair.
#[derive(Debug, Clone)]
pub struct VethPair {
    /// Namespace where the peer runs.
    pub peer_ns: String,
    /// Namespace the target joins.
    pub target_ns: String,
    /// Peer's address (in `peer_ns`).
    pub peer_ip: Ipv4Addr,
    /// Target's address (in `target_ns`), already configured on `target_if`.
    pub target_ip: Ipv4Addr,
    /// Interface name inside the target namespace.
    pub target_if: String,
}

/// Create `virtmark-<tag>-p` and `virtmark-<tag>-t` joined by a veth pair, with
/// addresses from [`addresses`]`(index)`. Both ends are created directly inside
/// the namespaces, so nothing appears in the host's namespace.
pub fn veth_pair(guard: &mut Guard, tag: &str, index: u8) -> Result<VethPair> {
    let peer_ns = format!("virtmark-{tag}-p");
    let target_ns = format!("virtmark-{tag}-t");
    create_netns(guard, &peer_ns)?;
    create_netns(guard, &target_ns)?;
    let (pip, tip) = addresses(index);
    let (pif, tif) = ("vmkp0", "eth0");
    ip(&[
        "link", "add", "name", pif, "netns", &peer_ns, "type", "veth", "peer", "name", tif,
        "netns", &target_ns,
    ])?;
    ip(&[
        "-n",
        &peer_ns,
        "addr",
        "add",
        &format!("{pip}/{PREFIX}"),
        "dev",
        pif,
    ])?;
    ip(&["-n", &peer_ns, "link", "set", pif, "up"])?;
    ip(&[
        "-n",
        &target_ns,
        "addr",
        "add",
        &format!("{tip}/{PREFIX}"),
        "dev",
        tif,
    ])?;
    ip(&["-n", &target_ns, "link", "set", tif, "up"])?;
    Ok(VethPair {
        peer_ns,
        target_ns,
        peer_ip: pip,
        target_ip: tip,
        target_if: tif.into(),
    })
}

/// A peer namespace with a tap device for a VM.
#[derive(Debug, Clone)]
pub struct TapSite {
    /// Namespace where the peer and the VM process run.
    pub ns: String,
    /// Tap device name inside `ns`.
    pub tap: String,
    /// Peer's address (on the tap, in `ns`).
    pub peer_ip: Ipv4Addr,
    /// Address the guest must configure on its NIC.
    pub guest_ip: Ipv4Addr,
}

/// Create `virtmark-<tag>-p` holding a tap device `vmktap0` addressed as the peer.
pub fn tap_site(guard: &mut Guard, tag: &str, index: u8) -> Result<TapSite> {
    let ns = format!("virtmark-{tag}-p");
    create_netns(guard, &ns)?;
    let (pip, gip) = addresses(index);
    let tap = "vmktap0";
    ip(&["-n", &ns, "tuntap", "add", "dev", tap, "mode", "tap"])?;
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{pip}/{PREFIX}"),
        "dev",
        tap,
    ])?;
    ip(&["-n", &ns, "link", "set", tap, "up"])?;
    Ok(TapSite {
        ns,
        tap: tap.into(),
        peer_ip: pip,
        guest_ip: gip,
    })
}

/// Make `cmd` enter the named network namespace before it executes.
pub fn spawn_in_netns(cmd: &mut Command, ns: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let f = std::fs::File::open(PathBuf::from("/run/netns").join(ns))
        .with_context(|| format!("opening network namespace {ns}"))?;
    // SAFETY: between fork and exec the closure calls only setns(2) on a file
    // descriptor opened before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    Ok(())
}
