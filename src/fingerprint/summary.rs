//! The readable form of a [`Fingerprint`] (`virtmark detect`).

use std::fmt::Write;

use super::{Confidence, Fingerprint, Layer};

/// Bytes as `23.5 GiB`.
fn size(b: u64) -> String {
    let units = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in units {
        if b >= 1 << shift {
            return format!("{:.1} {unit}", b as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{b} B")
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn layer_title(l: &Layer) -> String {
    let mut t = format!("{} {}", l.kind.as_str(), l.technology);
    if !l.product.is_empty() {
        let _ = write!(t, " [{}]", l.product);
    }
    if l.confidence == Confidence::Weak {
        t.push_str(" (weak)");
    }
    t
}

/// Render the summary, one `key  value` line per topic.
pub fn render(fp: &Fingerprint) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<14} {v}");
    };
    line(
        "verdict",
        format!("{} {}", fp.verdict.kind.as_str(), fp.verdict.technology),
    );
    if fp.layers.is_empty() {
        line("layers", "none detected (bare metal?)".into());
    } else {
        line(
            "layers",
            fp.layers
                .iter()
                .map(layer_title)
                .collect::<Vec<_>>()
                .join("  →  "),
        );
        for l in &fp.layers {
            line("", format!("{}:", layer_title(l)));
            for e in &l.evidence {
                line("", format!("  - {e}"));
            }
        }
    }
    let k = &fp.kvm;
    let mut nested = if k.nested_available {
        "available: a VM guest with /dev/kvm".to_string()
    } else if k.dev_kvm {
        "/dev/kvm present".to_string()
    } else {
        "no /dev/kvm".to_string()
    };
    if !k.modules.is_empty() {
        let _ = write!(nested, "; modules {}", k.modules.join(", "));
    }
    if k.modules.iter().any(|m| m == "kvm_pvm") {
        nested.push_str(" (kvm_pvm: KVM's PVM software backend, no hardware virtualization)");
    }
    if !k.nested_param.is_empty() {
        let _ = write!(nested, "; nested={}", k.nested_param);
    }
    line("nested virt", nested);
    if let Some(st) = &fp.scratch {
        line("scratch", st.describe());
    }

    let c = &fp.cpu;
    line("cpu", format!("{} ({})", c.model, c.vendor));
    line(
        "cpu count",
        format!(
            "{} online, {} allowed by affinity, cgroup quota {}; usable {}",
            c.online,
            c.affinity,
            c.quota
                .map_or_else(|| "none".into(), |q| format!("{q:.2} CPUs")),
            fp.cpus
        ),
    );
    let sig = if c.hypervisor_bit {
        format!(
            "hypervisor bit set, signature \"{}\"",
            c.hypervisor_signature
        )
    } else {
        "hypervisor bit clear".into()
    };
    line("cpuid", sig);
    line("cpu flags", c.flags.join(" "));
    line(
        "memory",
        format!(
            "{} MemTotal; cgroup limit {}",
            size(fp.memory.total),
            or_none(fp.memory.cgroup_limit.map(size))
        ),
    );
    let m = &fp.memory;
    line(
        "memory mgmt",
        format!(
            "transparent huge pages {}; free page reporting to the hypervisor {}; proactive reclaim {}",
            if m.thp.is_empty() { "?" } else { &m.thp },
            if m.free_page_reporting { "on" } else { "off" },
            if m.proactive_reclaim.is_empty() {
                "none"
            } else {
                &m.proactive_reclaim
            }
        ),
    );
    line("kernel", fp.kernel.clone());
    line("clock source", {
        let mut s = fp.clocksource.clone();
        if !fp.clocksources.is_empty() {
            let _ = write!(s, " (available: {})", fp.clocksources.join(" "));
        }
        s
    });
    let g = &fp.cgroup;
    line(
        "cgroup",
        format!(
            "{}; memory max {}, cpu quota {}, pids max {}",
            if g.version.is_empty() {
                "none visible"
            } else {
                &g.version
            },
            or_none(g.memory_max.map(size)),
            match (g.cpu_quota_us, g.cpu_period_us) {
                (Some(q), Some(p)) => format!("{q}/{p} µs"),
                _ => "none".into(),
            },
            or_none(g.pids_max)
        ),
    );
    let paths: Vec<&str> = g
        .paths
        .iter()
        .map(String::as_str)
        .filter(|p| !p.ends_with(":/"))
        .collect();
    if !paths.is_empty() {
        line("cgroup paths", paths.join(", "));
    }
    let ns_group = |want: Option<bool>| {
        fp.namespaces
            .iter()
            .filter(|n| n.initial == want)
            .map(|n| n.kind.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    line(
        "namespaces",
        format!(
            "kernel's initial: [{}]; own: [{}]; not decidable: [{}]",
            ns_group(Some(true)),
            ns_group(Some(false)),
            ns_group(None)
        ),
    );
    line("pid 1", fp.pid1.clone());
    line(
        "dmi",
        if fp.dmi.is_empty() {
            "none".into()
        } else {
            fp.dmi.summary()
        },
    );
    line("hostname", fp.hostname.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(24_684_096 * 1024), "23.5 GiB");
        assert_eq!(size(512 << 20), "512.0 MiB");
        assert_eq!(size(100), "100 B");
    }
}
