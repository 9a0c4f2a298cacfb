//! Target drivers: each provisions an environment, starts the agent in it, gives
//! it a path to the peer and scratch storage, and tears everything down. A driver
//! says whether it can run on this host and, when not, exactly why.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod native;

/// A parsed target name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// The agent as a child process of virtmark: the baseline.
    Native,
}

/// Every target name this build knows, for help and error messages.
pub const KNOWN: &[&str] = &["native"];

/// Parse a target name (`native`, …).
pub fn parse(name: &str) -> Result<TargetKind, String> {
    match name {
        "native" => Ok(TargetKind::Native),
        other => Err(format!(
            "unknown target {other:?} (known: {})",
            KNOWN.join(", ")
        )),
    }
}

/// What a driver needs to start an instance.
pub struct StartEnv<'a> {
    /// The virtmark binary to run as the agent.
    pub exe: &'a Path,
    /// Where this instance may keep its scratch data (removed at the end).
    pub scratch: PathBuf,
    /// Where the agent's standard error is logged.
    pub log: PathBuf,
    /// The peer, as the host sees it, when network workloads will run.
    pub peer: Option<SocketAddr>,
}

/// A running instance of a target with an agent in it.
pub struct Instance {
    /// Requests to the agent.
    pub to_agent: Box<dyn Write + Send>,
    /// Answers from the agent.
    pub from_agent: Box<dyn Read + Send>,
    /// How the agent reaches the peer (`host:port`), when there is one.
    pub peer: Option<String>,
    /// Tears the instance down; also run on drop.
    pub teardown: Box<dyn Teardown>,
}

/// Removes everything an instance created. Must be idempotent.
pub trait Teardown: Send {
    /// Stop the instance and remove what it created.
    fn teardown(&mut self) -> anyhow::Result<()>;
}

/// A kind of target.
pub trait Driver {
    /// Target name as written on the command line.
    fn name(&self) -> &str;
    /// Whether it can run on this host; `Err` says exactly why not.
    fn available(&self) -> Result<(), String>;
    /// Provision an instance with the agent running in it.
    fn start(&self, env: &StartEnv) -> anyhow::Result<Instance>;
}

/// The driver for a parsed target.
pub fn driver(kind: &TargetKind) -> Box<dyn Driver> {
    match kind {
        TargetKind::Native => Box::new(native::Native),
    }
}

/// Every target available on this host, in the order results are shown.
pub fn available_targets() -> Vec<String> {
    KNOWN
        .iter()
        .filter(|n| parse(n).is_ok_and(|k| driver(&k).available().is_ok()))
        .map(|n| n.to_string())
        .collect()
}
