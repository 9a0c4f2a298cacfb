//! `docker`, `docker:runsc`: the agent in a Docker container, as a Docker user
//! gets one — Debian's docker.io daemon, overlay2 storage, the default bridge
//! network, `docker run -i` attached to the agent's stdio — and `docker:runsc`
//! the same with gVisor as the container runtime.
//!
//! virtmark starts a private daemon for each instance, which it owns and
//! removes; it never talks to a daemon it did not start (whose containers,
//! images and networks are not virtmark's to change or clean up):
//!
//! - the daemon runs in a network namespace virtmark creates (entered with
//!   `setns`, as `nsenter --net=` does: `ip netns exec` remounts `/sys`, and
//!   dockerd then fails with "Devices cgroup isn't mounted"); its `docker0`
//!   bridge lives there, on virtmark's own range (`10.213.<n>.128/25`), and the
//!   peer of network workloads listens on the bridge's address, so the agent's
//!   traffic takes a Docker user's path (container veth → bridge) and never
//!   leaves virtmark's namespaces;
//! - it runs in a private mount namespace with a tmpfs on `/run` (where
//!   containerd keeps shim sockets and dockerd its plugins), so nothing it
//!   mounts (overlay2 layers, container namespaces) or writes there reaches the
//!   host; its configuration, key, data root, exec root and socket are under the
//!   instance's scratch;
//! - it runs in a cgroup of virtmark's, with everything it forks (containerd,
//!   shims, containers, whose cgroups are relative to it): teardown and
//!   `virtmark cleanup` kill that cgroup as a whole;
//! - the agent image is imported (`docker import`) from a tarball virtmark
//!   builds (the static agent binary and empty mount points; cached per
//!   binary), no registry involved; the container runs with `--init` (Docker's
//!   tini reaps the build workload's orphans), the instance's CPU, memory and
//!   task limits as `docker run` flags, and the host scratch directory as a
//!   bind volume at `/scratch`.
//!
//! Start-up therefore includes a daemon start (about a second here): the
//! instance log records how long each step took.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::cgroup::{self, Limits};
use super::ledger::{Resource, DOCKER_SOCKET};
use super::qemu::Phases;
use super::{
    cache, netns, peer, rootfs, toolchain, tools, Driver, Family, Guard, Instance, StartEnv,
};

/// The Docker driver, with the daemon's default runtime (runc) or gVisor.
pub struct Docker {
    /// Use gVisor (`runsc`) as the container runtime.
    pub gvisor: bool,
}

/// Its names.
pub const FAMILY: Family = Family {
    names: &["docker", "docker:runsc"],
    // gVisor under Docker: `gvisor` stands for it in the default run.
    not_default: &["docker:runsc"],
    make: |n| {
        let gvisor = match n {
            "docker" => false,
            "docker:runsc" => true,
            _ => return None,
        };
        Some(Ok(Box::new(Docker { gvisor }) as Box<dyn Driver>))
    },
};

/// How long the daemon may take to answer on its socket.
const DAEMON_DEADLINE: Duration = Duration::from_secs(60);

/// The image the agent runs from, in each private daemon.
const IMAGE: &str = "virtmark-agent:latest";

impl Driver for Docker {
    fn name(&self) -> &str {
        if self.gvisor {
            "docker:runsc"
        } else {
            "docker"
        }
    }

