//! Starts the peer (`virtmark serve`) on the host side for network workloads.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A running peer process; stopped on drop.
pub struct PeerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl PeerProcess {
    /// Start `exe serve --listen <listen>` (inside network namespace `netns` when
    /// given) and wait for its `listening ADDR` line.
    pub fn start(exe: &Path, listen: &str, log: &Path, netns: Option<&str>) -> Result<PeerProcess> {
        let log = std::fs::File::create(log)
            .with_context(|| format!("creating peer log {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", listen, "--exit-on-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        if let Some(ns) = netns {
            crate::targets::netns::spawn_in_netns(&mut cmd, ns)?;
        }
        let mut child = cmd.spawn().context("starting the peer (virtmark serve)")?;
        let out = child.stdout.take().context("peer stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                crate::sys::stop_child(&mut child, Duration::from_secs(1));
                bail!("the peer did not say where it listens within 10 s");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(PeerProcess { child, addr }),
            None => {
                crate::sys::stop_child(&mut child, Duration::from_secs(1));
                bail!(
                    "the peer answered {:?} instead of `listening ADDR`",
                    line.trim()
                )
            }
        }
    }
}

impl PeerProcess {
    /// Process id, for the ledger.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        crate::sys::stop_child(&mut self.child, Duration::from_secs(2));
    }
}

/// The peer's log next to the agent's (`agent-ns.log` → `peer-agent-ns.log`).
pub fn peer_log(agent_log: &Path) -> std::path::PathBuf {
    let name = agent_log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent.log".into());
    agent_log.with_file_name(format!("peer-{name}"))
}

/// The peer of an instance, when the run has network workloads (`env.peer`):
/// started listening on `ip` inside network namespace `netns` (the peer side
/// of a pair virtmark made), recorded in the ledger and held by `guard` until
/// teardown. Returns where the agent reaches it (`ip:port`).
pub fn start_for(
    guard: &mut crate::targets::Guard,
    env: &crate::targets::StartEnv,
    ip: std::net::Ipv4Addr,
    netns: &str,
) -> Result<Option<String>> {
    if env.peer.is_none() {
        return Ok(None);
    }
    let p = PeerProcess::start(
        env.exe,
        &format!("{ip}:0"),
        &peer_log(&env.log),
        Some(netns),
    )?;
    guard.ledger().record_process(p.pid())?;
    let addr = p.addr.to_string();
    guard.hold(p);
    Ok(Some(addr))
}
