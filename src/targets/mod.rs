//! Target drivers: each provisions an environment, starts the agent in it, gives
//! it a path to the peer and scratch storage, and tears everything down. A driver
//! says whether it can run on this host and, when not, exactly why.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use ledger::{Ledger, Resource};

mod bochs;
pub mod cache;
pub mod cgroup;
mod docker;
pub mod elf;
pub mod guest_init;
mod gvisor;
pub mod initramfs;
pub mod ledger;
pub mod libvirt;
pub mod lxc;
mod native;
pub mod netns;
mod ns;
mod nspawn;
mod oci;
pub mod peer;
mod podman;
pub mod pvh;
pub mod qemu;
pub mod rootfs;
pub mod rtnl;
pub mod ssh;
pub mod toolchain;
pub mod tools;
pub mod uml;
pub mod verify;

/// A parsed target name. The runner knows two targets by kind — the
/// baseline, and ssh (whose peer it sets) — and every other one by name: the
/// file that declares the name in [`REGISTRY`] makes its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// The agent as a child process of virtmark: the baseline.
    Native,
    /// Any machine reachable over ssh (`ssh:[user@]host[:port]`).
    Ssh(ssh::SshTarget),
    /// Any other target, by the name a file of [`REGISTRY`] declares.
    Local(String),
}

/// What one target file declares: the names it answers to and how to make the
/// driver for one of them (its class, availability check and start are the
/// driver's). A new technology is one new file and one line of [`REGISTRY`].
pub struct Family {
    /// Names in the order `virtmark targets` lists them; `<…>` marks a pattern
    /// (`ssh:<host>`), never offered by default.
    pub names: &'static [&'static str],
    /// Names left out of the default target list: aliases of listed names,
    /// targets too slow to run unasked, and variants of a technology another
    /// default target already measures (one per technology keeps the README's
    /// main job under 20 minutes on 2 cores). `virtmark targets` lists them all.
    pub not_default: &'static [&'static str],
    /// The driver for `name`; `None` when the name is not this file's, `Err`
    /// when it is but is malformed (`ssh:` with a bad host).
    pub make: fn(name: &str) -> Option<Made>,
}

/// What a [`Family`] makes of a name that is its own: the driver, or why the
/// name is malformed.
pub type Made = Result<Box<dyn Driver>, String>;

/// Every target file, in the order results are shown.
pub const REGISTRY: &[&Family] = &[
    &native::FAMILY,
    &ns::FAMILY,
    &oci::FAMILY,
    &lxc::FAMILY,
    &gvisor::FAMILY,
    &uml::FAMILY,
    &qemu::FAMILY,
    &ssh::FAMILY,
    &docker::FAMILY,
    &nspawn::FAMILY,
    &podman::FAMILY,
    &libvirt::FAMILY,
    &bochs::FAMILY,
];

/// Every target name this build knows, for help and error messages.
/// Names with `<…>` are patterns (`ssh:<host>`), never offered by default.
pub static KNOWN: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| REGISTRY.iter().flat_map(|f| f.names).copied().collect());

fn make(name: &str) -> Option<Made> {
    REGISTRY.iter().find_map(|f| (f.make)(name))
}

/// Parse a target name (`native`, …).
pub fn parse(name: &str) -> Result<TargetKind, String> {
    match make(name) {
        Some(Ok(d)) => Ok(d.kind()),
        Some(Err(e)) => Err(e),
        None => Err(format!(
            "unknown target {name:?} (known: {})",
            KNOWN.join(", ")
        )),
    }
}

/// The technology class of a target, in the seed taxonomy (White & Pilbeam).
pub fn class_of(kind: &TargetKind) -> &'static str {
    driver(kind).class()
}

