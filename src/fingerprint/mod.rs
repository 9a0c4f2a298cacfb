//! What an environment looks like from inside: CPU, memory, kernel, clock source,
//! cgroup limits and the virtualization it runs under. The agent answers
//! `fingerprint` with this; the host records its own next to every run;
//! `virtmark detect` prints it.
//!
//! Collection never fails and stays cheap (a few dozen small files, CPUID): what
//! cannot be read is left empty. Every struct is `#[serde(default)]`, so JSON
//! written by an older virtmark still parses.

mod cgroup;
mod cpuid;
mod detect;
mod parse;
mod source;
pub mod storage;
mod summary;

use serde::{Deserialize, Serialize};

pub use cgroup::Cgroup;

/// What kind of layer an environment runs under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Nothing detected: bare metal, or invisible to us.
    #[default]
    None,
    /// Hardware-assisted virtual machine (KVM, Hyper-V, VMware, Xen HVM…).
    Vm,
    /// Shared kernel with namespaces and cgroups (Docker, Podman, LXC, OCI…).
    Container,
    /// A user-space kernel intercepting system calls (gVisor).
    Sandbox,
    /// A guest kernel modified to run without hardware support (UML, Xen PV).
    Paravirt,
    /// Binary translation (QEMU TCG).
    Emulation,
    /// A kind written by a newer virtmark.
    #[serde(other)]
    Unknown,
}

impl Kind {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Vm => "vm",
            Kind::Container => "container",
            Kind::Sandbox => "sandbox",
            Kind::Paravirt => "paravirt",
            Kind::Emulation => "emulation",
            Kind::Unknown => "unknown",
        }
    }
}

/// How sure a layer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Signs that only this environment produces (CPUID, namespaces, cgroup paths).
    #[default]
    Strong,
    /// Only a marker file that may be left over (e.g. `/.dockerenv` in a VM image).
    Weak,
}

/// One virtualization layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layer {
    /// VM, container, sandbox…
    pub kind: Kind,
    /// Technology, named as virt-what names it where it does (`kvm`, `qemu`,
    /// `xen`, `docker`, `lxc`, `uml`…), else `gvisor`, `virtmark-ns`, `oci`,
    /// `namespaces`.
    pub technology: String,
    /// Product detail where known (DMI vendor and product, `dom0`, `runsc`).
    pub product: String,
    /// Strong or weak.
    pub confidence: Confidence,
    /// What was seen, one sentence each.
    pub evidence: Vec<String>,
}

/// The conclusion: the innermost layer we are sure of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    /// `none`, `vm`, `container`, `sandbox`, `paravirt`, `emulation`.
    pub kind: Kind,
    /// `none` or the technology name.
    pub technology: String,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            kind: Kind::None,
            technology: "none".into(),
        }
    }
}

/// Firmware (SMBIOS/DMI) strings from `/sys/class/dmi/id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dmi {
    /// `sys_vendor`.
    pub sys_vendor: String,
    /// `product_name`.
    pub product_name: String,
    /// `product_version`.
    pub product_version: String,
    /// `bios_vendor`.
    pub bios_vendor: String,
    /// `board_vendor`.
    pub board_vendor: String,
}

impl Dmi {
    /// No DMI table visible (UML, gVisor, Firecracker, many containers).
    pub fn is_empty(&self) -> bool {
        self.sys_vendor.is_empty()
            && self.product_name.is_empty()
            && self.bios_vendor.is_empty()
            && self.board_vendor.is_empty()
    }

