//! CPUID: the hypervisor-present bit (leaf 1, ECX bit 31) and the hypervisor vendor
//! signature (leaf 0x40000000, EBX:ECX:EDX), as virt-what's cpuid helper reads them.

use super::Kind;

/// Leaf where hypervisors put their vendor signature.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;

/// Registers `[eax, ebx, ecx, edx]` of `leaf` (sub-leaf 0).
#[cfg(target_arch = "x86_64")]
pub fn raw(leaf: u32) -> Option<[u32; 4]> {
    // `__cpuid` is a safe fn since Rust 1.94 but unsafe in older compilers this
    // crate supports (rust-version 1.85); hence the block, allowed to be redundant.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 processor; it only reads registers and
    // has no memory effects. Leaves above the maximum return defined (if
    // meaningless) values, never fault.
    let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
    Some([r.eax, r.ebx, r.ecx, r.edx])
}

/// No CPUID off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn raw(_leaf: u32) -> Option<[u32; 4]> {
    None
}

/// The hypervisor bit of leaf 1's ECX.
pub fn hypervisor_bit(leaf1: [u32; 4]) -> bool {
    leaf1[2] & (1 << 31) != 0
}

/// The 12-byte vendor signature in EBX, ECX, EDX, NULs dropped
/// (`KVMKVMKVM\0\0\0` → `KVMKVMKVM`). Trailing spaces are kept (`bhyve bhyve `).
pub fn signature(regs: [u32; 4]) -> String {
    let bytes: Vec<u8> = [regs[1], regs[2], regs[3]]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .filter(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a signature names: kind and technology (virt-what's names where it has one).
pub fn technology(sig: &str) -> Option<(Kind, &'static str)> {
    Some(match sig {
        "KVMKVMKVM" => (Kind::Vm, "kvm"),
        "TCGTCGTCGTCG" => (Kind::Emulation, "qemu"),
        "Microsoft Hv" => (Kind::Vm, "hyperv"),
        "VMwareVMware" => (Kind::Vm, "vmware"),
        "XenVMMXenVMM" => (Kind::Vm, "xen"),
        "VBoxVBoxVBox" => (Kind::Vm, "virtualbox"),
        "bhyve bhyve " | "bhyve bhyve" => (Kind::Vm, "bhyve"),
        "ACRNACRNACRN" => (Kind::Vm, "acrn"),
        "QNXQVMBSQG" => (Kind::Vm, "qnx"),
        " lrpepyh  vr" | " lrpepyh vr" => (Kind::Vm, "parallels"),
        "LKVMLKVMLKVM" => (Kind::Vm, "lkvm"),
        "Jailhouse" => (Kind::Vm, "jailhouse"),
        "OpenBSDVMM58" => (Kind::Vm, "vmm"),
        "SRESRESRESRE" => (Kind::Vm, "sre"),
        "UnisysSpar64" => (Kind::Vm, "spar"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(sig: &[u8; 12]) -> [u32; 4] {
        let w = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        [0x4000_0001, w(0), w(4), w(8)]
    }

    #[test]
    fn signatures_decode_from_registers() {
        // What this host's KVM answers: ebx=0x4b4d564b ecx=0x564b4d56 edx=0x4d.
        assert_eq!(
            signature([0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
            "KVMKVMKVM"
        );
        assert_eq!(signature(regs(b"Microsoft Hv")), "Microsoft Hv");
        assert_eq!(signature(regs(b"bhyve bhyve ")), "bhyve bhyve ");
        assert_eq!(signature(regs(b"QNXQVMBSQG\0\0")), "QNXQVMBSQG");
        assert_eq!(signature([0; 4]), "");
    }

    #[test]
    fn signatures_name_technologies() {
        assert_eq!(technology("KVMKVMKVM"), Some((Kind::Vm, "kvm")));
        assert_eq!(technology("TCGTCGTCGTCG"), Some((Kind::Emulation, "qemu")));
        assert_eq!(technology("XenVMMXenVMM"), Some((Kind::Vm, "xen")));
        assert_eq!(technology("VMwareVMware"), Some((Kind::Vm, "vmware")));
        assert_eq!(technology("ACRNACRNACRN"), Some((Kind::Vm, "acrn")));
        assert_eq!(technology("GenuineIntel"), None);
    }

    #[test]
    fn hypervisor_bit_is_ecx_31() {
        assert!(hypervisor_bit([0, 0, 0x8000_0000, 0]));
        assert!(!hypervisor_bit([0, 0, 0x7fff_ffff, 0]));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn leaf_zero_names_a_cpu_vendor() {
        let r = raw(0).unwrap_or_default();
        let vendor = signature([0, r[1], r[3], r[2]]);
        assert!(
            [
                "GenuineIntel",
                "AuthenticAMD",
                "HygonGenuine",
                "CentaurHauls"
            ]
            .contains(&vendor.as_str()),
            "{vendor}"
        );
    }
}