/// What a driver needs to start an instance.
pub struct StartEnv<'a> {
    /// The virtmark binary to run as the agent.
    pub exe: &'a Path,
    /// Where this instance may keep its scratch data (removed at the end).
    pub scratch: PathBuf,
    /// Where the agent's standard error is logged.
    pub log: PathBuf,
    /// The peer on the host's loopback, when network workloads will run.
    pub peer: Option<SocketAddr>,
    /// Where every resource the driver creates is recorded first.
    pub ledger: Arc<Ledger>,
    /// Index of this instance in the run (1..=250), for distinct addresses.
    pub index: u8,
    /// Unique short tag of this instance, for naming namespaces, links, cgroups.
    pub tag: String,
    /// CPUs the target gets (default: every host CPU).
    pub cpus: usize,
    /// Host CPUs the target is pinned to, when pinned (`scale --pin`). A driver
    /// that cannot pin refuses the instance rather than run it unpinned.
    pub cpuset: Option<Vec<usize>>,
    /// Start without memory and task limits (`isolate --no-limits`); the
    /// isolation step refuses it for targets that cannot lift them.
    pub unlimited: bool,
    /// A CPU share of its own (cgroup CPU weight) even when it may use every
    /// CPU: the isolation step's instances, so that a misbehaving one cannot take
    /// its neighbours' CPU time with many tasks (VMs get this from their vCPUs).
    pub cpu_share: bool,
    /// Memory the target gets, bytes (default: 2 GiB as the studies gave their guests).
    pub memory: u64,
    /// Show the host's compiler toolchain read-only inside (see
    /// [`toolchain::HostToolchain`]), for the workloads that compile.
    pub toolchain: bool,
    /// Whether `native` runs without the envelope (`cpus`, `memory`) the targets get
    /// (`--native-unbounded`); other drivers ignore it.
    pub native_unbounded: bool,
}

impl StartEnv<'_> {
    /// `virtmark agent --scratch <scratch>` on the host, its requests and answers
    /// on piped stdin and stdout, its standard error in the instance's log, and
    /// dying with virtmark: what `native` runs, and `ns` inside its namespaces.
    pub fn host_agent_command(&self) -> anyhow::Result<std::process::Command> {
        use anyhow::Context;
        use std::process::Stdio;
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating agent log {}", self.log.display()))?;
        let mut cmd = std::process::Command::new(self.exe);
        cmd.arg("agent")
            .arg("--scratch")
            .arg(&self.scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        Ok(cmd)
    }
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

impl Instance {
    /// An instance whose agent speaks on `child`'s stdin and stdout; `guard`
    /// adopts the child (stopped first at teardown) and removes the rest.
    pub fn of_child(
        mut guard: Guard,
        mut child: Child,
        peer: Option<String>,
    ) -> anyhow::Result<Instance> {
        let (to_agent, from_agent) = piped(&mut child)?;
        guard.adopt(child)?;
        Ok(Instance {
            to_agent,
            from_agent,
            peer,
            teardown: Box::new(guard),
        })
    }

    /// Like [`Instance::of_child`] for a VM process, which gets a moment to
    /// power off by itself before it is stopped ([`qemu::VmTeardown`]).
    pub fn of_vm(guard: Guard, mut child: Child, peer: Option<String>) -> anyhow::Result<Instance> {
        let (to_agent, from_agent) = piped(&mut child)?;
        Ok(Instance {
            to_agent,
            from_agent,
            peer,
            teardown: Box::new(qemu::VmTeardown::new(child, guard)?),
        })
    }
}

type Pipes = (Box<dyn Write + Send>, Box<dyn Read + Send>);

/// The piped stdin and stdout of `child`.
fn piped(child: &mut Child) -> anyhow::Result<Pipes> {
    use anyhow::Context;
    let to = child
        .stdin
        .take()
        .context("the agent's stdin is not piped")?;
    let from = child
        .stdout
        .take()
        .context("the agent's stdout is not piped")?;
    Ok((Box::new(to), Box::new(from)))
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
    /// Its class in the survey's taxonomy (White & Pilbeam).
    fn class(&self) -> &'static str;
    /// The parsed name the runner keeps.
    fn kind(&self) -> TargetKind {
        TargetKind::Local(self.name().to_string())
    }
    /// Whether it can run on this host; `Err` says exactly why not.
    fn available(&self) -> Result<(), String>;
    /// Provision an instance with the agent running in it.
    fn start(&self, env: &StartEnv) -> anyhow::Result<Instance>;
}

/// The driver for a parsed target.
pub fn driver(kind: &TargetKind) -> Box<dyn Driver> {
    match kind {
        TargetKind::Native => Box::new(native::Native),
        TargetKind::Ssh(t) => Box::new(ssh::Ssh(t.clone())),
        TargetKind::Local(name) => match make(name) {
            Some(Ok(d)) => d,
            Some(Err(why)) => Box::new(Unknown(name.clone(), why)),
            None => Box::new(Unknown(name.clone(), format!("unknown target {name:?}"))),
        },
    }
}

/// A name no file declares (a [`TargetKind::Local`] made by hand): never available.
struct Unknown(String, String);

impl Driver for Unknown {
    fn name(&self) -> &str {
        &self.0
    }

    fn class(&self) -> &'static str {
        "unknown"
    }

    fn available(&self) -> Result<(), String> {
        Err(self.1.clone())
    }

    fn start(&self, _: &StartEnv) -> anyhow::Result<Instance> {
        anyhow::bail!("{}", self.1)
    }
}

