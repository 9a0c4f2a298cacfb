//! `podman`: the agent in a rootful Podman container (Debian's podman 4.3,
//! its default runtime crun, conmon), `podman run -i` attached to the agent's
//! stdio.
//!
//! Podman as it comes cannot start a container here; what it takes, measured
//! on this machine kind (Debian 12, hybrid cgroups, a sandbox that forbids
//! raising resource limits):
//!
//! - podman puts `RLIMIT_NOFILE` 1048576 and `RLIMIT_NPROC` in every spec,
//!   which crun fails to set (`setrlimit RLIMIT_NOFILE: Operation not
//!   permitted`); `--ulimit host` does not help. Explicit limits do:
//!   `nofile` at the current hard limit, `nproc` at the task limit every
//!   target gets (4096; lowering is allowed);
//! - crun refuses the hybrid cgroup layout ("cgroups in hybrid mode not
//!   supported"): podman runs in a private mount namespace whose v2 tree is
//!   covered by an empty tmpfs, as `oci:crun` does, with the `cgroupfs` cgroup
//!   manager (there is no systemd);
//! - state: storage root, temp and network configuration directories under
//!   the instance's scratch, and a tmpfs on `/run` in podman's mount namespace
//!   (the run root, crun's state, libpod's), so nothing is written to
//!   `/var/lib/containers`, `/run` or `/etc/cni` of the host;
//! - the container's root is the agent's root file system virtmark builds
//!   (`--rootfs`, read-only): the static agent and empty mount points;
//! - network: with network workloads podman runs in virtmark's target network
//!   namespace (a veth pair to the peer's) and the container shares it
//!   (`--network host` there); without them, `--network none` (loopback only);
//!   Podman's CNI bridge is not used: its IPAM and cache would write to the
//!   host's `/var/lib/cni`;
//! - cgroups: the container's under `/virtmark-pd-<tag>` (podman's cgroupfs
//!   parent, recorded in every hierarchy), podman and conmon in a cgroup of
//!   virtmark's: teardown and `virtmark cleanup` kill both as a whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cgroup::{self, Limits};
use super::ledger::Resource;
use super::{
    netns, oci, peer, rootfs, toolchain, tools, Driver, Family, Guard, Instance, StartEnv,
};

/// The Podman driver.
pub struct Podman;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["podman"],
    // crun behind Podman's front end, on virtmark's network: `oci:crun` and
    // `docker` stand for it in the default run.
    not_default: &["podman"],
    make: |n| (n == "podman").then(|| Ok(Box::new(Podman) as Box<dyn Driver>)),
};

impl Driver for Podman {
    fn name(&self) -> &str {
        "podman"
    }

