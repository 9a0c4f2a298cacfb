//! `lxc`: the agent in an LXC application container, started with `lxc-execute`
//! from a configuration virtmark writes for each instance.
//!
//! Choices, and why:
//! - `lxc-execute` rather than `lxc-start` with the agent as init: measured here
//!   both start a trivial container in ~90–110 ms (same configuration), but under
//!   `lxc-execute` LXC's own `init.lxc` is pid 1, which forwards SIGTERM to the
//!   agent and reaps orphans; the agent as pid 1 would ignore SIGTERM.
//! - Root file system: a minimal one in the instance's scratch (the agent's
//!   libraries copied, the binary bind-mounted read-only at `/virtmark`), not the
//!   host's `/`: the container sees only what LXC gives it, so the fingerprint and
//!   the file system are the container's, and `/scratch` (the agent's scratch) is
//!   the container's own storage (its rootfs directory, as LXC's `dir` backend has).
//! - Container state lives under a private lxcpath (`-P`) in the instance scratch,
//!   so nothing is written to `/var/lib/lxc` and cleanup is scoped to the run.
//! - Network: without network workloads the container gets a new network namespace
//!   holding only loopback (`lxc.net.0.type = empty`). With them, virtmark's own
//!   target namespace from [`netns::veth_pair`] is used: `lxc-execute` is started
//!   inside it and `lxc.net.0.type = none` keeps the container in it; the peer runs
//!   in the peer namespace.
//! - Limits: cgroups under virtmark's own cgroup (`lxc.cgroup.relative = 1`,
//!   `lxc.cgroup.dir = virtmark-lxc-<tag>`): memory, cpuset + CPU quota, pids; v1
//!   keys on legacy/hybrid hosts, `lxc.cgroup2.*` on a pure cgroup2 host. The
//!   cgroup hierarchy is mounted read-only inside so the agent sees its limits.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::ledger::Resource;
use super::{netns, peer, rootfs, toolchain, tools, Driver, Family, Guard, Instance, StartEnv};

/// The LXC driver.
pub struct Lxc;

/// Processes a container may hold at once (bounds fork bombs).
const PIDS_MAX: u32 = 4096;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["lxc"],
    not_default: &[],
    make: |n| (n == "lxc").then(|| Ok(Box::new(Lxc) as Box<dyn Driver>)),
};

impl Driver for Lxc {
    fn name(&self) -> &str {
        "lxc"
    }

