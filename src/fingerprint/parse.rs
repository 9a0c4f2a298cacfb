//! Pure parsers for the files the fingerprint reads: `/proc/cpuinfo`,
//! `/proc/meminfo`, `/proc/self/cgroup`, `/proc/self/mountinfo`, cgroup limit
//! files, CPU lists, `environ` blocks and namespace links.

/// The fields of `/proc/cpuinfo` the fingerprint uses (first processor).
#[derive(Debug, Default, PartialEq)]
pub struct CpuInfo {
    /// `vendor_id` (`AuthenticAMD`, `User Mode Linux`…).
    pub vendor: String,
    /// `model name`.
    pub model: String,
    /// `flags`, plus Intel's separate `vmx flags` line.
    pub flags: Vec<String>,
    /// UML's `host` line: the kernel the UML guest runs on.
    pub host: String,
    /// Number of `processor` entries.
    pub processors: usize,
}

/// Value of `key` in a `key<tabs>: value` line, first occurrence.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Parse `/proc/cpuinfo`.
pub fn cpuinfo(text: &str) -> CpuInfo {
    let mut flags: Vec<String> = Vec::new();
    for key in ["flags", "vmx flags"] {
        for f in field(text, key).unwrap_or_default().split_whitespace() {
            if !flags.iter().any(|x| x == f) {
                flags.push(f.to_string());
            }
        }
    }
    CpuInfo {
        vendor: field(text, "vendor_id").unwrap_or_default().to_string(),
        model: field(text, "model name").unwrap_or_default().to_string(),
        flags,
        host: field(text, "host").unwrap_or_default().to_string(),
        processors: text
            .lines()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| k.trim() == "processor")
            })
            .count(),
    }
}

/// A `/proc/meminfo` entry in bytes (`MemTotal:  24684096 kB`).
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let v = field(text, key)?;
    let mut it = v.split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    Some(match it.next() {
        Some("kB") => n.saturating_mul(1024),
        _ => n,
    })
}

/// Count the CPUs of a kernel CPU list (`0-3,8,10-11` → 7).
pub fn cpu_list_len(text: &str) -> Option<usize> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut n = 0;
    for part in text.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupLine {
    /// Hierarchy id; 0 for the cgroup v2 unified hierarchy.
    pub id: u32,
    /// Controllers bound to the hierarchy (`cpu,cpuacct`; `name=systemd`; empty for v2).
    pub controllers: Vec<String>,
    /// Path of the process's cgroup inside the hierarchy.
    pub path: String,
}

