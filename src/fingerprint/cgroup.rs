//! cgroup version and the limits that bind this process (memory, CPU quota, pids),
//! for cgroup v1, v2 and the hybrid layout. The effective limit is the tightest
//! one on the path from the process's cgroup up to the root of the hierarchy.

use serde::{Deserialize, Serialize};

use super::parse::{self, CgroupLine, Mount};
use super::source::Source;

/// cgroup layout and limits as seen from inside.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cgroup {
    /// `v1`, `v2`, `hybrid` (v1 controllers plus the v2 unified tree), or empty.
    pub version: String,
    /// The process's cgroups, `controllers:path` as in `/proc/self/cgroup`.
    pub paths: Vec<String>,
    /// Memory limit, bytes.
    pub memory_max: Option<u64>,
    /// CPU quota per period, µs (CFS bandwidth).
    pub cpu_quota_us: Option<u64>,
    /// CPU period, µs.
    pub cpu_period_us: Option<u64>,
    /// CPUs' worth of time the quota allows (quota / period).
    pub cpu_quota_cpus: Option<f64>,
    /// Maximum number of tasks.
    pub pids_max: Option<u64>,
}

/// Controllers that make a v1 mount a real hierarchy (`name=systemd` is not one).
fn is_v1_controller_mount(m: &Mount) -> bool {
    m.fstype == "cgroup"
        && m.options
            .iter()
            .any(|o| !o.contains('=') && is_controller(o))
}

fn is_controller(o: &str) -> bool {
    matches!(
        o,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "pids"
            | "blkio"
            | "io"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "perf_event"
            | "hugetlb"
            | "rdma"
            | "misc"
    )
}

/// Directories of the process's cgroup for `controller` and each ancestor up to
/// the mount's root, innermost first: v1 if a v1 hierarchy carries the controller,
/// else the v2 tree.
fn chain(mounts: &[Mount], lines: &[CgroupLine], controller: &str) -> Vec<String> {
    let v1 = lines
        .iter()
        .find(|l| l.id != 0 && l.controllers.iter().any(|c| c == controller))
        .and_then(|l| {
            let m = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))?;
            Some((l, m))
        });
    let found = v1.or_else(|| {
        let l = lines.iter().find(|l| l.id == 0)?;
        let m = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup2")
            .min_by_key(|m| m.point.len())?;
        Some((l, m))
    });
    let Some((line, mount)) = found else {
        return Vec::new();
    };
    let root = mount.root.trim_end_matches('/');
    let rel = line.path.strip_prefix(root).unwrap_or("");
    let rel = if rel.starts_with('/') || rel.is_empty() {
        rel
    } else {
        ""
    };
    let base = mount.point.trim_end_matches('/');
    let mut out = Vec::new();
    let mut rel = rel.trim_end_matches('/').to_string();
    loop {
        out.push(format!("{base}{rel}"));
        match rel.rfind('/') {
            Some(i) => rel.truncate(i),
            None => break,
        }
        if rel.is_empty() {
            out.push(base.to_string());
            break;
        }
    }
    out.dedup();
    out
}

/// Tightest value of a limit file along a chain of directories.
fn tightest(src: &dyn Source, dirs: &[String], file: &str) -> Option<u64> {
    dirs.iter()
        .filter_map(|d| src.read(&format!("{d}/{file}")))
        .filter_map(|t| parse::limit(&t))
        .min()
}