    fn class(&self) -> &'static str {
        "OS-level virtualization (LXC, the OpenVZ / VServer lineage)"
    }

    fn available(&self) -> Result<(), String> {
        tools::need_root("privileged LXC containers with cgroup limits")?;
        for tool in ["lxc-execute", "lxc-stop"] {
            tools::need(tool, "lxc")?;
        }
        if !Path::new("/proc/self/ns/cgroup").exists() {
            return Err("the kernel has no cgroup namespaces (needed by LXC)".into());
        }
        netns::check_available()?;
        super::verify::proven(self.name(), &["lxc-execute"], |env| self.start(env))
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        // Finding the agent's libraries (ldd) overlaps with the ledger's flush.
        let exe = env.exe.to_path_buf();
        let libs = std::thread::spawn(move || rootfs::cached_closure(&exe));
        let mut guard = Guard::new(env.ledger.clone());
        // The agent answers EOF by exiting; init.lxc forwards SIGTERM: both are quick.
        guard.set_grace(Duration::from_secs(1));
        let scratch = &env.scratch;
        let root = scratch.join("rootfs");
        let lxcpath = scratch.join("lxcpath");
        let name = format!("virtmark-{}", env.tag);
        let cg_dir = format!("virtmark-lxc-{}", env.tag);
        let cgroups = CgroupLayout::of_self()?;
        // The scratch (rootfs, lxcpath, config); LXC creates `<own cgroup>/<cg_dir>`
        // in every hierarchy and removes only its leaves, so the parents are
        // recorded for teardown and `virtmark cleanup` (which also kill anything
        // left inside); and the container under its private lxcpath.
        let mut res = vec![Resource::Dir {
            path: scratch.clone(),
        }];
        res.extend(
            cgroups
                .parents(&cg_dir)
                .into_iter()
                .map(|path| Resource::Cgroup { path }),
        );
        res.push(Resource::Container {
            runtime: "lxc".into(),
            id: name.clone(),
            root: Some(lxcpath.clone()),
        });
        guard.create_all(res, || {
            std::fs::create_dir_all(&lxcpath)
                .with_context(|| format!("creating {}", lxcpath.display()))
        })?;
        let files = libs
            .join()
            .map_err(|_| anyhow::anyhow!("finding the agent's libraries panicked"))??;
        let mut mounts = rootfs::mount_point_root(&files, &root)?;
        if env.toolchain {
            let t = toolchain::HostToolchain::of_host();
            t.prepare_root(&root)?;
            mounts.extend(
                t.dirs
                    .iter()
                    .map(|d| (d.clone(), d.strip_prefix("/").unwrap_or(d).to_path_buf())),
            );
        }

        let net = match env.peer {
            Some(_) => Some(netns::veth_pair(&mut guard, &env.tag, env.index)?),
            None => None,
        };
        let peer = match &net {
            Some(pair) => peer::start_for(&mut guard, env, pair.peer_ip, &pair.peer_ns)?,
            None => None,
        };

        let conf = config(&ConfigInput {
            name: &name,
            root: &root,
            binds: &mounts,
            cg_dir: &cg_dir,
            v1: cgroups.v1,
            cpus: env.cpus,
            pinned: env.cpuset.as_deref(),
            memory: env.memory,
            unlimited: env.unlimited,
            shared_net: net.is_some(),
        })?;
        let conf_path = scratch.join("lxc.conf");
        std::fs::write(&conf_path, &conf)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        // A copy in the run directory, next to the agent's log, for the record
        // (scripts/bench-startup.d/lxc.sh starts a bare container from it).
        let _ = std::fs::write(env.log.with_extension("lxc.conf"), &conf);

        let log = File::create(&env.log)
            .with_context(|| format!("creating agent log {}", env.log.display()))?;
        let mut cmd = lxc_execute(&lxcpath, &name, &conf_path);
        cmd.args(["--", "/virtmark", "agent", "--scratch", "/scratch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        if let Some(pair) = &net {
            netns::spawn_in_netns(&mut cmd, &pair.target_ns)?;
        }
        let child = cmd.spawn().context("starting lxc-execute")?;
        Instance::of_child(guard, child, peer)
    }
}

/// `lxc-execute -P LXCPATH -n NAME -f CONF` with a clean environment (the host's
/// would otherwise leak into the container).
pub fn lxc_execute(lxcpath: &Path, name: &str, conf: &Path) -> Command {
    let mut cmd = Command::new("lxc-execute");
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .arg("-P")
        .arg(lxcpath)
        .arg("-n")
        .arg(name)
        .arg("-f")
        .arg(conf);
    cmd
}

/// What the configuration depends on.
pub struct ConfigInput<'a> {
    /// Container name.
    pub name: &'a str,
    /// Root file system directory.
    pub root: &'a Path,
    /// Host files bind-mounted read-only into the root: (host path, path inside).
    pub binds: &'a [(PathBuf, PathBuf)],
    /// cgroup directory (relative to virtmark's own cgroup).
    pub cg_dir: &'a str,
    /// cgroup v1 controllers (legacy or hybrid layout) rather than pure cgroup2.
    pub v1: bool,
    /// CPUs.
    pub cpus: usize,
    /// Host CPUs of the cpuset, when pinned (`scale --pin`).
    pub pinned: Option<&'a [usize]>,
    /// Memory, bytes.
    pub memory: u64,
    /// No memory and task limits (`isolate --no-limits`).
    pub unlimited: bool,
    /// Stay in the network namespace `lxc-execute` runs in (virtmark's target
    /// namespace) instead of a new one with only loopback.
    pub shared_net: bool,
}

