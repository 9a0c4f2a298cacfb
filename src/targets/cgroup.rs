//! Child cgroups for container targets, made under virtmark's own cgroups (as
//! `/proc/self/cgroup` names them) so that a session's own limits still bind:
//! v1 controllers `cpu`, `cpuset`, `memory` and `pids`, and the v2 tree where it
//! is mounted (on a hybrid host it carries membership, so teardown can kill the
//! whole tree with `cgroup.kill`; on a pure v2 host it carries the limits).
//! Every directory is recorded in the ledger before it is made.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ledger::Resource;
use super::Guard;

/// CFS period used for CPU quotas, µs.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Task limit of a container (the `build` workload runs make and compilers).
pub const PIDS_MAX: u64 = 4096;

/// Limits a container gets.
#[derive(Debug, Clone)]
pub struct Limits {
    /// CPUs: a CFS quota of `cpus` × period, and the first `cpus` CPUs of the
    /// cpuset (unless `pinned`).
    pub cpus: usize,
    /// Host CPUs of the cpuset, when pinned (`scale --pin`).
    pub pinned: Option<Vec<usize>>,
    /// Memory limit, bytes; `None`: no memory limit (`isolate --no-limits`).
    pub memory: Option<u64>,
    /// Task limit; `None`: no task limit (`isolate --no-limits`).
    pub pids: Option<u64>,
    /// Join the CPU controller even when `cpus` is every CPU: a CPU share of its
    /// own against the other groups.
    pub cpu_share: bool,
}

impl Limits {
    /// No limit at all, every CPU, but a CPU share of its own: the group of a
    /// runtime's daemon (dockerd, podman), whose containers' groups inside it
    /// carry the instance's limits.
    pub fn host_wide() -> Limits {
        Limits {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pinned: None,
            memory: None,
            pids: None,
            cpu_share: true,
        }
    }

    /// The limits of an instance: its CPUs, its pinning, its memory and the task
    /// limit, or no memory and task limits when the run lifts them.
    pub fn of(env: &super::StartEnv) -> Limits {
        Limits {
            cpus: env.cpus,
            pinned: env.cpuset.clone(),
            memory: (!env.unlimited).then_some(env.memory),
            pids: (!env.unlimited).then_some(PIDS_MAX),
            cpu_share: env.cpu_share,
        }
    }

    /// The cpuset's CPU list: the pinned CPUs, else the first `cpus` of `parent`.
    pub fn cpu_list(&self, parent: &str) -> String {
        match &self.pinned {
            Some(p) if !p.is_empty() => {
                p.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
            }
            _ => first_cpus(parent, self.cpus),
        }
    }
}

/// One hierarchy: where it is mounted and which of our controllers it carries.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    /// v1 controllers of this mount (empty for v2).
    controllers: Vec<String>,
    v2: bool,
    /// virtmark's own cgroup in it.
    own: String,
}

const WANTED: [&str; 4] = ["cpu", "cpuset", "memory", "pids"];