    /// `sys_vendor product_name`.
    pub fn product(&self) -> String {
        [&self.sys_vendor, &self.product_name]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// All non-empty fields, `name "value"`.
    pub fn summary(&self) -> String {
        [
            ("sys_vendor", &self.sys_vendor),
            ("product_name", &self.product_name),
            ("bios_vendor", &self.bios_vendor),
            ("board_vendor", &self.board_vendor),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k} \"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// One of this process's namespaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespace {
    /// `pid`, `uts`, `ipc`, `user`, `cgroup`, `mnt`, `net`, `time`.
    pub kind: String,
    /// Inode number of the namespace.
    pub id: u64,
    /// Whether it is the host's initial namespace (fixed inode numbers; unknown
    /// for `mnt` and `net`, and under gVisor).
    pub initial: Option<bool>,
    /// Whether pid 1 shares it (unknown when pid 1's links are unreadable).
    pub same_as_pid1: Option<bool>,
}

/// CPU as seen from inside.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// `vendor_id`.
    pub vendor: String,
    /// `model name`.
    pub model: String,
    /// CPUs online (`/sys/devices/system/cpu/online`).
    pub online: usize,
    /// CPUs this process may run on (affinity).
    pub affinity: usize,
    /// Which CPUs those are (`Cpus_allowed_list` of `/proc/self/status`: `1`,
    /// `0-3`): under `scale --pin`, each instance's own CPU.
    pub affinity_list: String,
    /// CPUs' worth of time the cgroup quota allows, if limited.
    pub quota: Option<f64>,
    /// CPUID hypervisor-present bit.
    pub hypervisor_bit: bool,
    /// CPUID leaf 0x40000000 vendor signature.
    pub hypervisor_signature: String,
    /// Flags that matter to virtualization (vmx, svm, ept, npt, constant_tsc…).
    pub flags: Vec<String>,
}

/// Memory as seen from inside.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// `MemTotal`, bytes.
    pub total: u64,
    /// cgroup memory limit, bytes.
    pub cgroup_limit: Option<u64>,
    /// Transparent huge pages: the mode selected in
    /// `/sys/kernel/mm/transparent_hugepage/enabled` (`always`, `madvise`, `never`).
    pub thp: String,
    /// A virtio balloon reports free pages to the hypervisor
    /// (VIRTIO_BALLOON_F_REPORTING): freed memory goes back to the host, and the
    /// next touch of it costs the host a fault.
    pub free_page_reporting: bool,
    /// Proactive reclaim running in this kernel (DAMON schemes): what it does to
    /// which memory, e.g. `DAMON pageout of memory idle for 60 s`; empty if none.
    pub proactive_reclaim: String,
}

/// Whether this environment can run KVM guests itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Kvm {
    /// `/dev/kvm` exists.
    pub dev_kvm: bool,
    /// KVM modules loaded (`kvm`, `kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub modules: Vec<String>,
    /// The vendor module's `nested` parameter (`Y`, `1`…), if present.
    pub nested_param: String,
    /// A VM guest with `/dev/kvm`: it can run guests of its own.
    pub nested_available: bool,
}

/// A description of the environment the caller runs in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fingerprint {
    /// Host name.
    pub hostname: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs this process may use (affinity and cgroup quota).
    pub cpus: usize,
    /// Memory seen (`MemTotal`), bytes.
    pub memory_bytes: u64,
    /// Current clock source.
    pub clocksource: String,
    /// Virtualization detected: `none`, or the verdict's technology.
    pub virtualization: String,
    /// The innermost layer we are sure of.
    pub verdict: Verdict,
    /// Every layer detected, outermost first (e.g. `kvm`, then `docker`).
    pub layers: Vec<Layer>,
    /// `/proc/version`.
    pub kernel_version: String,
    /// Clock sources available.
    pub clocksources: Vec<String>,
    /// CPU details.
    pub cpu: Cpu,
    /// Memory details.
    pub memory: Memory,
    /// cgroup version and limits.
    pub cgroup: Cgroup,
    /// Firmware strings.
    pub dmi: Dmi,
    /// This process's namespaces.
    pub namespaces: Vec<Namespace>,
    /// Command name of pid 1 (`systemd`, `init`, or a container's entry point).
    pub pid1: String,
    /// KVM availability (nested virtualization).
    pub kvm: Kvm,
    /// The storage of the agent's scratch directory, where the disk workloads write
    /// (set by the agent; absent in fingerprints taken elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<storage::Storage>,
}

