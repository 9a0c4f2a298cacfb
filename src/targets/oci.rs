//! `oci:crun`, `oci:runc`: an OCI runtime runs a bundle virtmark generates — a
//! read-only root file system holding the agent and its libraries, and a
//! `config.json` whose network namespace is virtmark's target namespace (joined to
//! the peer's by a veth pair; a fresh one when the run has no network workload), with CPU, cpuset, memory and task limits, and the
//! instance's host scratch directory bound at `/scratch`. The runtime runs in the
//! foreground (`<runtime> --root STATE run --bundle DIR ID`) with the agent's
//! stdio passed through (terminal false). The bundle code is shared with gVisor.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::cgroup::{self, Limits};
use super::ledger::Resource;
use super::{
    netns, peer, rootfs, rtnl, toolchain, tools, Driver, Family, Guard, Instance, StartEnv,
};

/// Which OCI runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// crun (C, fast).
    Crun,
    /// runc (Go, the reference).
    Runc,
}

impl Runtime {
    /// Its command.
    pub fn command(self) -> &'static str {
        match self {
            Runtime::Crun => "crun",
            Runtime::Runc => "runc",
        }
    }
}

/// The OCI driver for one runtime.
pub struct Oci(pub Runtime);

/// Its names.
pub const FAMILY: Family = Family {
    names: &["oci:crun", "oci:runc"],
    // runc: the same kernel features as crun, named to compare the runtimes.
    not_default: &["oci:runc"],
    make: |n| {
        let rt = match n {
            "oci:crun" => Runtime::Crun,
            "oci:runc" => Runtime::Runc,
            _ => return None,
        };
        Some(Ok(Box::new(Oci(rt)) as Box<dyn Driver>))
    },
};

/// Whether the host has cgroup v1 controllers and the v2 tree side by side,
/// which crun refuses unless the v2 tree is hidden from it.
pub fn hybrid_cgroups() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let v1 = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup"));
    v1 && mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[2] == "cgroup2" && f[1] != "/sys/fs/cgroup"
    })
}

/// The cgroup v2 mount point on a hybrid host (`/sys/fs/cgroup/unified`).
fn unified_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
    })
}

impl Driver for Oci {
    fn name(&self) -> &str {
        match self.0 {
            Runtime::Crun => "oci:crun",
            Runtime::Runc => "oci:runc",
        }
    }

    fn class(&self) -> &'static str {
        "OS-level virtualization (OCI container)"
    }

    fn available(&self) -> Result<(), String> {
        tools::runs(self.0.command(), self.0.command())?;
        netns::check_available()?;
        cgroup::check_available()
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let rt = self.0;
        let mut guard = Guard::new(env.ledger.clone());
        let b = prepare(&mut guard, env, "virtmark-oci", &SpecFlavor::Oci)?;
        let mut cmd = Command::new(rt.command());
        let mut join = Vec::new();
        if rt == Runtime::Crun {
            // crun places a relative cgroups path under the hierarchy's root, not
            // under its own cgroup (which would escape the session's limits): make
            // the cgroups ourselves, with the spec's limits, run crun in them and
            // tell it to leave cgroups alone.
            let cg = cgroup::create(&mut guard, &format!("{}c", env.tag), &limits(env))?;
            join = cg.procs_files()?;
            cmd.arg("--cgroup-manager=disabled");
        }
        cmd.arg("--root").arg(&b.state);
        cmd.arg("run")
            .arg("--bundle")
            .arg(&b.dir)
            .arg(&b.id)
            .current_dir(&b.dir);
        let hide = if rt == Runtime::Crun {
            crun_hides()
        } else {
            Vec::new()
        };
        let child = spawn_runtime(&mut guard, env, cmd, rt.command(), &b, hide, join)?;
        finish(guard, child, b.peer)
    }
}

/// What differs between runtimes in the generated spec.
pub enum SpecFlavor {
    /// crun and runc: masked paths, cgroup namespace, cgroup mount.
    Oci,
    /// runsc: the sandbox has its own /proc and /sys; no masks needed.
    Gvisor,
}

/// A bundle ready to run, and what was made for it.
pub struct Bundle {
    /// Bundle directory (`config.json`, `rootfs/`).
    pub dir: PathBuf,
    /// Runtime state root (`--root`), under the instance's scratch.
    pub state: PathBuf,
    /// Container id.
    pub id: String,
    /// Where the agent must reach the peer, when there is one.
    pub peer: Option<String>,
}

/// The limits of an instance.
pub fn limits(env: &StartEnv) -> Limits {
    Limits::of(env)
}