/// Whether `name` is in the default target list when available (see
/// [`Family::not_default`]).
pub fn in_default(name: &str) -> bool {
    REGISTRY
        .iter()
        .find(|f| f.names.contains(&name))
        .is_some_and(|f| !f.not_default.contains(&name) && !name.contains('<'))
}

/// Every target available on this host, in the order results are shown: the
/// default target list (aliases and very slow targets left out).
pub fn available_targets() -> Vec<String> {
    KNOWN
        .iter()
        .filter(|n| in_default(n))
        .filter(|n| parse(n).is_ok_and(|k| driver(&k).available().is_ok()))
        .map(|n| n.to_string())
        .collect()
}

enum Held {
    Res(Resource),
    Child(Child, Resource),
    Value(Box<dyn Send>),
}

/// Owns what a driver created, in order, and removes it newest first: children
/// are stopped (SIGTERM, then SIGKILL) and reaped, other resources removed, and
/// each is marked released in the ledger. Drivers build their [`Teardown`] on it.
pub struct Guard {
    ledger: Arc<Ledger>,
    held: Vec<Held>,
    grace: Duration,
}

impl Guard {
    /// An empty guard writing to `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> Guard {
        Guard {
            ledger,
            held: Vec::new(),
            grace: Duration::from_secs(2),
        }
    }

    /// How long a child gets between SIGTERM and SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Record `res` in the ledger, then run `create`; on success the guard owns it.
    pub fn create<T>(
        &mut self,
        res: Resource,
        create: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.ledger.record(&res)?;
        // Owned even if `create` fails half-way: teardown removes what exists.
        self.held.push(Held::Res(res));
        create()
    }

    /// Like [`Guard::create`] for several resources at once (one ledger flush).
    pub fn create_all<T>(
        &mut self,
        res: Vec<Resource>,
        create: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.ledger.record_all(&res)?;
        self.held.extend(res.into_iter().map(Held::Res));
        create()
    }

    /// Record a directory, then create it with mode 0700 (its parent must
    /// exist); removed at teardown. A path that already exists (a directory or a
    /// symbolic link someone put there) is refused, never reused.
    pub fn create_dir(&mut self, path: &Path) -> anyhow::Result<()> {
        self.create(
            Resource::Dir {
                path: path.to_path_buf(),
            },
            || {
                ledger::create_private_dir(path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "creating directory {}: it already exists, and virtmark never reuses a path it did not make",
                            path.display()
                        )
                    } else {
                        anyhow::anyhow!("creating directory {}: {e}", path.display())
                    }
                })
            },
        )
    }

    /// Take ownership of a spawned child (recorded in the ledger at once).
    pub fn adopt(&mut self, child: Child) -> anyhow::Result<()> {
        let res = self.ledger.record_process(child.id())?;
        self.held.push(Held::Child(child, res));
        Ok(())
    }

    /// Keep a value (a peer process, a temp file) alive until teardown, when it is
    /// dropped in order with the rest.
    pub fn hold(&mut self, value: impl Send + 'static) {
        self.held.push(Held::Value(Box::new(value)));
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }
}

impl Teardown for Guard {
    fn teardown(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        while let Some(h) = self.held.pop() {
            let r = match h {
                Held::Child(mut c, res) => {
                    crate::sys::stop_child(&mut c, self.grace);
                    self.ledger.release(&res)
                }
                Held::Res(res) => self.ledger.remove(&res),
                Held::Value(v) => {
                    drop(v);
                    Ok(())
                }
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_target_per_technology_in_the_default_list() {
        for n in [
            "native", "ns", "oci:crun", "lxc", "gvisor", "uml", "qemu:tcg", "docker",
        ] {
            assert!(in_default(n), "{n}");
        }
        for n in [
            "oci:runc",
            "docker:runsc",
            "podman",
            "nspawn",
            "qemu",
            "ssh:<host>",
            "x",
        ] {
            assert!(!in_default(n), "{n}");
        }
    }
}