/// The LXC configuration for one instance.
pub fn config(c: &ConfigInput) -> Result<String> {
    let root = c
        .root
        .to_str()
        .context("root file system path is not UTF-8")?;
    if root.chars().any(char::is_whitespace) {
        bail!("LXC cannot take a root file system path with white space: {root}");
    }
    let cpus = c.cpus.max(1);
    let mut s = String::new();
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(s, "{k} = {v}");
    };
    line("lxc.uts.name", c.name);
    line("lxc.rootfs.path", &format!("dir:{root}"));
    // Required on this host: the default profile blocks the container's mounts.
    line("lxc.apparmor.profile", "unconfined");
    line("lxc.environment", "container=lxc");
    // lxc-execute's init gives the agent no PATH; `build` looks `cc` up in it.
    line(
        "lxc.environment",
        &format!("PATH={}", super::toolchain::TOOLCHAIN_PATH),
    );
    line(
        "lxc.net.0.type",
        if c.shared_net { "none" } else { "empty" },
    );
    // `force`: LXC skips the cgroup mount for containers with CAP_SYS_ADMIN;
    // the agent reads its limits from it.
    line("lxc.mount.auto", "proc:mixed sys:ro cgroup:ro:force");
    line("lxc.autodev", "1");
    for (host, inside) in c.binds {
        line(
            "lxc.mount.entry",
            &format!("{} {} none bind,ro 0 0", host.display(), inside.display()),
        );
    }
    line("lxc.cgroup.relative", "1");
    line("lxc.cgroup.dir", c.cg_dir);
    let cpuset = match c.pinned {
        Some(p) if !p.is_empty() => p.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        _ if cpus == 1 => "0".to_string(),
        _ => format!("0-{}", cpus - 1),
    };
    let period = 100_000u64;
    let quota = period * cpus as u64;
    if c.v1 {
        if !c.unlimited {
            line("lxc.cgroup.memory.limit_in_bytes", &c.memory.to_string());
        }
        line("lxc.cgroup.cpuset.cpus", &cpuset);
        line("lxc.cgroup.cpu.cfs_period_us", &period.to_string());
        line("lxc.cgroup.cpu.cfs_quota_us", &quota.to_string());
        if !c.unlimited {
            line("lxc.cgroup.pids.max", &PIDS_MAX.to_string());
        }
    } else {
        if !c.unlimited {
            line("lxc.cgroup2.memory.max", &c.memory.to_string());
        }
        line("lxc.cgroup2.cpuset.cpus", &cpuset);
        line("lxc.cgroup2.cpu.max", &format!("{quota} {period}"));
        if !c.unlimited {
            line("lxc.cgroup2.pids.max", &PIDS_MAX.to_string());
        }
    }
    // Errors only, on lxc-execute's standard error (the agent log): standard
    // output carries nothing but the agent's JSON.
    line("lxc.log.level", "ERROR");
    Ok(s)
}

/// Where this process sits in each cgroup hierarchy.
struct CgroupLayout {
    /// Absolute directories of this process's cgroup, one per hierarchy.
    own: Vec<PathBuf>,
    /// Whether v1 controllers are in use (memory is a v1 controller).
    v1: bool,
}

impl CgroupLayout {
    fn of_self() -> Result<CgroupLayout> {
        let cg =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mi = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        Ok(CgroupLayout::parse(&cg, &mi))
    }