/// Everything but the runtime: scratch, bundle, network (and the peer), the
/// ledger entries of the cgroups the runtime will make, and `config.json`.
pub fn prepare(
    guard: &mut Guard,
    env: &StartEnv,
    hostname: &str,
    flavor: &SpecFlavor,
) -> Result<Bundle> {
    guard.create_dir(&env.scratch)?;
    let base = std::fs::canonicalize(&env.scratch)
        .with_context(|| format!("resolving {}", env.scratch.display()))?;
    let dir = base.join("bundle");
    let rootfs_dir = dir.join("rootfs");
    let state = base.join("state");
    let data = base.join("data");
    for d in [&rootfs_dir, &state, &data] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    rootfs::link_agent_root(env.exe, &rootfs_dir)?;
    let tools = env.toolchain.then(toolchain::HostToolchain::of_host);
    if let Some(t) = &tools {
        t.prepare_root(&rootfs_dir)?;
    }

    // Without network workloads crun and runc make the container a fresh network
    // namespace (loopback up), which dies with it; gVisor's host network mode
    // always joins one of virtmark's namespaces.
    let fresh_net = env.peer.is_none() && matches!(flavor, SpecFlavor::Oci);
    let pair = if fresh_net {
        None
    } else {
        Some(rtnl::veth_pair(guard, &env.tag, env.index)?)
    };
    let peer = match &pair {
        Some(pair) => peer::start_for(guard, env, pair.peer_ip, &pair.peer_ns)?,
        None => None,
    };

    let id = format!("virtmark-{}", env.tag);
    // The runtime makes the cgroups (relative to its own, which is ours) in
    // every hierarchy: record each before it can exist.
    for path in cgroup::runtime_cgroup_dirs(&id)? {
        guard.create(Resource::Cgroup { path }, || Ok(()))?;
    }
    let limits = limits(env);
    let cpus_list = limits.cpu_list(
        &std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus")
            .or_else(|_| std::fs::read_to_string("/sys/devices/system/cpu/online"))
            .unwrap_or_else(|_| "0".into()),
    );
    let spec = spec(&SpecInput {
        rootfs: &rootfs_dir,
        scratch: &data,
        netns: pair
            .as_ref()
            .map(|p| PathBuf::from("/run/netns").join(&p.target_ns))
            .as_deref(),
        cgroups_path: &id,
        hostname,
        limits,
        cpus_list: &cpus_list,
        flavor,
        toolchain: tools.as_ref(),
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)
        .context("writing config.json")?;
    Ok(Bundle {
        dir,
        state,
        id,
        peer,
    })
}

/// Start the runtime in the foreground with the agent's stdio piped; record the
/// container first. `hide`: directories to cover with an empty tmpfs
/// in a private mount namespace of the runtime (the v2 tree for crun on a
/// hybrid host).
pub fn spawn_runtime(
    guard: &mut Guard,
    env: &StartEnv,
    mut cmd: Command,
    runtime: &str,
    b: &Bundle,
    hide: Vec<String>,
    join: Vec<File>,
) -> Result<Child> {
    let log = File::create(&env.log)
        .with_context(|| format!("creating agent log {}", env.log.display()))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    crate::sys::die_with_parent(&mut cmd);
    if !join.is_empty() {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec: write(2) on files opened before the fork.
        unsafe {
            cmd.pre_exec(move || cgroup::join_all(&join));
        }
    }
    if !hide.is_empty() {
        private_tmpfs(&mut cmd, &hide)?;
    }
    guard.create(
        Resource::Container {
            runtime: runtime.into(),
            id: b.id.clone(),
            root: Some(b.state.clone()),
        },
        || Ok(()),
    )?;
    cmd.spawn()
        .with_context(|| format!("starting {runtime} (container {})", b.id))
}

/// Make `cmd` start in a private mount namespace (propagation private, so
/// nothing it mounts reaches the host) with an empty tmpfs on each of `points`
/// (directories that must exist): the v2 cgroup tree hidden from crun on a
/// hybrid host, `/run` of a container engine that keeps state there.
pub fn private_tmpfs(cmd: &mut Command, points: &[String]) -> Result<()> {
    private_mounts(cmd, points, &[])
}

/// [`private_tmpfs`], then each of `binds` (source, mount point) bound over its
/// mount point: a daemon's configuration and state directories kept in scratch.
pub fn private_mounts(
    cmd: &mut Command,
    points: &[String],
    binds: &[(PathBuf, &str)],
) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let points = points
        .iter()
        .map(|p| CString::new(p.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let binds: Vec<(CString, CString)> = binds
        .iter()
        .map(|(src, dst)| {
            Ok((
                CString::new(src.as_os_str().as_bytes())?,
                CString::new(*dst)?,
            ))
        })
        .collect::<Result<_>>()?;
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec: unshare(2) and mount(2) on C strings made
    // before the fork; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            use nix::libc;
            let ok = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for point in &points {
                ok(libc::mount(
                    c"tmpfs".as_ptr(),
                    point.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=755".as_ptr().cast(),
                ))?;
            }
            for (src, dst) in &binds {
                ok(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// The cgroup v2 mount point to hide from crun on a hybrid host, if any.
pub fn crun_hides() -> Vec<String> {
    if hybrid_cgroups() {
        unified_mount().into_iter().collect()
    } else {
        Vec::new()
    }
}

/// Adopt the runtime process and hand out the agent's stdio.
pub fn finish(guard: Guard, child: Child, peer: Option<String>) -> Result<Instance> {
    Instance::of_child(guard, child, peer)
}

/// What `config.json` is made from.
pub struct SpecInput<'a> {
    /// Root file system (absolute, no symlinks: runc insists).
    pub rootfs: &'a Path,
    /// Host directory bound at `/scratch`.
    pub scratch: &'a Path,
    /// The target's network namespace; `None`: a fresh one made by the runtime.
    pub netns: Option<&'a Path>,
    /// cgroups path, relative to the runtime's own cgroup.
    pub cgroups_path: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Limits.
    pub limits: Limits,
    /// The CPUs allowed (cpu list).
    pub cpus_list: &'a str,
    /// Runtime flavour.
    pub flavor: &'a SpecFlavor,
    /// The host's toolchain, bound read-only, when a workload compiles.
    pub toolchain: Option<&'a toolchain::HostToolchain>,
}

/// The OCI runtime spec (version 1.0.2) for the agent.
pub fn spec(i: &SpecInput) -> Value {
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_KILL",
        "CAP_SYS_CHROOT"
    ]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
        json!({"destination": "/scratch", "type": "bind", "source": i.scratch,
               "options": ["rbind", "rw"]}),
    ];
    for d in i.toolchain.map(|t| t.dirs.as_slice()).unwrap_or_default() {
        mounts.push(json!({"destination": d, "type": "bind", "source": d,
                           "options": ["rbind", "ro", "nosuid", "nodev"]}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        match i.netns {
            Some(path) => json!({"type": "network", "path": path}),
            None => json!({"type": "network"}),
        },
    ];
    let mut linux = json!({
        "cgroupsPath": i.cgroups_path,
        "resources": {
            "devices": [{"allow": false, "access": "rwm"}],
            "cpu": {
                "shares": 1024,
                "quota": cgroup::CPU_PERIOD_US * i.limits.cpus.max(1) as u64,
                "period": cgroup::CPU_PERIOD_US,
                "cpus": i.cpus_list
            },
        },
    });
    // `isolate --no-limits` leaves memory and tasks unlimited: no entry at all.
    if let Some(m) = i.limits.memory {
        linux["resources"]["memory"] = json!({ "limit": m });
    }
    if let Some(p) = i.limits.pids {
        linux["resources"]["pids"] = json!({ "limit": p });
    }
    if let SpecFlavor::Oci = i.flavor {
        // The limits visible inside, at the usual place; a cgroup namespace makes
        // the container's own cgroup its root.
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
        namespaces.push(json!({"type": "cgroup"}));
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    linux["namespaces"] = Value::Array(namespaces);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/virtmark", "agent", "--scratch", "/scratch"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "noNewPrivileges": true
        },
        "root": {"path": i.rootfs, "readonly": true},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": linux
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_our_network_namespace_limits_and_scratch() {
        let s = spec(&SpecInput {
            rootfs: Path::new("/tmp/b/rootfs"),
            scratch: Path::new("/tmp/b/data"),
            netns: Some(Path::new("/run/netns/virtmark-x-t")),
            cgroups_path: "virtmark-x",
            hostname: "h",
            limits: Limits {
                cpus: 2,
                pinned: None,
                memory: Some(1 << 30),
                pids: Some(100),
                cpu_share: false,
            },
            cpus_list: "0,1",
            flavor: &SpecFlavor::Oci,
            toolchain: None,
        });
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["process"]["args"][0], "/virtmark");
        assert_eq!(s["root"]["readonly"], true);
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/virtmark-x-t"));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 1u64 << 30);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 100);
        let m = s["mounts"].as_array().unwrap();
        assert!(m
            .iter()
            .any(|m| m["destination"] == "/scratch" && m["source"] == "/tmp/b/data"));
        assert!(!m.iter().any(|m| m["destination"] == "/usr"));
        assert!(s["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
    }
}