impl Fingerprint {
    /// A readable multi-line summary (what `virtmark detect` prints).
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

/// CPU flags worth recording for virtualization.
const RELEVANT_FLAGS: &[&str] = &[
    "hypervisor",
    "vmx",
    "svm",
    "ept",
    "vpid",
    "unrestricted_guest",
    "npt",
    "nrip_save",
    "vmmcall",
    "constant_tsc",
    "nonstop_tsc",
    "tsc_known_freq",
    "tsc_deadline_timer",
    "rdtscp",
    "x2apic",
    "pcid",
    "invpcid",
    "pdpe1gb",
    "aes",
    "sse4_2",
    "avx2",
    "avx512f",
];

/// Collect the fingerprint of the current environment.
pub fn collect() -> Fingerprint {
    collect_from(&source::Host)
}

/// The bracketed choice of a sysfs selection (`always [madvise] never` → `madvise`).
fn selected(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or_default()
        .to_string()
}

/// Whether a virtio balloon (device id 5) offers free page reporting (feature bit
/// 5 of its `features`, a string of 0s and 1s, bit 0 first).
fn free_page_reporting(src: &dyn source::Source) -> bool {
    (0..64).any(|i| {
        let dev = format!("/sys/bus/virtio/devices/virtio{i}");
        read_trim(src, &format!("{dev}/device")) == "0x0005"
            && read_trim(src, &format!("{dev}/features")).as_bytes().get(5) == Some(&b'1')
    })
}

/// DAMON-based reclaim running here: the `damon_reclaim` module, or running
/// kdamonds with `pageout` or `lru_deprio` schemes (their minimum age in seconds
/// when it can be read).
fn proactive_reclaim(src: &dyn source::Source) -> String {
    if read_trim(src, "/sys/module/damon_reclaim/parameters/enabled") == "Y" {
        return "DAMON_RECLAIM: pageout of cold memory".into();
    }
    let admin = "/sys/kernel/mm/damon/admin/kdamonds";
    let n = read_u64(src, &format!("{admin}/nr_kdamonds"));
    let mut found = Vec::new();
    for k in 0..n.min(16) {
        if read_trim(src, &format!("{admin}/{k}/state")) != "on" {
            continue;
        }
        let ctx = format!("{admin}/{k}/contexts/0");
        let aggr_us = read_u64(src, &format!("{ctx}/monitoring_attrs/intervals/aggr_us"));
        for sc in 0..16 {
            let scheme = format!("{ctx}/schemes/{sc}");
            let action = read_trim(src, &format!("{scheme}/action"));
            if action.is_empty() {
                break;
            }
            if action != "pageout" && action != "lru_deprio" {
                continue;
            }
            let age = read_u64(src, &format!("{scheme}/access_pattern/age/min"));
            found.push(if age > 0 && aggr_us > 0 {
                format!(
                    "DAMON {action} of memory idle for {} s",
                    age * aggr_us / 1_000_000
                )
            } else {
                format!("DAMON {action}")
            });
        }
    }
    found.join("; ")
}

/// A number from a sysfs file; 0 when absent or unreadable.
fn read_u64(src: &dyn source::Source, path: &str) -> u64 {
    read_trim(src, path).parse().unwrap_or(0)
}

fn read_trim(src: &dyn source::Source, path: &str) -> String {
    src.read(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn collect_from(src: &dyn source::Source) -> Fingerprint {
    let cpu = parse::cpuinfo(&src.read("/proc/cpuinfo").unwrap_or_default());
    let hypervisor_bit = match src.cpuid(1) {
        Some(leaf1) => cpuid::hypervisor_bit(leaf1),
        None => cpu.flags.iter().any(|f| f == "hypervisor"),
    };
    let (signature, signature2) = if hypervisor_bit {
        let sig = src
            .cpuid(cpuid::HYPERVISOR_LEAF)
            .map(cpuid::signature)
            .unwrap_or_default();
        let sig2 = if sig == "Microsoft Hv" {
            src.cpuid(cpuid::HYPERVISOR_LEAF + 0x100)
                .map(cpuid::signature)
                .unwrap_or_default()
        } else {
            String::new()
        };
        (sig, sig2)
    } else {
        Default::default()
    };

    let proc_version = read_trim(src, "/proc/version");
    let gvisor_suspect = parse::is_gvisor_version(&proc_version);
    let kernel_log = if gvisor_suspect {
        src.kernel_log().unwrap_or_default()
    } else {
        String::new()
    };

    let dmi_field = |f: &str| read_trim(src, &format!("/sys/class/dmi/id/{f}"));
    let dmi = Dmi {
        sys_vendor: dmi_field("sys_vendor"),
        product_name: dmi_field("product_name"),
        product_version: dmi_field("product_version"),
        bios_vendor: dmi_field("bios_vendor"),
        board_vendor: dmi_field("board_vendor"),
    };

    let namespaces: Vec<Namespace> = ["pid", "uts", "ipc", "user", "cgroup", "mnt", "net", "time"]
        .iter()
        .filter_map(|&kind| {
            let link = src.read_link(&format!("/proc/self/ns/{kind}"))?;
            let id = parse::ns_inode(&link)?;
            Some(Namespace {
                kind: kind.into(),
                id,
                initial: if gvisor_suspect {
                    None
                } else {
                    parse::initial_ns_inode(kind).map(|i| i == id)
                },
                same_as_pid1: src
                    .read_link(&format!("/proc/1/ns/{kind}"))
                    .map(|l| l == link),
            })
        })
        .collect();

    let cgroups = parse::proc_cgroup(&src.read("/proc/self/cgroup").unwrap_or_default());
    let mounts = parse::mountinfo(&src.read("/proc/self/mountinfo").unwrap_or_default());
    let cgroup = cgroup::collect(src, &mounts, &cgroups);

    let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let probe = detect::Probe {
        hypervisor_bit,
        signature: signature.clone(),
        signature2,
        dmi: dmi.clone(),
        proc_xen: src.exists("/proc/xen"),
        xen_capabilities: read_trim(src, "/proc/xen/capabilities"),
        sys_hypervisor_type: read_trim(src, "/sys/hypervisor/type"),
        proc_version: proc_version.clone(),
        kernel_log,
        pid1_container: src
            .read("/proc/1/environ")
            .and_then(|e| parse::environ_var(&e, "container")),
        own_container: src.env_var("container"),
        run_systemd_container: src.read("/run/systemd/container").and_then(non_empty),
        container_manager: src.read("/run/host/container-manager").and_then(non_empty),
        dockerenv: src.exists("/.dockerenv"),
        dockerinit: src.exists("/.dockerinit"),
        containerenv: src.exists("/run/.containerenv"),
        dev_lxc: src.exists("/dev/.lxc"),
        openvz: src.exists("/proc/vz") && !src.exists("/proc/bc"),
        vxid: src.read("/proc/self/status").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VxID:"))
                .and_then(|v| v.trim().parse().ok())
        }),
        cgroups,
        mounts,
        namespaces: namespaces.clone(),
        cpu,
    };
    let layers = detect::layers(&probe);
    let verdict = layers
        .iter()
        .rev()
        .find(|l| l.confidence == Confidence::Strong)
        .or(layers.last())
        .map_or_else(Verdict::default, |l| Verdict {
            kind: l.kind,
            technology: l.technology.clone(),
        });

    let modules: Vec<String> = ["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"]
        .iter()
        .filter(|m| src.exists(&format!("/sys/module/{m}")))
        .map(|m| m.to_string())
        .collect();
    let nested_param = ["kvm_intel", "kvm_amd"]
        .iter()
        .map(|m| read_trim(src, &format!("/sys/module/{m}/parameters/nested")))
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let dev_kvm = src.exists("/dev/kvm");
    let kvm = Kvm {
        dev_kvm,
        nested_available: dev_kvm && layers.iter().any(|l| l.kind == Kind::Vm),
        modules,
        nested_param,
    };

    let kernel = non_empty(read_trim(src, "/proc/sys/kernel/osrelease")).unwrap_or_else(|| {
        parse::version_release(&proc_version)
            .unwrap_or_default()
            .to_string()
    });
    let mem_total =
        parse::meminfo_bytes(&src.read("/proc/meminfo").unwrap_or_default(), "MemTotal")
            .unwrap_or(0);
    let clock = "/sys/devices/system/clocksource/clocksource0";
    let cpu = &probe.cpu;
    Fingerprint {
        hostname: src
            .hostname()
            .unwrap_or_else(|| read_trim(src, "/proc/sys/kernel/hostname")),
        kernel,
        cpu_model: cpu.model.clone(),
        cpus: src.available_parallelism(),
        memory_bytes: mem_total,
        clocksource: read_trim(src, &format!("{clock}/current_clocksource")),
        virtualization: verdict.technology.clone(),
        verdict,
        layers,
        kernel_version: proc_version,
        clocksources: read_trim(src, &format!("{clock}/available_clocksource"))
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        cpu: Cpu {
            vendor: cpu.vendor.clone(),
            model: cpu.model.clone(),
            online: src
                .read("/sys/devices/system/cpu/online")
                .and_then(|t| parse::cpu_list_len(&t))
                .unwrap_or(cpu.processors),
            affinity: src.affinity_cpus().unwrap_or(0),
            affinity_list: src
                .read("/proc/self/status")
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                        .map(|v| v.trim().to_string())
                })
                .unwrap_or_default(),
            quota: cgroup.cpu_quota_cpus,
            hypervisor_bit,
            hypervisor_signature: signature,
            flags: RELEVANT_FLAGS
                .iter()
                .filter(|f| cpu.flags.iter().any(|c| c == *f))
                .map(|f| f.to_string())
                .collect(),
        },
        memory: Memory {
            total: mem_total,
            cgroup_limit: cgroup.memory_max,
            thp: selected(&read_trim(
                src,
                "/sys/kernel/mm/transparent_hugepage/enabled",
            )),
            free_page_reporting: free_page_reporting(src),
            proactive_reclaim: proactive_reclaim(src),
        },
        cgroup,
        dmi,
        namespaces,
        pid1: read_trim(src, "/proc/1/comm"),
        kvm,
        scratch: None,
    }
}