fn hierarchies() -> Result<Vec<Hierarchy>> {
    let own = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mut out = Vec::new();
    for m in mounts.lines() {
        let f: Vec<&str> = m.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (point, fstype, opts) = (f[1], f[2], f[3]);
        if fstype == "cgroup" {
            let ctrls: Vec<String> = opts
                .split(',')
                .filter(|o| WANTED.contains(o))
                .map(String::from)
                .collect();
            if ctrls.is_empty() {
                continue;
            }
            let line = own.lines().find(|l| {
                let mut p = l.splitn(3, ':');
                let _ = p.next();
                p.next()
                    .is_some_and(|c| c.split(',').any(|c| c == ctrls[0].as_str()))
            });
            if let Some(path) = line.and_then(|l| l.splitn(3, ':').nth(2)) {
                out.push(Hierarchy {
                    mount: point.into(),
                    controllers: ctrls,
                    v2: false,
                    own: path.to_string(),
                });
            }
        } else if fstype == "cgroup2" {
            if out.iter().any(|h: &Hierarchy| h.v2) {
                continue;
            }
            if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
                out.push(Hierarchy {
                    mount: point.into(),
                    controllers: Vec::new(),
                    v2: true,
                    own: path.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Whether cgroups can be made here: a v1 controller or a v2 tree, writable.
pub fn check_available() -> Result<(), String> {
    let hs = hierarchies().map_err(|e| format!("{e:#}"))?;
    if hs.is_empty() {
        return Err("no cgroup hierarchy is mounted (neither v1 controllers nor v2)".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root to create cgroups".into());
    }
    Ok(())
}

/// `name` under virtmark's own cgroup in every mounted hierarchy (every v1
/// hierarchy, named ones included, and the v2 tree): where an OCI runtime given
/// the relative cgroups path `name` makes its cgroups.
pub fn runtime_cgroup_dirs(name: &str) -> Result<Vec<PathBuf>> {
    let own = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mut out = Vec::new();
    for m in mounts.lines() {
        let f: Vec<&str> = m.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (point, fstype, opts) = (f[1], f[2], f[3]);
        let path = if fstype == "cgroup2" {
            own.lines().find_map(|l| l.strip_prefix("0::"))
        } else if fstype == "cgroup" {
            let opts: Vec<&str> = opts.split(',').collect();
            own.lines().find_map(|l| {
                let mut p = l.splitn(3, ':');
                let _ = p.next();
                let ctrls = p.next()?;
                let path = p.next()?;
                let named = ctrls.split(',').all(|c| opts.contains(&c)) && !ctrls.is_empty();
                named.then_some(path)
            })
        } else {
            None
        };
        if let Some(path) = path {
            out.push(
                Path::new(point)
                    .join(path.trim_start_matches('/'))
                    .join(name),
            );
        }
    }
    Ok(out)
}

/// CPUs `0-3,6` → list.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<usize>().ok()),
        }
    }
    out
}

/// The first `n` CPUs of the list `s`, as a cpu list (`0-1`).
pub fn first_cpus(s: &str, n: usize) -> String {
    let cpus = parse_cpu_list(s);
    let take: Vec<String> = cpus.iter().take(n.max(1)).map(|c| c.to_string()).collect();
    take.join(",")
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))
}

/// The cgroups of one container.
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    /// Every directory made (v1 ones and the v2 one).
    pub dirs: Vec<PathBuf>,
    /// The path relative to virtmark's own cgroup (`virtmark-<tag>`).
    pub name: String,
    /// The cpus the cpuset allows (cpu list), when a cpuset was made.
    pub cpuset: Option<String>,
}

impl Cgroups {
    /// Open, for writing, the file of every cgroup through which a child joins
    /// it between fork and exec with one `write(2)` each ([`join_all`]).
    ///
    /// On v1 hierarchies that is `tasks`, not `cgroup.procs`: writing `0` to
    /// `tasks` moves only the calling thread, which for a freshly forked child is
    /// the whole process, and the kernel then skips the threadgroup lock whose
    /// RCU synchronization makes a `cgroup.procs` write cost 5–20 ms here against
    /// about 25 µs (measured on this kernel, 6.18). The v2 tree has no `tasks`.
    pub fn procs_files(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| {
                let tasks = d.join("tasks");
                let p = if tasks.exists() {
                    tasks
                } else {
                    d.join("cgroup.procs")
                };
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .with_context(|| format!("opening {}", p.display()))
            })
            .collect()
    }
}