    fn class(&self) -> &'static str {
        if self.gvisor {
            "application kernel (gVisor under Docker)"
        } else {
            "OS-level virtualization (Docker: bridge network, overlay2)"
        }
    }

    fn available(&self) -> Result<(), String> {
        tools::need_root("a private Docker daemon in namespaces of virtmark's")?;
        tools::need("dockerd", "docker.io")?;
        tools::need("docker", "docker.io")?;
        tools::need("docker-init", "tini")?;
        let mut used = vec!["dockerd", "docker"];
        if self.gvisor {
            tools::runs("runsc", "runsc")?;
            used.push("runsc");
        }
        netns::check_available()?;
        cgroup::check_available()?;
        super::verify::proven(self.name(), &used, |env| self.start(env))
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(5));
        let mut phases = Phases::new();
        guard.create_dir(&env.scratch)?;
        let base = std::fs::canonicalize(&env.scratch)
            .with_context(|| format!("resolving {}", env.scratch.display()))?;
        let (data_root, exec_root, data) = (base.join("d"), base.join("x"), base.join("data"));
        for d in [&data_root, &exec_root, &data] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let sock = exec_root.join(DOCKER_SOCKET);
        if sock.as_os_str().len() > 100 {
            bail!(
                "the Docker socket path {} is too long for a unix socket: set VIRTMARK_SCRATCH to a shorter directory",
                sock.display()
            );
        }
        let tarball = agent_tarball(env, &base)?;
        phases.mark("agent tarball");

        // The daemon's own network namespace, bridge and address range.
        let ns = format!("virtmark-{}-d", env.tag);
        netns::create_netns(&mut guard, &ns)?;
        let gw = std::net::Ipv4Addr::new(10, 213, env.index, 129);
        // The daemon's cgroup: it and all it forks, killed as a whole at the end.
        // It joins every controller's hierarchy (no limits: those are the
        // container's), so that the containers' cgroups, relative to the
        // daemon's, are inside it.
        let cg = cgroup::create(&mut guard, &format!("{}d", env.tag), &Limits::host_wide())?;
        // `…/docker/<id>`, as under Docker's default parent, which is how a
        // process inside knows it is in a Docker container.
        let cg_own = format!("virtmark-dk-{}", env.tag);
        let cg_parent = format!("{cg_own}/docker");
        // On a hybrid host the v2 tree is not the daemon's: record where the
        // runtime makes the container's v2 cgroup (relative to ours there).
        for path in cgroup::runtime_cgroup_dirs(&cg_own)? {
            guard.create(Resource::Cgroup { path }, || Ok(()))?;
        }
        let conf = base.join("daemon.json");
        let mut cfg = json!({
            "data-root": data_root,
            "exec-root": exec_root,
            "pidfile": base.join("dockerd.pid"),
            "hosts": [format!("unix://{}", sock.display())],
            "storage-driver": "overlay2",
            "bip": format!("{gw}/25"),
            "cgroup-parent": cg_parent,
            "deprecated-key-path": base.join("key.json"),
            "log-level": "warn",
        });
        if self.gvisor {
            // ptrace: the KVM platform hangs on this host's nested KVM; host
            // network mode in the container's namespace (see `gvisor`: the
            // packaged runsc refuses its own netstack in any namespace).
            cfg["runtimes"] = json!({"runsc": {
                "path": which("runsc")?,
                "runtimeArgs": [format!("--platform={}", super::gvisor::PLATFORM), "--network=host"]
            }});
        }
        std::fs::write(&conf, serde_json::to_vec_pretty(&cfg)?)
            .with_context(|| format!("writing {}", conf.display()))?;

        let daemon_log = env.log.with_extension("dockerd.log");
        let log = File::create(&daemon_log)
            .with_context(|| format!("creating {}", daemon_log.display()))?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        let procs = cg.procs_files()?;
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec: write(2) on files opened before the fork.
            unsafe {
                cmd.pre_exec(move || cgroup::join_all(&procs));
            }
        }
        netns::spawn_in_netns(&mut cmd, &ns)?;
        super::oci::private_tmpfs(&mut cmd, &["/run".to_string()])?;
        let daemon = cmd.spawn().context("starting dockerd")?;
        let daemon_pid = daemon.id();
        guard.adopt(daemon)?;
        super::tools::wait_for_daemon(
            "dockerd",
            daemon_pid,
            &daemon_log,
            DAEMON_DEADLINE,
            || ping(&sock),
            |l| l.contains("level=error") || l.contains("failed"),
        )?;
        phases.mark("daemon");

        let host = format!("unix://{}", sock.display());
        let out = docker(&host)
            .arg("import")
            .arg(&tarball)
            .arg(IMAGE)
            .stdin(Stdio::null())
            .output()
            .context("running docker import")?;
        if !out.status.success() {
            bail!(
                "docker import {}: {}",
                tarball.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        phases.mark("image import");
        let peer = peer::start_for(&mut guard, env, gw, &ns)?;
        phases.mark("peer");

        let name = format!("virtmark-{}", env.tag);
        let limits = Limits::of(env);
        let mut cmd = docker(&host);
        cmd.args(["run", "-i", "--rm", "--init", "--name", &name])
            .args(["--hostname", "virtmark-docker"])
            .args(["--cpus", &limits.cpus.max(1).to_string()]);
        if let Some(cpus) = &limits.pinned {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            cmd.args(["--cpuset-cpus", &list.join(",")]);
        }
        if let Some(m) = limits.memory {
            cmd.args(["--memory", &m.to_string(), "--memory-swap", &m.to_string()]);
        }
        if let Some(p) = limits.pids {
            cmd.args(["--pids-limit", &p.to_string()]);
        }
        if self.gvisor {
            cmd.args(["--runtime", "runsc"]);
        }
        cmd.arg("-v").arg(format!("{}:/scratch", data.display()));
        if env.toolchain {
            for d in &toolchain::HostToolchain::of_host().dirs {
                cmd.arg("-v").arg(format!("{0}:{0}:ro", d.display()));
            }
        }
        cmd.args([IMAGE, "/virtmark", "agent", "--scratch", "/scratch"]);
        let mut log = phases.log(&env.log, self.name())?;
        log.flush().ok();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        guard.create(
            Resource::Container {
                runtime: "docker".into(),
                id: name.clone(),
                root: Some(exec_root.clone()),
            },
            || Ok(()),
        )?;
        let child = cmd
            .spawn()
            .with_context(|| format!("starting docker run (container {name})"))?;
        Instance::of_child(guard, child, peer)
    }
}