#[cfg(test)]
mod tests {
    use super::source::Fake;
    use super::*;

    const INIT_NS: [(&str, &str); 5] = [
        ("pid", "pid:[4026531836]"),
        ("uts", "uts:[4026531838]"),
        ("ipc", "ipc:[4026531839]"),
        ("user", "user:[4026531837]"),
        ("mnt", "mnt:[4026531832]"),
    ];

    fn host_like() -> Fake {
        let mut f = Fake::default()
            .hypervisor(b"KVMKVMKVM\0\0\0")
            .file(
                "/proc/cpuinfo",
                "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
                 flags\t\t: fpu constant_tsc nonstop_tsc hypervisor avx2\n",
            )
            .file(
                "/proc/version",
                "Linux version 6.18.44-fc-v595 (builder@sandboxing) #1 SMP",
            )
            .file("/proc/sys/kernel/osrelease", "6.18.44-fc-v595\n")
            .file("/proc/meminfo", "MemTotal:       24684096 kB\n")
            .file("/proc/self/cgroup", "4:memory:/process_api/adf9\n0::/\n")
            .file(
                "/proc/self/mountinfo",
                "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
            )
            .file("/proc/1/comm", "process_api\n")
            .file("/.dockerenv", "")
            .file("/dev/kvm", "")
            .dir("/sys/module/kvm")
            .dir("/sys/module/kvm_pvm")
            .file("/sys/devices/system/cpu/online", "0-1\n")
            .file(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                "kvm-clock\n",
            );
        for (k, v) in INIT_NS {
            f = f.link(&format!("/proc/self/ns/{k}"), v);
        }
        f.affinity = Some(2);
        f
    }

