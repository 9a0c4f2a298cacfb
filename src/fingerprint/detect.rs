//! From raw observations ([`Probe`]) to virtualization layers, outermost first.
//!
//! The checks follow virt-what (1.25) and systemd-detect-virt, with technology
//! names as virt-what prints them, so that the two agree; beyond them we detect
//! gVisor, nesting (a container in a VM, UML on a hypervisor) and tell stale
//! container marker files from real containers by the namespaces we are in.

use super::cpuid;
use super::parse::{CgroupLine, CpuInfo, Mount};
use super::{Confidence, Dmi, Kind, Layer, Namespace};

/// What detection looks at, already read from the system.
#[derive(Debug, Default)]
pub struct Probe {
    /// CPUID leaf 1 ECX bit 31.
    pub hypervisor_bit: bool,
    /// Leaf 0x40000000 signature (only meaningful with the hypervisor bit).
    pub signature: String,
    /// Leaf 0x40000100 signature: KVM or Xen behind Hyper-V enlightenments.
    pub signature2: String,
    /// `/proc/cpuinfo`.
    pub cpu: CpuInfo,
    /// `/sys/class/dmi/id`.
    pub dmi: Dmi,
    /// `/proc/xen` exists.
    pub proc_xen: bool,
    /// `/proc/xen/capabilities` (`control_d` in dom0).
    pub xen_capabilities: String,
    /// `/sys/hypervisor/type`.
    pub sys_hypervisor_type: String,
    /// `/proc/version`.
    pub proc_version: String,
    /// The kernel log, read only when `/proc/version` looks like gVisor's.
    pub kernel_log: String,
    /// `container=` in `/proc/1/environ` (None if unreadable or absent).
    pub pid1_container: Option<String>,
    /// `container=` in this process's environment.
    pub own_container: Option<String>,
    /// `/run/systemd/container` (systemd-nspawn and others write it).
    pub run_systemd_container: Option<String>,
    /// `/run/host/container-manager`.
    pub container_manager: Option<String>,
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/.dockerinit` exists (old Docker).
    pub dockerinit: bool,
    /// `/run/.containerenv` exists (Podman).
    pub containerenv: bool,
    /// `/dev/.lxc` exists (LXC).
    pub dev_lxc: bool,
    /// `/proc/vz` exists and `/proc/bc` does not (inside OpenVZ).
    pub openvz: bool,
    /// `VxID` from `/proc/self/status` (Linux-VServer).
    pub vxid: Option<u64>,
    /// `/proc/self/cgroup`.
    pub cgroups: Vec<CgroupLine>,
    /// `/proc/self/mountinfo`.
    pub mounts: Vec<Mount>,
    /// This process's namespaces.
    pub namespaces: Vec<Namespace>,
}

impl Probe {
    /// Whether this process's pid namespace is the host's initial one.
    fn pid_ns_initial(&self) -> Option<bool> {
        self.namespaces
            .iter()
            .find(|n| n.kind == "pid")
            .and_then(|n| n.initial)
    }

    /// gVisor signatures seen.
    fn gvisor_evidence(&self) -> Vec<String> {
        let mut ev = Vec::new();
        if super::parse::is_gvisor_version(&self.proc_version) {
            ev.push(format!(
                "/proc/version is gVisor's fixed \"{}\"",
                self.proc_version.trim()
            ));
        }
        if self.kernel_log.contains("Starting gVisor") {
            ev.push("kernel log (dmesg) starts \"Starting gVisor...\"".into());
        }
        ev
    }
}

/// What DMI vendor strings name, as virt-what and systemd read them.
pub fn dmi_technology(d: &Dmi) -> Option<(Kind, &'static str)> {
    let fields = [
        &d.sys_vendor,
        &d.product_name,
        &d.bios_vendor,
        &d.board_vendor,
    ];
    let any = |needle: &str| fields.iter().any(|f| f.contains(needle));
    Some(if any("Parallels") {
        (Kind::Vm, "parallels")
    } else if [
        "KVM",
        "OpenStack",
        "KubeVirt",
        "Amazon EC2",
        "Google Compute Engine",
    ]
    .into_iter()
    .chain(["Nutanix", "oVirt", "Red Hat", "Cloud Hypervisor"])
    .any(any)
    {
        (Kind::Vm, "kvm")
    } else if any("QEMU") || any("Bochs") {
        (Kind::Emulation, "qemu")
    } else if any("VMware") || any("VMW") {
        (Kind::Vm, "vmware")
    } else if any("innotek GmbH") || any("VirtualBox") {
        (Kind::Vm, "virtualbox")
    } else if any("Xen") {
        (Kind::Vm, "xen")
    } else if d.sys_vendor.contains("Microsoft Corporation")
        && d.product_name.contains("Virtual Machine")
    {
        // With CPUID "Microsoft Hv" this is Hyper-V (decided before DMI is asked).
        (Kind::Vm, "virtualpc")
    } else if any("BHYVE") {
        (Kind::Vm, "bhyve")
    } else if any("Apple Virtualization") {
        (Kind::Vm, "apple")
    } else {
        return None;
    })
}

fn layer(kind: Kind, technology: &str, product: String, evidence: Vec<String>) -> Layer {
    Layer {
        kind,
        technology: technology.into(),
        product,
        confidence: Confidence::Strong,
        evidence,
    }
}

/// The hypervisor (or emulator) layer, if any.
fn hypervisor(p: &Probe) -> Option<Layer> {
    let dmi = dmi_technology(&p.dmi);
    let product = p.dmi.product();
    let xen_product = || {
        if !p.proc_xen {
            String::new()
        } else if p.xen_capabilities.contains("control_d") {
            "dom0".to_string()
        } else {
            "domU".to_string()
        }
    };
    if p.hypervisor_bit {
        if let Some((mut kind, mut tech)) = cpuid::technology(&p.signature) {
            let mut ev = vec![format!(
                "CPUID hypervisor bit set, leaf 0x40000000 \"{}\"",
                p.signature
            )];
            if tech == "hyperv" {
                if let Some((k2, t2)) =
                    cpuid::technology(&p.signature2).filter(|&(_, t)| t != "hyperv")
                {
                    ev.push(format!(
                        "leaf 0x40000100 \"{}\": Hyper-V enlightenments offered by {t2}",
                        p.signature2
                    ));
                    (kind, tech) = (k2, t2);
                }
            }
            if tech == "kvm" && matches!(dmi, Some((_, "parallels"))) {
                ev.push("DMI names Parallels, which exposes KVM's signature".into());
                tech = "parallels";
            }
            let mut product = product;
            if tech == "xen" {
                if p.dmi.is_empty() {
                    kind = Kind::Paravirt;
                    ev.push("no DMI tables: PV or PVH guest".into());
                }
                let x = xen_product();
                if !x.is_empty() {
                    product = if product.is_empty() {
                        x
                    } else {
                        format!("{product} ({x})")
                    };
                }
            }
            if p.dmi.is_empty() && tech != "xen" {
                ev.push("no DMI tables".into());
            } else if !p.dmi.is_empty() {
                ev.push(format!("DMI: {}", p.dmi.summary()));
            }
            return Some(layer(kind, tech, product, ev));
        }
    }
    if let Some((kind, tech)) = dmi {
        return Some(layer(
            kind,
            tech,
            product,
            vec![format!("DMI: {}", p.dmi.summary())],
        ));
    }
    if p.proc_xen || p.sys_hypervisor_type.trim() == "xen" {
        let mut ev = Vec::new();
        if p.proc_xen {
            ev.push("/proc/xen exists".to_string());
        }
        if p.sys_hypervisor_type.trim() == "xen" {
            ev.push("/sys/hypervisor/type is \"xen\"".into());
        }
        return Some(layer(Kind::Paravirt, "xen", xen_product(), ev));
    }
    if p.cpu.model.contains("QEMU") {
        return Some(layer(
            Kind::Emulation,
            "qemu",
            String::new(),
            vec![format!("/proc/cpuinfo model name \"{}\"", p.cpu.model)],
        ));
    }
    if p.hypervisor_bit {
        return Some(layer(
            Kind::Vm,
            "unknown",
            p.signature.clone(),
            vec![format!(
                "CPUID hypervisor bit set, unknown leaf 0x40000000 signature \"{}\"",
                p.signature
            )],
        ));
    }
    None
}

/// Map a `container=` value (systemd's container interface) to a technology.
fn container_name(v: &str) -> String {
    match v.trim() {
        "lxc" | "lxc-libvirt" => "lxc".into(),
        "docker" => "docker".into(),
        "podman" => "podman".into(),
        "systemd-nspawn" => "systemd-nspawn".into(),
        other => other.into(),
    }
}

/// How much one piece of container evidence proves on its own.
#[derive(Clone, Copy, PartialEq)]
enum Proof {
    /// Set up by the runtime for this container (environment, cgroup path,
    /// `/run/.containerenv`): enough alone.
    Runtime,
    /// A cgroup name that a process outside a container may also carry
    /// (virtmark's own): certain only with a private pid namespace.
    WithNamespaces,
    /// A file in the root filesystem that may have come with the image
    /// (`/.dockerenv` in a VM built from a Docker image): certain only with the
    /// runtime's masked paths.
    WithOciMasks,
}

/// Container layers (shared kernel, namespaces), in the order found.
fn containers(p: &Probe, gvisor: bool) -> Vec<Layer> {
    let mut found: Vec<(String, String, Proof)> = Vec::new();
    if let Some(v) = p.pid1_container.as_deref().filter(|v| !v.is_empty()) {
        found.push((
            container_name(v),
            format!("container={v} in /proc/1/environ"),
            Proof::Runtime,
        ));
    } else if let Some(v) = p.own_container.as_deref().filter(|v| !v.is_empty()) {
        found.push((
            container_name(v),
            format!("container={v} in this process's environment"),
            Proof::Runtime,
        ));
    }
    for (file, v) in [
        ("/run/systemd/container", &p.run_systemd_container),
        ("/run/host/container-manager", &p.container_manager),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            found.push((
                container_name(v),
                format!("{file} says \"{v}\""),
                Proof::Runtime,
            ));
        }
    }
    if p.dockerenv {
        found.push((
            "docker".into(),
            "/.dockerenv exists".into(),
            Proof::WithOciMasks,
        ));
    }
    if p.dockerinit {
        found.push((
            "docker".into(),
            "/.dockerinit exists".into(),
            Proof::WithOciMasks,
        ));
    }
    if p.containerenv {
        found.push((
            "podman".into(),
            "/run/.containerenv exists".into(),
            Proof::Runtime,
        ));
    }
    if p.dev_lxc {
        found.push(("lxc".into(), "/dev/.lxc exists".into(), Proof::Runtime));
    }
    if p.openvz {
        found.push((
            "openvz".into(),
            "/proc/vz without /proc/bc".into(),
            Proof::Runtime,
        ));
    }
    if let Some(id) = p.vxid.filter(|&id| id != 0) {
        found.push((
            "linux_vserver".into(),
            format!("VxID {id} in /proc/self/status"),
            Proof::Runtime,
        ));
    }
    for l in &p.cgroups {
        let path = &l.path;
        let tech = if path.contains("/docker/") || path.contains("/docker-") {
            Some(("docker", Proof::Runtime))
        } else if path.contains("/libpod-") || path.contains("/libpod_parent") {
            Some(("podman", Proof::Runtime))
        } else if path.contains("/lxc/") || path.contains("/lxc.payload") {
            Some(("lxc", Proof::Runtime))
        } else if path.contains("kubepods") {
            Some(("kubernetes", Proof::Runtime))
        } else if path.contains("virtmark") {
            Some(("virtmark-ns", Proof::WithNamespaces))
        } else {
            None
        };
        if let Some((tech, proof)) = tech {
            let ev = format!("cgroup path {path}");
            if !found.iter().any(|(t, e, _)| t == tech && *e == ev) {
                found.push((tech.into(), ev, proof));
            }
        }
    }

    // Generic signs: an OCI runtime's masked paths, a private pid namespace.
    let oci = p
        .mounts
        .iter()
        .find(|m| ["/proc/kcore", "/proc/keys", "/proc/timer_list"].contains(&m.point.as_str()))
        .map(|m| format!("{} masked by a mount (OCI runtime)", m.point));
    let pid_initial = p.pid_ns_initial();
    let private_pid = (pid_initial == Some(false) && !gvisor)
        .then(|| "pid namespace is not the kernel's initial one".to_string());

    let mut layers: Vec<Layer> = Vec::new();
    for (tech, ev, proof) in found {
        let strong = match proof {
            Proof::Runtime => true,
            Proof::WithNamespaces => private_pid.is_some(),
            Proof::WithOciMasks => oci.is_some(),
        };
        match layers.iter_mut().find(|l| l.technology == tech) {
            Some(l) => {
                l.evidence.push(ev);
                if strong {
                    l.confidence = Confidence::Strong;
                }
            }
            None => layers.push(Layer {
                kind: Kind::Container,
                technology: tech,
                product: String::new(),
                confidence: if strong {
                    Confidence::Strong
                } else {
                    Confidence::Weak
                },
                evidence: vec![ev],
            }),
        }
    }
    let generic: Vec<String> = oci.iter().chain(&private_pid).cloned().collect();
    let any_strong = layers.iter().any(|l| l.confidence == Confidence::Strong);
    for l in &mut layers {
        if l.confidence == Confidence::Strong {
            l.evidence.extend(generic.iter().cloned());
        } else if gvisor {
            l.evidence
                .push("marker only; namespaces cannot be checked under gVisor".into());
        } else if pid_initial == Some(true) {
            let initial: Vec<&str> = p
                .namespaces
                .iter()
                .filter(|n| n.initial == Some(true))
                .map(|n| n.kind.as_str())
                .collect();
            l.evidence.push(format!(
                "but this process is in this kernel's initial {} namespaces: the marker \
                 likely came with the image the root filesystem was built from",
                initial.join(", ")
            ));
        } else {
            l.evidence.push(
                "marker only, with no sign of this runtime's set-up (masked paths, cgroup)".into(),
            );
        }
    }
    // Isolation seen but no runtime named for it: say what it is.
    if !any_strong && !generic.is_empty() {
        let tech = if oci.is_some() { "oci" } else { "namespaces" };
        layers.push(layer(Kind::Container, tech, String::new(), generic));
    }
    layers
}

/// All layers, outermost first: hypervisor, UML, containers, gVisor.
pub fn layers(p: &Probe) -> Vec<Layer> {
    let mut out: Vec<Layer> = hypervisor(p).into_iter().collect();
    if p.cpu.vendor == "User Mode Linux" || p.cpu.model == "UML" {
        let mut ev = vec!["/proc/cpuinfo vendor_id \"User Mode Linux\", model name \"UML\"".into()];
        if !p.cpu.host.is_empty() {
            ev.push(format!("host kernel: {}", p.cpu.host));
        }
        out.push(layer(Kind::Paravirt, "uml", String::new(), ev));
    }
    let gv = p.gvisor_evidence();
    out.extend(containers(p, !gv.is_empty()));
    if !gv.is_empty() {
        out.push(layer(Kind::Sandbox, "gvisor", "runsc".into(), gv));
    }
    out
}

#[cfg(test)]
// Tests build one probe and change it field by field between cases.
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::super::parse;
    use super::*;

    fn kvm_probe() -> Probe {
        Probe {
            hypervisor_bit: true,
            signature: "KVMKVMKVM".into(),
            ..Probe::default()
        }
    }

    fn ns(kind: &str, initial: Option<bool>) -> Namespace {
        Namespace {
            kind: kind.into(),
            id: 0,
            initial,
            same_as_pid1: None,
        }
    }

    fn techs(l: &[Layer]) -> Vec<&str> {
        l.iter().map(|l| l.technology.as_str()).collect()
    }

    #[test]
    fn bare_metal_has_no_layer() {
        assert!(layers(&Probe::default()).is_empty());
    }

    #[test]
    fn dmi_names() {
        let d = |v: &str, p: &str| Dmi {
            sys_vendor: v.into(),
            product_name: p.into(),
            ..Dmi::default()
        };
        assert_eq!(
            dmi_technology(&d("QEMU", "Standard PC (Q35 + ICH9, 2009)")),
            Some((Kind::Emulation, "qemu"))
        );
        assert_eq!(
            dmi_technology(&d("VMware, Inc.", "VMware Virtual Platform")),
            Some((Kind::Vm, "vmware"))
        );
        assert_eq!(
            dmi_technology(&d("innotek GmbH", "VirtualBox")),
            Some((Kind::Vm, "virtualbox"))
        );
        assert_eq!(
            dmi_technology(&d("Xen", "HVM domU")),
            Some((Kind::Vm, "xen"))
        );
        assert_eq!(
            dmi_technology(&d("Microsoft Corporation", "Virtual Machine")),
            Some((Kind::Vm, "virtualpc"))
        );
        assert_eq!(
            dmi_technology(&d("Red Hat", "KVM")),
            Some((Kind::Vm, "kvm"))
        );
        assert_eq!(dmi_technology(&d("Dell Inc.", "PowerEdge R650")), None);
    }

    #[test]
    fn kvm_guest_with_qemu_dmi_is_kvm() {
        let mut p = kvm_probe();
        p.dmi.sys_vendor = "QEMU".into();
        p.dmi.product_name = "Standard PC (i440FX + PIIX, 1996)".into();
        let l = layers(&p);
        assert_eq!(techs(&l), ["kvm"]);
        assert_eq!(l[0].kind, Kind::Vm);
        assert_eq!(l[0].product, "QEMU Standard PC (i440FX + PIIX, 1996)");
    }

    #[test]
    fn tcg_by_signature_or_dmi() {
        let p = Probe {
            hypervisor_bit: true,
            signature: "TCGTCGTCGTCG".into(),
            ..Probe::default()
        };
        assert_eq!(layers(&p)[0].kind, Kind::Emulation);
        let mut p = Probe::default();
        p.dmi.sys_vendor = "QEMU".into();
        let l = layers(&p);
        assert_eq!(
            (l[0].kind, l[0].technology.as_str()),
            (Kind::Emulation, "qemu")
        );
    }

    #[test]
    fn hyperv_enlightened_kvm_is_kvm() {
        let p = Probe {
            hypervisor_bit: true,
            signature: "Microsoft Hv".into(),
            signature2: "KVMKVMKVM".into(),
            ..Probe::default()
        };
        assert_eq!(techs(&layers(&p)), ["kvm"]);
        let p = Probe {
            signature2: String::new(),
            ..p
        };
        assert_eq!(techs(&layers(&p)), ["hyperv"]);
    }

    #[test]
    fn xen_pv_and_dom0() {
        let p = Probe {
            proc_xen: true,
            xen_capabilities: "control_d\n".into(),
            ..Probe::default()
        };
        let l = layers(&p);
        assert_eq!(
            (l[0].kind, l[0].technology.as_str(), l[0].product.as_str()),
            (Kind::Paravirt, "xen", "dom0")
        );
        let p = Probe {
            sys_hypervisor_type: "xen\n".into(),
            ..Probe::default()
        };
        assert_eq!(layers(&p)[0].kind, Kind::Paravirt);
    }

    #[test]
    fn stale_dockerenv_in_initial_namespaces_is_weak() {
        // This host: a KVM microVM whose root fs came from a Docker image.
        let mut p = kvm_probe();
        p.dockerenv = true;
        p.namespaces = vec![ns("pid", Some(true)), ns("uts", Some(true))];
        let l = layers(&p);
        assert_eq!(techs(&l), ["kvm", "docker"]);
        assert_eq!(l[1].confidence, Confidence::Weak);
        assert!(l[1].evidence.iter().any(|e| e.contains("initial")));
    }

    #[test]
    fn stale_dockerenv_in_a_private_pid_namespace_is_not_docker() {
        // `unshare --pid --fork --mount-proc` on this host: new namespaces, same
        // root filesystem with its leftover /.dockerenv, no OCI masked paths.
        let mut p = kvm_probe();
        p.dockerenv = true;
        p.namespaces = vec![ns("pid", Some(false))];
        let l = layers(&p);
        assert_eq!(techs(&l), ["kvm", "docker", "namespaces"]);
        assert_eq!(l[1].confidence, Confidence::Weak);
        assert_eq!(l[2].confidence, Confidence::Strong);
    }

    #[test]
    fn docker_in_a_vm_is_two_layers() {
        let mut p = kvm_probe();
        p.dockerenv = true;
        p.namespaces = vec![ns("pid", Some(false))];
        p.cgroups = parse::proc_cgroup("0::/\n");
        p.mounts = parse::mountinfo("600 590 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw\n");
        let l = layers(&p);
        assert_eq!(techs(&l), ["kvm", "docker"]);
        assert_eq!(l[1].confidence, Confidence::Strong);
        assert_eq!(l[1].kind, Kind::Container);
        assert!(l[1].evidence.iter().any(|e| e.contains("OCI")));
    }

    #[test]
    fn cgroup_paths_name_containers() {
        let mut p = Probe::default();
        p.cgroups = parse::proc_cgroup("12:memory:/docker/3f4e5d\n11:pids:/docker/3f4e5d\n");
        let l = layers(&p);
        assert_eq!(techs(&l), ["docker"]);
        assert_eq!(l[0].evidence.len(), 1);
        p.cgroups = parse::proc_cgroup("0::/machine.slice/libpod-abc.scope\n");
        assert_eq!(techs(&layers(&p)), ["podman"]);
        p.cgroups = parse::proc_cgroup("0::/lxc.payload.web1\n");
        assert_eq!(techs(&layers(&p)), ["lxc"]);
    }

    #[test]
    fn virtmark_ns_container_by_cgroup_and_namespaces() {
        let mut p = Probe::default();
        p.cgroups = parse::proc_cgroup("0::/virtmark.slice/run-42/agent\n");
        p.namespaces = vec![ns("pid", Some(false))];
        let l = layers(&p);
        assert_eq!(techs(&l), ["virtmark-ns"]);
        assert_eq!(l[0].confidence, Confidence::Strong);
        // Same cgroup, host namespaces: only a hint.
        p.namespaces = vec![ns("pid", Some(true))];
        assert_eq!(layers(&p)[0].confidence, Confidence::Weak);
    }

    #[test]
    fn anonymous_namespaces_and_oci() {
        let mut p = Probe::default();
        p.namespaces = vec![ns("pid", Some(false))];
        assert_eq!(techs(&layers(&p)), ["namespaces"]);
        p.mounts = parse::mountinfo("1 2 0:5 /null /proc/keys rw - devtmpfs udev rw\n");
        let l = layers(&p);
        assert_eq!(techs(&l), ["oci"]);
        assert_eq!(l[0].evidence.len(), 2);
    }

    #[test]
    fn container_env_values() {
        let p = Probe {
            pid1_container: Some("lxc".into()),
            ..Probe::default()
        };
        assert_eq!(techs(&layers(&p)), ["lxc"]);
        let p = Probe {
            own_container: Some("podman".into()),
            containerenv: true,
            ..Probe::default()
        };
        let l = layers(&p);
        assert_eq!(techs(&l), ["podman"]);
        assert_eq!(l[0].evidence.len(), 2);
    }

    #[test]
    fn openvz_and_vserver() {
        let p = Probe {
            openvz: true,
            vxid: Some(0),
            ..Probe::default()
        };
        assert_eq!(techs(&layers(&p)), ["openvz"]);
        let p = Probe {
            vxid: Some(40001),
            ..Probe::default()
        };
        assert_eq!(techs(&layers(&p)), ["linux_vserver"]);
    }
}