/// `docker -H HOST` (the daemon virtmark started), with a configuration
/// directory of its own so that no user's `~/.docker` is read.
fn docker(host: &str) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["-H", host]).env("DOCKER_CONFIG", "/nonexistent");
    cmd
}

/// The absolute path of `tool` on `PATH`.
fn which(tool: &str) -> Result<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("{tool} is not on PATH"))
}

fn ping(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("OK")
}

/// The tarball of the agent's root file system (the agent at `/virtmark`, its
/// libraries if any, empty mount points), built once per agent binary in
/// virtmark's cache; with the host's toolchain's mount points when a workload
/// compiles (then built in `base`).
fn agent_tarball(env: &StartEnv, base: &Path) -> Result<PathBuf> {
    let build = |out: &Path, root: &Path, toolchain: bool| -> Result<()> {
        // Copies, not hard links: a link made to the agent's inode while tar
        // reads it (another instance's root) changes its ctime, and GNU tar
        // then fails with "file changed as we read it".
        rootfs::build_agent_root(env.exe, root)?;
        if toolchain {
            // `/sbin` a directory of the image's own, not the merged-/usr link
            // into the host's read-only /usr: Docker binds its init at
            // /sbin/docker-init.
            std::fs::create_dir_all(root.join("sbin")).context("creating /sbin in the root")?;
            toolchain::HostToolchain::of_host().prepare_root(root)?;
        }
        let st = Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(["--numeric-owner", "-cf"])
            .arg(out)
            .arg(".")
            .stdin(Stdio::null())
            .status()
            .context("running tar")?;
        if !st.success() {
            bail!("tar of {} failed ({st})", root.display());
        }
        Ok(())
    };
    if env.toolchain {
        let out = base.join("agent.tar");
        build(&out, &base.join("root"), true)?;
        return Ok(out);
    }
    let key = cache::Key::new(1).file(env.exe)?;
    cache::entry("docker-agent", "tar", key, |p| {
        let root = base.join("root");
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let r = build(p, &root, false);
        let _ = std::fs::remove_dir_all(&root);
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes() {
        for (n, gvisor) in [("docker", false), ("docker:runsc", true)] {
            let d = (FAMILY.make)(n).expect("a docker name").expect("a driver");
            assert_eq!(d.name(), n);
            assert_eq!(Docker { gvisor }.class(), d.class());
        }
        assert!((FAMILY.make)("docker:crun").is_none());
    }

    #[test]
    fn nothing_answers_on_a_missing_socket() {
        assert!(!ping(Path::new("/nonexistent/docker.sock")));
    }
}