    #[test]
    fn this_hosts_layout_kvm_with_a_stale_docker_marker() {
        let fp = collect_from(&host_like());
        let techs: Vec<_> = fp.layers.iter().map(|l| l.technology.as_str()).collect();
        assert_eq!(techs, ["kvm", "docker"]);
        assert_eq!(fp.verdict.kind, Kind::Vm);
        assert_eq!(fp.verdict.technology, "kvm");
        assert_eq!(fp.virtualization, "kvm");
        assert!(fp.kvm.nested_available);
        assert_eq!(fp.kvm.modules, ["kvm", "kvm_pvm"]);
        assert_eq!(fp.cpu.online, 2);
        assert_eq!(
            fp.cpu.flags,
            ["hypervisor", "constant_tsc", "nonstop_tsc", "avx2"]
        );
        assert_eq!(fp.cpu.hypervisor_signature, "KVMKVMKVM");
        assert_eq!(fp.memory.total, 24_684_096 * 1024);
        assert_eq!(fp.cgroup.version, "hybrid");
        assert_eq!(fp.kernel, "6.18.44-fc-v595");
        assert_eq!(fp.clocksource, "kvm-clock");
        assert_eq!(fp.pid1, "process_api");
        let pid = &fp.namespaces[0];
        assert_eq!((pid.kind.as_str(), pid.initial), ("pid", Some(true)));
        assert_eq!(fp.namespaces[4].initial, None); // mnt has no fixed inode
    }