/// Parse `/proc/self/cgroup`; malformed lines are skipped.
pub fn proc_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?.trim().parse().ok()?;
            let controllers = it.next()?;
            let path = it.next()?;
            Some(CgroupLine {
                id,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Root of the mount within its filesystem (a cgroup path for cgroup mounts).
    pub root: String,
    /// Where it is mounted.
    pub point: String,
    /// Filesystem type (`cgroup2`, `overlay`…).
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options (for cgroup v1: the controllers).
    pub options: Vec<String>,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo`; malformed lines are skipped.
pub fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            Some(Mount {
                root: unescape(pre.get(3)?),
                point: unescape(pre.get(4)?),
                fstype: post.next()?.to_string(),
                source: unescape(post.next()?),
                options: post
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// A cgroup limit file holding a number or `max` (v2), or a v1 number where
/// "unlimited" is a huge value (≥ 2^62) or `-1`. `None` = no limit or unreadable.
pub fn limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" || t.starts_with('-') {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// cgroup v2 `cpu.max` (`50000 100000`, `max 100000`) → (quota µs if any, period µs).
pub fn cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next().unwrap_or("100000").parse().ok()?;
    let quota = if quota == "max" {
        None
    } else {
        Some(quota.parse().ok()?)
    };
    Some((quota, period))
}

/// A variable from a NUL-separated `environ` block.
pub fn environ_var(block: &str, name: &str) -> Option<String> {
    block.split('\0').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// Inode number of a namespace link (`pid:[4026531836]` → 4026531836).
pub fn ns_inode(link: &str) -> Option<u64> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// Inode of each namespace type's initial (host) namespace: fixed by the kernel
/// (`include/linux/proc_ns.h`: `PROC_IPC_INIT_INO = 0xEFFFFFFF` …).
pub fn initial_ns_inode(kind: &str) -> Option<u64> {
    Some(match kind {
        "ipc" => 0xEFFF_FFFF,
        "uts" => 0xEFFF_FFFE,
        "user" => 0xEFFF_FFFD,
        "pid" => 0xEFFF_FFFC,
        "cgroup" => 0xEFFF_FFFB,
        "time" => 0xEFFF_FFFA,
        _ => return None,
    })
}

/// Kernel release from `/proc/version` (`Linux version 4.4.0 #1 …` → `4.4.0`).
pub fn version_release(proc_version: &str) -> Option<&str> {
    proc_version
        .strip_prefix("Linux version ")?
        .split_whitespace()
        .next()
}

/// The `/proc/version` gVisor's sentry reports, unchanged since its release
/// (pkg/sentry/fsimpl/proc: `Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016`).
pub fn is_gvisor_version(proc_version: &str) -> bool {
    proc_version.contains("4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016")
}

/// Sample files for tests.
#[cfg(test)]
pub mod samples {
    /// `/proc/cpuinfo` captured inside `linux` (UML 6.1) on this host (flags abridged).
    pub const UML_CPUINFO: &str = "processor\t: 0\nvendor_id\t: User Mode Linux\n\
            model name\t: UML\nmode\t\t: skas\n\
            host\t\t: Linux vm 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0 x86_64\n\
            fpu\t\t: yes\nflags\t\t: fpu vme de pse tsc constant_tsc nonstop_tsc hypervisor avx2\n\
            cache_alignment\t: 64\nbogomips\t: 2242.96\n\n";
}

#[cfg(test)]
mod tests {
    use super::samples::UML_CPUINFO;
    use super::*;

    /// `/proc/cpuinfo` of this KVM guest (first processor, abridged flags).
    const KVM_CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
        model\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme tsc constant_tsc nonstop_tsc \
        hypervisor avx2\nbugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n\
        model name\t: AMD EPYC\nflags\t\t: fpu vme\n";

    /// Intel host with the `vmx flags` line (kernel ≥ 5.8).
    const INTEL_CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
        model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: fpu vmx ept vpid\n\
        vmx flags\t: vnmi preemption_timer ept vpid unrestricted_guest\n";

    #[test]
    fn cpuinfo_fields_of_a_kvm_guest() {
        let c = cpuinfo(KVM_CPUINFO);
        assert_eq!(c.vendor, "AuthenticAMD");
        assert_eq!(c.model, "AMD EPYC");
        assert_eq!(c.processors, 2);
        assert!(c.flags.iter().any(|f| f == "hypervisor"));
        assert_eq!(c.flags.len(), 7);
        assert_eq!(c.host, "");
    }

    #[test]
    fn cpuinfo_of_uml() {
        let c = cpuinfo(UML_CPUINFO);
        assert_eq!(c.vendor, "User Mode Linux");
        assert_eq!(c.model, "UML");
        assert_eq!(
            c.host,
            "Linux vm 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
        );
        assert_eq!(c.processors, 1);
    }

    #[test]
    fn cpuinfo_merges_vmx_flags_once() {
        let c = cpuinfo(INTEL_CPUINFO);
        assert_eq!(
            c.flags,
            [
                "fpu",
                "vmx",
                "ept",
                "vpid",
                "vnmi",
                "preemption_timer",
                "unrestricted_guest"
            ]
        );
    }

    #[test]
    fn meminfo_in_bytes() {
        let m =
            "MemTotal:       24684096 kB\nMemFree:        24680840 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(m, "MemTotal"), Some(24_684_096 * 1024));
        assert_eq!(meminfo_bytes(m, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(m, "Nope"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_len("0-1\n"), Some(2));
        assert_eq!(cpu_list_len("0-3,8,10-11"), Some(7));
        assert_eq!(cpu_list_len("5"), Some(1));
        assert_eq!(cpu_list_len(""), None);
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len("x"), None);
    }

    #[test]
    fn proc_cgroup_v1_hybrid_and_v2_lines() {
        // This host: cgroup v1 controllers plus the v2 unified hierarchy.
        let text = "9:name=systemd:/\n4:memory:/process_api/adf9d54e\n2:cpu,cpuacct:/\n0::/\n";
        let l = proc_cgroup(text);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].controllers, ["name=systemd"]);
        assert_eq!(l[1].path, "/process_api/adf9d54e");
        assert_eq!(l[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            l[3],
            CgroupLine {
                id: 0,
                controllers: vec![],
                path: "/".into()
            }
        );
        // Docker under cgroup v1; a path with a colon survives.
        let d = proc_cgroup("12:pids:/docker/0123abcd\n1:name=systemd:/a:b\ngarbage\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].path, "/a:b");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
            50 27 0:40 /a\\040b /mnt/with\\040space rw - ext4 /dev/vda rw\n";
        let m = mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].point, "/sys/fs/cgroup/memory");
        assert_eq!(m[0].options, ["rw", "memory"]);
        assert_eq!(m[1].fstype, "cgroup2");
        assert_eq!(m[2].point, "/mnt/with space");
        assert_eq!(m[2].root, "/a b");
        assert_eq!(m[2].source, "/dev/vda");
    }

    #[test]
    fn limits_and_cpu_max() {
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("9223372036854771712\n"), None);
        assert_eq!(limit("-1"), None);
        assert_eq!(limit("536870912\n"), Some(536_870_912));
        assert_eq!(cpu_max("max 100000\n"), Some((None, 100_000)));
        assert_eq!(cpu_max("150000 100000"), Some((Some(150_000), 100_000)));
        assert_eq!(cpu_max(""), None);
    }

    #[test]
    fn environ_and_namespaces() {
        let env = "PATH=/bin\0container=podman\0HOME=/root\0";
        assert_eq!(environ_var(env, "container").as_deref(), Some("podman"));
        assert_eq!(environ_var(env, "TERM"), None);
        assert_eq!(ns_inode("pid:[4026531836]"), Some(4_026_531_836));
        assert_eq!(ns_inode("pid:[111]"), Some(111));
        assert_eq!(ns_inode("garbage"), None);
        assert_eq!(initial_ns_inode("pid"), Some(4_026_531_836));
        assert_eq!(initial_ns_inode("mnt"), None);
    }

    #[test]
    fn versions() {
        let gv = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n";
        assert_eq!(version_release(gv), Some("4.4.0"));
        assert!(is_gvisor_version(gv));
        let kvm = "Linux version 6.18.44-fc-v595 (builder@sandboxing) (gcc (GCC) 15.3.0) #1 SMP";
        assert_eq!(version_release(kvm), Some("6.18.44-fc-v595"));
        assert!(!is_gvisor_version(kvm));
    }
}