/// Read the cgroup layout and limits.
pub fn collect(src: &dyn Source, mounts: &[Mount], lines: &[CgroupLine]) -> Cgroup {
    let has_v1 = mounts.iter().any(is_v1_controller_mount);
    let has_v2 = mounts.iter().any(|m| m.fstype == "cgroup2")
        || (lines.len() == 1 && lines[0].id == 0 && lines[0].controllers.is_empty());
    let version = match (has_v1, has_v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "",
    };

    let mem = chain(mounts, lines, "memory");
    let memory_max = tightest(src, &mem, "memory.max")
        .into_iter()
        .chain(tightest(src, &mem, "memory.limit_in_bytes"))
        .min();
    let pids = chain(mounts, lines, "pids");
    let pids_max = tightest(src, &pids, "pids.max");

    // The binding CPU quota: the smallest quota/period ratio on the path.
    let mut best: Option<(u64, u64)> = None;
    for d in chain(mounts, lines, "cpu") {
        let qp = match src.read(&format!("{d}/cpu.max")) {
            Some(t) => parse::cpu_max(&t).and_then(|(q, p)| Some((q?, p))),
            None => {
                let q = src.read(&format!("{d}/cpu.cfs_quota_us"));
                let p = src.read(&format!("{d}/cpu.cfs_period_us"));
                q.as_deref()
                    .and_then(parse::limit)
                    .zip(p.as_deref().and_then(parse::limit))
            }
        };
        if let Some((q, p)) = qp.filter(|&(_, p)| p > 0) {
            let better =
                best.is_none_or(|(bq, bp)| (q as f64 / p as f64) < (bq as f64 / bp as f64));
            if better {
                best = Some((q, p));
            }
        }
    }

    Cgroup {
        version: version.to_string(),
        paths: lines
            .iter()
            .map(|l| format!("{}:{}", l.controllers.join(","), l.path))
            .collect(),
        memory_max,
        cpu_quota_us: best.map(|b| b.0),
        cpu_period_us: best.map(|b| b.1),
        cpu_quota_cpus: best.map(|(q, p)| q as f64 / p as f64),
        pids_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::source::Fake;

    /// This host's layout: v1 controllers under /sys/fs/cgroup/*, v2 at .../unified.
    const HYBRID_MOUNTS: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/adf9\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_v1_memory_limit_walks_up_to_the_tightest() {
        let src = Fake::default()
            .file(
                "/sys/fs/cgroup/memory/process_api/adf9/memory.limit_in_bytes",
                "9223372036854771712\n",
            )
            .file(
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "1073741824\n",
            )
            .file(
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            )
            .file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
            .file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
            .file("/sys/fs/cgroup/pids/pids.max", "max\n");
        let c = collect(
            &src,
            &parse::mountinfo(HYBRID_MOUNTS),
            &parse::proc_cgroup(HYBRID_CGROUP),
        );
        assert_eq!(c.version, "hybrid");
        assert_eq!(c.memory_max, Some(1 << 30));
        assert_eq!(c.cpu_quota_us, None);
        assert_eq!(c.pids_max, None);
        assert_eq!(c.paths[2], "memory:/process_api/adf9");
    }

    #[test]
    fn v2_container_with_cgroup_namespace() {
        // Inside a container with a cgroup namespace: its cgroup is "/" and the
        // v2 tree is mounted with root "/".
        let mounts = "30 20 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let src = Fake::default()
            .file("/sys/fs/cgroup/memory.max", "536870912\n")
            .file("/sys/fs/cgroup/cpu.max", "150000 100000\n")
            .file("/sys/fs/cgroup/pids.max", "512\n");
        let c = collect(
            &src,
            &parse::mountinfo(mounts),
            &parse::proc_cgroup("0::/\n"),
        );
        assert_eq!(c.version, "v2");
        assert_eq!(c.memory_max, Some(512 << 20));
        assert_eq!(c.cpu_quota_us, Some(150_000));
        assert_eq!(c.cpu_period_us, Some(100_000));
        assert_eq!(c.cpu_quota_cpus, Some(1.5));
        assert_eq!(c.pids_max, Some(512));
    }

    #[test]
    fn v2_nested_path_takes_the_tightest_cpu_ratio() {
        let mounts = "30 20 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let src = Fake::default()
            .file("/sys/fs/cgroup/virtmark/run1/cpu.max", "max 100000\n")
            .file("/sys/fs/cgroup/virtmark/cpu.max", "50000 100000\n")
            .file("/sys/fs/cgroup/virtmark/run1/memory.max", "max\n");
        let c = collect(
            &src,
            &parse::mountinfo(mounts),
            &parse::proc_cgroup("0::/virtmark/run1\n"),
        );
        assert_eq!(c.cpu_quota_cpus, Some(0.5));
        assert_eq!(c.memory_max, None);
        assert_eq!(
            chain(
                &parse::mountinfo(mounts),
                &parse::proc_cgroup("0::/virtmark/run1\n"),
                "memory"
            ),
            [
                "/sys/fs/cgroup/virtmark/run1",
                "/sys/fs/cgroup/virtmark",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn nothing_mounted_nothing_known() {
        let c = collect(&Fake::default(), &[], &[]);
        assert_eq!(c, Cgroup::default());
    }
}