    #[test]
    fn uml_guest_on_kvm() {
        // CPUID runs on the host CPU inside UML, so KVM stays visible beneath it.
        let f = Fake::default()
            .hypervisor(b"KVMKVMKVM\0\0\0")
            .file("/proc/cpuinfo", parse::samples::UML_CPUINFO)
            .file(
                "/proc/version",
                "Linux version 6.1.176 (buildd@x86-grnet-03) #1",
            )
            .link("/proc/self/ns/pid", "pid:[4026531836]");
        let fp = collect_from(&f);
        let techs: Vec<_> = fp.layers.iter().map(|l| l.technology.as_str()).collect();
        assert_eq!(techs, ["kvm", "uml"]);
        assert_eq!(fp.verdict.kind, Kind::Paravirt);
        assert_eq!(fp.verdict.technology, "uml");
        assert_eq!(fp.kernel, "6.1.176");
    }

    /// What `runsc do` shows on this host (runsc 20221219): the fixed version
    /// string, no osrelease file, no cgroups, a joke-laden kernel log, the host's
    /// CPUID passed through, and namespace ids of gVisor's own numbering.
    fn gvisor_like() -> Fake {
        let mut f = Fake::default()
            .hypervisor(b"KVMKVMKVM\0\0\0")
            .file(
                "/proc/cpuinfo",
                "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 175\nmodel\t\t: 17\n\
                 model name\t: unknown\nstepping\t: unknown\nflags\t\t: fpu tsc hypervisor\n",
            )
            .file(
                "/proc/version",
                "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n",
            )
            .file("/proc/self/cgroup", "")
            .file(
                "/proc/self/mountinfo",
                "10 10 0:10 / / rw  - overlay none rw\n13 10 0:12 / /proc rw  - proc none rw\n",
            )
            .link("/proc/self/ns/pid", "pid:[111]")
            .link("/proc/1/ns/pid", "pid:[158]");
        f.log = Some(
            "[    0.000000] Starting gVisor...\n[    0.156087] Searching for socket adapter...\n"
                .into(),
        );
        f
    }

    #[test]
    fn gvisor_sandbox_on_kvm() {
        let fp = collect_from(&gvisor_like());
        let techs: Vec<_> = fp.layers.iter().map(|l| l.technology.as_str()).collect();
        assert_eq!(techs, ["kvm", "gvisor"]);
        assert_eq!(fp.verdict.kind, Kind::Sandbox);
        assert_eq!(fp.verdict.technology, "gvisor");
        assert_eq!(fp.kernel, "4.4.0");
        assert_eq!(fp.layers[1].evidence.len(), 2);
        assert_eq!(fp.namespaces[0].initial, None);
    }