    fn parse(proc_cgroup: &str, mountinfo: &str) -> CgroupLayout {
        // (root within the hierarchy, mount point, fstype, super options)
        let mounts: Vec<(String, String, String, Vec<String>)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let pre: Vec<&str> = pre.split_whitespace().collect();
                let post: Vec<&str> = post.split_whitespace().collect();
                let fstype = *post.first()?;
                if fstype != "cgroup" && fstype != "cgroup2" {
                    return None;
                }
                Some((
                    pre.get(3)?.to_string(),
                    pre.get(4)?.to_string(),
                    fstype.to_string(),
                    post.get(2)
                        .map(|o| o.split(',').map(String::from).collect())
                        .unwrap_or_default(),
                ))
            })
            .collect();
        let mut own = Vec::new();
        let mut v1 = false;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let mount = if ctrls.is_empty() {
                mounts.iter().find(|m| m.2 == "cgroup2")
            } else {
                let want: Vec<&str> = ctrls.split(',').collect();
                if want.contains(&"memory") {
                    v1 = true;
                }
                mounts
                    .iter()
                    .find(|m| m.2 == "cgroup" && want.iter().all(|w| m.3.iter().any(|o| o == w)))
            };
            let Some((mroot, point, _, _)) = mount else {
                continue;
            };
            let rel = path.strip_prefix(mroot.as_str()).unwrap_or(path);
            let dir = Path::new(point).join(rel.trim_start_matches('/'));
            if !own.contains(&dir) {
                own.push(dir);
            }
        }
        CgroupLayout { own, v1 }
    }

    /// `<own>/<dir>` in every hierarchy.
    fn parents(&self, dir: &str) -> Vec<PathBuf> {
        self.own.iter().map(|o| o.join(dir)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n4:memory:/process_api/a2\n3:cpuset:/\n1:cpu,cpuacct:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn cgroup_parents_follow_the_own_cgroup_in_each_hierarchy() {
        let l = CgroupLayout::parse(HYBRID_CGROUP, HYBRID_MOUNTS);
        assert!(l.v1);
        let p: Vec<String> = l
            .parents("virtmark-lxc-x")
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            p,
            [
                "/sys/fs/cgroup/systemd/virtmark-lxc-x",
                "/sys/fs/cgroup/memory/process_api/a2/virtmark-lxc-x",
                "/sys/fs/cgroup/cpuset/virtmark-lxc-x",
                "/sys/fs/cgroup/cpu,cpuacct/virtmark-lxc-x",
                "/sys/fs/cgroup/unified/virtmark-lxc-x",
            ]
        );
    }

    #[test]
    fn pure_cgroup2_uses_the_mount_root() {
        let l = CgroupLayout::parse(
            "0::/user.slice/session-1.scope\n",
            "30 25 0:27 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        );
        assert!(!l.v1);
        assert_eq!(
            l.parents("v"),
            [PathBuf::from("/sys/fs/cgroup/session-1.scope/v")]
        );
    }

    #[test]
    fn config_sets_limits_network_and_rootfs() {
        let binds = [(
            PathBuf::from("/usr/bin/virtmark"),
            PathBuf::from("virtmark"),
        )];
        let input = ConfigInput {
            name: "virtmark-ab",
            root: Path::new("/tmp/x/rootfs"),
            binds: &binds,
            cg_dir: "virtmark-lxc-ab",
            v1: true,
            cpus: 2,
            pinned: None,
            memory: 1 << 30,
            unlimited: false,
            shared_net: true,
        };
        let c = config(&input).unwrap();
        for want in [
            "lxc.rootfs.path = dir:/tmp/x/rootfs\n",
            "lxc.apparmor.profile = unconfined\n",
            "lxc.net.0.type = none\n",
            "lxc.mount.entry = /usr/bin/virtmark virtmark none bind,ro 0 0\n",
            "lxc.cgroup.memory.limit_in_bytes = 1073741824\n",
            "lxc.cgroup.cpuset.cpus = 0-1\n",
            "lxc.cgroup.cpu.cfs_quota_us = 200000\n",
            "lxc.cgroup.pids.max = 4096\n",
        ] {
            assert!(c.contains(want), "{want:?} missing from\n{c}");
        }
        let c2 = config(&ConfigInput {
            v1: false,
            cpus: 1,
            shared_net: false,
            ..input
        })
        .unwrap();
        assert!(c2.contains("lxc.cgroup2.cpu.max = 100000 100000\n"), "{c2}");
        assert!(c2.contains("lxc.cgroup2.cpuset.cpus = 0\n"), "{c2}");
        assert!(c2.contains("lxc.net.0.type = empty\n"), "{c2}");
        // Pinned to CPU 1, without memory and task limits.
        let c3 = config(&ConfigInput {
            cpus: 1,
            pinned: Some(&[1]),
            unlimited: true,
            ..input
        })
        .unwrap();
        assert!(c3.contains("lxc.cgroup.cpuset.cpus = 1\n"), "{c3}");
        assert!(!c3.contains("memory") && !c3.contains("pids"), "{c3}");
        assert!(config(&ConfigInput {
            root: Path::new("/tmp/a b"),
            ..input
        })
        .is_err());
    }
}