/// Between fork and exec, in a single-threaded child: move the calling process
/// into the cgroups whose membership files ([`Cgroups::procs_files`]) are
/// `files`. Only `write(2)`: async-signal-safe.
pub fn join_all(files: &[File]) -> std::io::Result<()> {
    for f in files {
        // SAFETY: write(2) on a file descriptor we own, from a static buffer.
        let n = unsafe { nix::libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Make `virtmark-<tag>` under virtmark's own cgroup in every hierarchy that
/// carries cpu, cpuset, memory or pids (and the v2 tree), with `limits`.
pub fn create(guard: &mut Guard, tag: &str, limits: &Limits) -> Result<Cgroups> {
    let name = format!("virtmark-{tag}");
    let mut cg = Cgroups {
        name: name.clone(),
        ..Cgroups::default()
    };
    let all = hierarchies()?;
    // A container joins only the hierarchies that limit something: none for cpu /
    // cpuset when it may use every CPU (a quota of every CPU would only add CFS
    // bandwidth accounting to the measurement), and no v2 membership when v1
    // carries the memory controller (hybrid layout: the v2 tree would only hold
    // it, not limit it, and a v2 `cgroup.procs` write costs milliseconds here).
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_limited = limits.cpus < host_cpus || limits.pinned.is_some() || limits.cpu_share;
    let hybrid = all
        .iter()
        .any(|h| !h.v2 && h.controllers.iter().any(|c| c == "memory"));
    let needed = |h: &Hierarchy| {
        if h.v2 {
            return !hybrid;
        }
        h.controllers
            .iter()
            .any(|c| matches!(c.as_str(), "memory" | "pids") || cpu_limited)
    };
    for h in all.into_iter().filter(|h| needed(h)) {
        let parent = h.mount.join(h.own.trim_start_matches('/'));
        let dir = parent.join(&name);
        guard.create(Resource::Cgroup { path: dir.clone() }, || {
            std::fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))
        })?;
        cg.dirs.push(dir.clone());
        if h.v2 {
            set_v2_limits(&parent, &dir, limits, &mut cg)?;
            continue;
        }
        for c in &h.controllers {
            match c.as_str() {
                "cpu" => {
                    write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    let quota = CPU_PERIOD_US * limits.cpus.max(1) as u64;
                    write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
                "cpuset" => {
                    let mems = std::fs::read_to_string(parent.join("cpuset.mems"))
                        .context("reading cpuset.mems")?;
                    let cpus = std::fs::read_to_string(parent.join("cpuset.cpus"))
                        .context("reading cpuset.cpus")?;
                    write(&dir, "cpuset.mems", mems.trim())?;
                    let mine = limits.cpu_list(&cpus);
                    write(&dir, "cpuset.cpus", &mine)?;
                    cg.cpuset = Some(mine);
                }
                "memory" => {
                    if let Some(m) = limits.memory {
                        write(&dir, "memory.limit_in_bytes", &m.to_string())?
                    }
                }
                "pids" => {
                    if let Some(p) = limits.pids {
                        write(&dir, "pids.max", &p.to_string())?
                    }
                }
                _ => {}
            }
        }
    }
    Ok(cg)
}

/// On the v2 tree, enable and set the controllers it carries (those not bound to
/// a v1 hierarchy). A parent with processes of its own cannot delegate (the
/// "no internal processes" rule), which leaves the v2 cgroup for membership only.
fn set_v2_limits(parent: &Path, dir: &Path, limits: &Limits, cg: &mut Cgroups) -> Result<()> {
    let avail = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    for c in avail.split_whitespace().filter(|c| WANTED.contains(c)) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .open(parent.join("cgroup.subtree_control"))
        {
            let _ = f.write_all(format!("+{c}").as_bytes());
        }
    }
    let enabled = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in enabled.split_whitespace() {
        match c {
            "memory" => {
                if let Some(m) = limits.memory {
                    write(dir, "memory.max", &m.to_string())?
                }
            }
            "pids" => {
                if let Some(p) = limits.pids {
                    write(dir, "pids.max", &p.to_string())?
                }
            }
            "cpu" => {
                let quota = CPU_PERIOD_US * limits.cpus.max(1) as u64;
                write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
            }
            "cpuset" if cg.cpuset.is_none() => {
                let cpus = std::fs::read_to_string(parent.join("cpuset.cpus.effective"))
                    .unwrap_or_default();
                let mine = limits.cpu_list(&cpus);
                write(dir, "cpuset.cpus", &mine)?;
                cg.cpuset = Some(mine);
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("5"), vec![5]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(first_cpus("0-3,6", 2), "0,1");
        assert_eq!(first_cpus("2,4-5", 3), "2,4,5");
        assert_eq!(first_cpus("0-1", 0), "0");
    }
}