    #[test]
    fn gvisor_with_docker_marker_keeps_gvisor_innermost() {
        let fp = collect_from(&gvisor_like().file("/.dockerenv", ""));
        let techs: Vec<_> = fp.layers.iter().map(|l| l.technology.as_str()).collect();
        assert_eq!(techs, ["kvm", "docker", "gvisor"]);
        assert_eq!(fp.verdict.technology, "gvisor");
    }

    #[test]
    fn empty_environment_is_none_and_does_not_fail() {
        let fp = collect_from(&Fake::default());
        assert_eq!(fp.verdict, Verdict::default());
        assert_eq!(fp.virtualization, "none");
        assert!(fp.layers.is_empty());
        assert!(!fp.summary().is_empty());
    }

    #[test]
    fn memory_management_that_moves_figures_is_recorded() {
        let d = "/sys/kernel/mm/damon/admin/kdamonds";
        let fake = Fake::default()
            .file(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "always [madvise] never\n",
            )
            .file("/sys/bus/virtio/devices/virtio0/device", "0x0002\n")
            .file("/sys/bus/virtio/devices/virtio0/features", "111111\n")
            .file("/sys/bus/virtio/devices/virtio1/device", "0x0005\n")
            .file("/sys/bus/virtio/devices/virtio1/features", "0110010000\n")
            .file(&format!("{d}/nr_kdamonds"), "1\n")
            .file(&format!("{d}/0/state"), "on\n")
            .file(
                &format!("{d}/0/contexts/0/monitoring_attrs/intervals/aggr_us"),
                "5000000\n",
            )
            .file(&format!("{d}/0/contexts/0/schemes/0/action"), "pageout\n")
            .file(
                &format!("{d}/0/contexts/0/schemes/0/access_pattern/age/min"),
                "12\n",
            );
        let m = collect_from(&fake).memory;
        assert_eq!(m.thp, "madvise");
        assert!(m.free_page_reporting);
        assert_eq!(m.proactive_reclaim, "DAMON pageout of memory idle for 60 s");
        // A balloon without the reporting bit, and no DAMON: nothing claimed.
        let plain = Fake::default()
            .file("/sys/bus/virtio/devices/virtio1/device", "0x0005\n")
            .file("/sys/bus/virtio/devices/virtio1/features", "0110000000\n");
        let m = collect_from(&plain).memory;
        assert!(!m.free_page_reporting);
        assert!(m.proactive_reclaim.is_empty());
        assert!(collect_from(&fake)
            .summary()
            .contains("free page reporting to the hypervisor on"));
    }

    #[test]
    fn old_json_still_parses() {
        let old = r#"{"hostname":"h","kernel":"6.1","cpu_model":"x","cpus":2,
            "memory_bytes":1024,"clocksource":"tsc","virtualization":"vm"}"#;
        let fp: Fingerprint = serde_json::from_str(old).expect("old fingerprint parses");
        assert_eq!(fp.hostname, "h");
        assert_eq!(fp.verdict, Verdict::default());
        let json = serde_json::to_string(&collect_from(&host_like())).expect("serializes");
        let round: Fingerprint = serde_json::from_str(&json).expect("round trip");
        assert_eq!(round, collect_from(&host_like()));
        let newer: Layer = serde_json::from_str(r#"{"kind":"enclave","technology":"x"}"#)
            .expect("unknown kind parses");
        assert_eq!(newer.kind, Kind::Unknown);
    }

    #[test]
    fn collect_on_this_machine_is_cheap_and_filled() {
        let t = std::time::Instant::now();
        let fp = collect();
        let took = t.elapsed();
        assert!(!fp.kernel.is_empty());
        assert!(fp.cpus >= 1);
        assert!(fp.memory_bytes > 0);
        eprintln!("collect took {took:?}: {}", fp.verdict.technology);
    }
}