    fn class(&self) -> &'static str {
        "OS-level virtualization (Podman, rootful)"
    }

    fn available(&self) -> Result<(), String> {
        tools::need_root("rootful Podman with cgroup limits")?;
        tools::need("podman", "podman")?;
        tools::need("conmon", "conmon")?;
        tools::runs("crun", "crun")?;
        netns::check_available()?;
        cgroup::check_available()?;
        super::verify::proven(self.name(), &["podman", "conmon", "crun"], |env| {
            self.start(env)
        })
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        if env.unlimited {
            bail!(
                "podman: cannot lift the task limit (--no-limits): this host forbids \
                 raising RLIMIT_NPROC, which podman sets in every container"
            );
        }
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(3));
        guard.create_dir(&env.scratch)?;
        let base = std::fs::canonicalize(&env.scratch)
            .with_context(|| format!("resolving {}", env.scratch.display()))?;
        let dirs: Vec<PathBuf> = ["storage", "tmp", "net", "root", "data"]
            .iter()
            .map(|d| base.join(d))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let (root, data) = (&dirs[3], &dirs[4]);
        rootfs::link_agent_root(env.exe, root)?;
        let tools = env.toolchain.then(toolchain::HostToolchain::of_host);
        if let Some(t) = &tools {
            t.prepare_root(root)?;
        }

        // podman and conmon: in a cgroup of virtmark's, every hierarchy.
        let own = cgroup::create(&mut guard, &format!("{}p", env.tag), &Limits::host_wide())?;
        // The container's: `/<parent>/libpod-<id>` in every hierarchy crun sees.
        let parent = format!("virtmark-pd-{}", env.tag);
        let hidden = oci::crun_hides();
        for path in hierarchy_roots(&hidden)? {
            guard.create(
                Resource::Cgroup {
                    path: path.join(&parent),
                },
                || Ok(()),
            )?;
        }
        let pair = match env.peer {
            Some(_) => Some(netns::veth_pair(&mut guard, &env.tag, env.index)?),
            None => None,
        };
        let peer = match &pair {
            Some(p) => peer::start_for(&mut guard, env, p.peer_ip, &p.peer_ns)?,
            None => None,
        };

        let limits = Limits::of(env);
        let mut cmd = Command::new("podman");
        // The run root on the private `/run` (podman wants it under 50 bytes).
        cmd.arg("--root")
            .arg(&dirs[0])
            .args(["--runroot", "/run/virtmark"])
            .arg("--tmpdir")
            .arg(&dirs[1])
            .arg("--network-config-dir")
            .arg(&dirs[2])
            .args([
                "--cgroup-manager=cgroupfs",
                "--events-backend=none",
                "--runtime=crun",
                "--log-level=error",
            ])
            .args(["run", "-i", "--rm", "--read-only"])
            .arg(format!("--name=virtmark-{}", env.tag))
            .arg("--hostname=virtmark-podman")
            .arg(format!("--cgroup-parent=/{parent}"))
            .arg(if pair.is_some() {
                "--network=host"
            } else {
                "--network=none"
            })
            .arg(format!("--ulimit=nofile={0}:{0}", nofile_hard()))
            .arg(format!("--ulimit=nproc={0}:{0}", cgroup::PIDS_MAX))
            .arg(format!("--cpus={}", limits.cpus.max(1)));
        if let Some(cpus) = &limits.pinned {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            cmd.arg(format!("--cpuset-cpus={}", list.join(",")));
        }
        if let Some(m) = limits.memory {
            cmd.arg(format!("--memory={m}"))
                .arg(format!("--memory-swap={m}"));
        }
        if let Some(p) = limits.pids {
            cmd.arg(format!("--pids-limit={p}"));
        }
        cmd.arg(format!("--volume={}:/scratch", data.display()));
        for d in tools
            .as_ref()
            .map(|t| t.dirs.as_slice())
            .unwrap_or_default()
        {
            cmd.arg(format!("--volume={0}:{0}:ro", d.display()));
        }
        cmd.arg("--rootfs")
            .arg(root)
            .args(["/virtmark", "agent", "--scratch", "/scratch"]);
        let log = std::fs::File::create(&env.log)
            .with_context(|| format!("creating agent log {}", env.log.display()))?;
        cmd.env("CONTAINERS_CONF", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        let procs = own.procs_files()?;
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
        let mut points = vec!["/run".to_string()];
        points.extend(hidden);
        oci::private_tmpfs(&mut cmd, &points)?;
        let child = cmd.spawn().context("starting podman run")?;
        Instance::of_child(guard, child, peer)
    }
}

/// This process's hard limit of open files (what the container may be given).
fn nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(_, hard)| hard)
        .min(1 << 20)
}

/// The mount point of every cgroup hierarchy crun sees (all but `hidden`).
fn hierarchy_roots(hidden: &[String]) -> Result<Vec<PathBuf>> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| f[1].to_string())
        })
        .filter(|p| !hidden.contains(p))
        .map(PathBuf::from)
        .filter(|p| Path::new(p).is_dir())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hierarchy_but_the_hidden_one() {
        let all = hierarchy_roots(&[]).unwrap();
        if let Some(first) = all.first() {
            let rest = hierarchy_roots(&[first.display().to_string()]).unwrap();
            assert_eq!(rest.len(), all.len() - 1);
            assert!(!rest.contains(first));
        }
        assert!(nofile_hard() >= 1024);
    }
}
