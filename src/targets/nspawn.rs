//! `nspawn`: the agent in a systemd-nspawn container (Debian's
//! systemd-container), started as `systemd-nspawn --register=no --keep-unit`:
//! there is no systemd as PID 1 to register a machine or make a scope with, so
//! the container stays in the cgroup nspawn is started in — one virtmark makes
//! with the instance's limits, which teardown and `virtmark cleanup` kill as a
//! whole.
//!
//! - root: the agent's root file system as the OCI targets have it (hard links
//!   to the static agent, empty mount points, and an empty `/usr`, without
//!   which nspawn refuses a directory as "not an OS tree"), read-only;
//! - `--as-pid2`: nspawn's stub init is PID 1 and reaps orphans; the agent is
//!   PID 2 (it is not written to be an init);
//! - `--console=pipe`: the agent's stdin and stdout are nspawn's;
//! - network: `--private-network` (loopback only) without network workloads;
//!   with them, nspawn is started in virtmark's target namespace of a veth
//!   pair whose other end holds the peer, and the container shares it;
//! - nspawn runs in a private mount namespace with a tmpfs on `/run`: its
//!   per-machine state (`/run/systemd/nspawn`), which it cannot remove on a
//!   `/run` that is not a tmpfs and which a killed nspawn leaves, stays there;
//! - scratch: the instance's host directory bound at `/scratch`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::cgroup::{self, Limits};
use super::{
    netns, oci, peer, rootfs, toolchain, tools, Driver, Family, Guard, Instance, StartEnv,
};

/// The systemd-nspawn driver.
pub struct Nspawn;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["nspawn"],
    // Namespaces and cgroups as `ns` and `lxc` make them: those stand for it in
    // the default run.
    not_default: &["nspawn"],
    make: |n| (n == "nspawn").then(|| Ok(Box::new(Nspawn) as Box<dyn Driver>)),
};

/// The program.
pub const NSPAWN: &str = "systemd-nspawn";

impl Driver for Nspawn {
    fn name(&self) -> &str {
        "nspawn"
    }

    fn class(&self) -> &'static str {
        "OS-level virtualization (systemd-nspawn)"
    }

    fn available(&self) -> Result<(), String> {
        tools::need_root("systemd-nspawn containers with cgroup limits")?;
        tools::need(NSPAWN, "systemd-container")?;
        netns::check_available()?;
        cgroup::check_available()?;
        super::verify::proven(self.name(), &[NSPAWN], |env| self.start(env))
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(2));
        guard.create_dir(&env.scratch)?;
        let base = std::fs::canonicalize(&env.scratch)
            .with_context(|| format!("resolving {}", env.scratch.display()))?;
        let (root, data) = (base.join("root"), base.join("data"));
        for d in [&root, &data] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        rootfs::link_agent_root(env.exe, &root)?;
        std::fs::create_dir_all(root.join("usr")).context("creating /usr in the root")?;
        let tools = env.toolchain.then(toolchain::HostToolchain::of_host);
        if let Some(t) = &tools {
            t.prepare_root(&root)?;
        }
        let cg = cgroup::create(&mut guard, &env.tag, &Limits::of(env))?;
        let pair = match env.peer {
            Some(_) => Some(netns::veth_pair(&mut guard, &env.tag, env.index)?),
            None => None,
        };
        let peer = match &pair {
            Some(p) => peer::start_for(&mut guard, env, p.peer_ip, &p.peer_ns)?,
            None => None,
        };
        let log = std::fs::File::create(&env.log)
            .with_context(|| format!("creating agent log {}", env.log.display()))?;
        let mut cmd = Command::new(NSPAWN);
        cmd.args(args(
            &root,
            &data,
            &format!("virtmark-{}", env.tag),
            pair.is_none(),
            tools
                .as_ref()
                .map(|t| t.dirs.as_slice())
                .unwrap_or_default(),
        ))
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        if let Some(cpus) = &env.cpuset {
            crate::sys::pin_to(&mut cmd, cpus)?;
        }
        let procs = cg.procs_files()?;
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec: write(2) on files opened before the fork.
            unsafe {
                cmd.pre_exec(move || cgroup::join_all(&procs));
            }
        }
        if let Some(p) = &pair {
            netns::spawn_in_netns(&mut cmd, &p.target_ns)?;
        }
        // nspawn keeps per-machine state under /run/systemd/nspawn, which it
        // cannot remove on a /run that is not a tmpfs, and which a killed
        // nspawn leaves behind: a tmpfs of its own mount namespace holds it.
        oci::private_tmpfs(&mut cmd, &["/run".to_string()])?;
        let child = cmd.spawn().context("starting systemd-nspawn")?;
        Instance::of_child(guard, child, peer)
    }
}

/// The command line of `systemd-nspawn` for one instance.
fn args(
    root: &Path,
    data: &Path,
    machine: &str,
    private_network: bool,
    ro_binds: &[std::path::PathBuf],
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--console=pipe",
        "--as-pid2",
        "--read-only",
        "--timezone=off",
        "--resolv-conf=off",
        "--link-journal=no",
        "--hostname=virtmark-nspawn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--machine={machine}"));
    a.push(format!("--directory={}", root.display()));
    a.push(format!("--bind={}:/scratch", data.display()));
    for d in ro_binds {
        a.push(format!("--bind-ro={}", d.display()));
    }
    if private_network {
        a.push("--private-network".into());
    }
    a.extend(["/virtmark", "agent", "--scratch", "/scratch"].map(String::from));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_is_not_registered_and_runs_the_agent_as_pid_2() {
        let a = args(
            Path::new("/s/root"),
            Path::new("/s/data"),
            "virtmark-x",
            true,
            &[],
        );
        for want in [
            "--register=no",
            "--keep-unit",
            "--as-pid2",
            "--private-network",
            "--bind=/s/data:/scratch",
            "--directory=/s/root",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing: {a:?}");
        }
        assert_eq!(
            a[a.len() - 4..],
            ["/virtmark", "agent", "--scratch", "/scratch"]
        );
        let n = args(Path::new("/r"), Path::new("/d"), "m", false, &[]);
        assert!(!n.contains(&"--private-network".to_string()));
    }
}
