//! The catalog of virtualization solutions: `catalog/solutions.toml`, embedded in
//! the binary, one entry per solution, every fact with its source.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The catalog as shipped with this virtmark.
pub const EMBEDDED: &str = include_str!("../../catalog/solutions.toml");

/// Version of the catalog's layout this virtmark reads.
pub const SCHEMA: u32 = 1;

/// A catalog that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not valid TOML, or a field of the wrong kind.
    #[error("catalog {origin}: {message}")]
    Parse {
        /// Which catalog.
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// A layout this virtmark does not read.
    #[error("catalog {origin}: schema {found}, this virtmark reads schema {SCHEMA}")]
    Schema {
        /// Which catalog.
        origin: String,
        /// The schema it declares.
        found: u32,
    },
    /// Parsed, but inconsistent.
    #[error("catalog {origin}: solution {solution:?}: {message}")]
    Invalid {
        /// Which catalog.
        origin: String,
        /// The solution at fault.
        solution: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

/// One fact with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact<T> {
    /// The fact.
    pub value: T,
    /// Key into the catalog's `[sources]`.
    pub source: String,
    /// The fact in words, when the value alone says too little.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The survey's taxonomy (White & Pilbeam), with hardware-assisted virtualization
/// from the VMM architecture survey. Resource virtualization has no entry: it
/// virtualizes storage or networks, not a place to run a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Every instruction emulated or translated in software.
    Emulation,
    /// Native (full) virtualization: unmodified guests, binary translation or a
    /// kernel module running guest code natively.
    Native,
    /// Full virtualization by VT-x/AMD-V.
    HardwareAssisted,
    /// A guest modified to call the hypervisor.
    Paravirtualization,
    /// Isolated user spaces on one shared kernel.
    OsLevel,
    /// An application-level sandbox: a kernel in user space between the
    /// application and the host.
    Sandbox,
}

impl Class {
    /// Every class, in the taxonomy's order.
    pub const ALL: [Class; 6] = [
        Class::Emulation,
        Class::Native,
        Class::HardwareAssisted,
        Class::Paravirtualization,
        Class::OsLevel,
        Class::Sandbox,
    ];

    /// The catalog's name (`os-level`).
    pub fn key(self) -> &'static str {
        match self {
            Class::Emulation => "emulation",
            Class::Native => "native",
            Class::HardwareAssisted => "hardware-assisted",
            Class::Paravirtualization => "paravirtualization",
            Class::OsLevel => "os-level",
            Class::Sandbox => "sandbox",
        }
    }

    /// The name in words.
    pub fn title(self) -> &'static str {
        match self {
            Class::Emulation => "emulation",
            Class::Native => "native (full) virtualization",
            Class::HardwareAssisted => "hardware-assisted virtualization",
            Class::Paravirtualization => "paravirtualization",
            Class::OsLevel => "OS-level virtualization",
            Class::Sandbox => "application-level sandbox",
        }
    }
}

/// License kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum License {
    /// An OSI open-source license.
    Open,
    /// Open core with proprietary parts.
    Dual,
    /// Commercial.
    Proprietary,
}

/// Which guests a solution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestOs {
    /// User spaces on the host's own kernel.
    SameKernel,
    /// Linux guests (its own kernel or a Linux ABI).
    LinuxOnly,
    /// Any OS for the host's architecture (x86 on x86).
    AnyX86,
    /// Any OS for any architecture.
    AnyArch,
}

/// What stands between a tenant and the host, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// The host kernel's namespaces and cgroups.
    SharedKernel,
    /// A kernel running as a host process (gVisor's Sentry, UML).
    UserKernel,
    /// A virtual machine boundary.
    Hypervisor,
}

impl Isolation {
    /// The catalog's name.
    pub fn key(self) -> &'static str {
        match self {
            Isolation::SharedKernel => "shared-kernel",
            Isolation::UserKernel => "user-kernel",
            Isolation::Hypervisor => "hypervisor",
        }
    }
}

/// What the host kernel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKernel {
    /// A stock kernel.
    Stock,
    /// An out-of-tree module.
    Module,
    /// A patched kernel.
    Patched,
}

/// A coarse level, lowest first (density, start-up speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Low density / slow start (≥ 10 s).
    Low,
    /// Medium.
    Medium,
    /// High density / fast start (< 1 s).
    High,
}

/// Start-up class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Startup {
    /// Ten seconds or more: firmware and a full OS boot.
    Slow,
    /// One to ten seconds.
    Medium,
    /// Under a second.
    Fast,
}

impl Startup {
    /// The class of a measured start-up time (start → agent answers), seconds.
    pub fn of_seconds(s: f64) -> Startup {
        if s < 1.0 {
            Startup::Fast
        } else if s < 10.0 {
            Startup::Medium
        } else {
            Startup::Slow
        }
    }
    /// The catalog's name.
    pub fn key(self) -> &'static str {
        match self {
            Startup::Slow => "slow",
            Startup::Medium => "medium",
            Startup::Fast => "fast",
        }
    }
}

impl Level {
    /// The catalog's name.
    pub fn key(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

/// How long a solution has been in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Maturity {
    /// A decade or more of production use.
    Mature,
    /// In production use.
    Established,
    /// New.
    Young,
}

/// Whether it is still developed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Developed and released.
    Maintained,
    /// No longer developed.
    Historic,
}

/// A performance band: the catalog's prior where nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Band {
    /// Under 0.1 of native.
    VerySlow,
    /// 0.1–0.5 of native.
    Slow,
    /// 0.5–0.85 of native.
    Moderate,
    /// 0.85–1.0 of native.
    NearNative,
    /// 0.97–1.0 of native.
    Native,
}

impl Band {
    /// The ratio-to-native interval this band stands for (low, high). These
    /// are virtmark's reading of the sources' words ("very slow", "close to
    /// 100%", "100%"), documented in docs/recommend.md.
    pub fn interval(self) -> (f64, f64) {
        match self {
            Band::VerySlow => (0.005, 0.1),
            Band::Slow => (0.1, 0.5),
            Band::Moderate => (0.5, 0.85),
            Band::NearNative => (0.85, 1.0),
            Band::Native => (0.97, 1.0),
        }
    }
    /// The catalog's name.
    pub fn key(self) -> &'static str {
        match self {
            Band::VerySlow => "very-slow",
            Band::Slow => "slow",
            Band::Moderate => "moderate",
            Band::NearNative => "near-native",
            Band::Native => "native",
        }
    }
}

/// The prior: one band for CPU and memory work, one for system-call and I/O work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// CPU- and memory-bound work.
    pub cpu: Band,
    /// Disk, network, databases: system-call and I/O work.
    pub io: Band,
}

/// One solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Solution {
    /// Stable identifier (`qemu-kvm`).
    pub id: String,
    /// Name in words.
    pub name: String,
    /// The virtmark target that measures it, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Fact<String>>,
    /// Class in the taxonomy.
    pub class: Fact<Class>,
    /// License.
    pub license: Fact<License>,
    /// Host operating systems (`linux`, `windows`, `macos`, `bare-metal`).
    pub host_os: Fact<Vec<String>>,
    /// Guest support.
    pub guest_os: Fact<GuestOs>,
    /// Whether the guest must be modified.
    pub guest_modification: Fact<bool>,
    /// Whether it runs guests of another architecture.
    pub cross_arch: Fact<bool>,
    /// Whether a running guest can move to another host.
    pub live_migration: Fact<bool>,
    /// The isolation boundary.
    pub isolation: Fact<Isolation>,
    /// What the host kernel needs.
    pub host_kernel: Fact<HostKernel>,
    /// Instances per host.
    pub density: Fact<Level>,
    /// Start-up class.
    pub startup: Fact<Startup>,
    /// Maturity.
    pub maturity: Fact<Maturity>,
    /// Maintained or historic.
    pub status: Fact<Status>,
    /// Prior performance bands.
    pub performance: Fact<Performance>,
}

impl Solution {
    /// The virtmark target name, when one measures it.
    pub fn target_name(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.value.as_str())
    }
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Layout version.
    pub schema: u32,
    /// Version of the data (a date).
    pub version: String,
    /// Citations by key.
    pub sources: BTreeMap<String, String>,
    /// The solutions, in taxonomy order.
    #[serde(rename = "solution")]
    pub solutions: Vec<Solution>,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

impl Catalog {
    /// The catalog shipped with this virtmark.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::parse(EMBEDDED, "catalog/solutions.toml (embedded)")
    }

    /// Parse and check a catalog; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let c: Catalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            origin: origin.into(),
            message: e.message().to_string(),
        })?;
        if c.schema != SCHEMA {
            return Err(CatalogError::Schema {
                origin: origin.into(),
                found: c.schema,
            });
        }
        c.check(origin)?;
        Ok(c)
    }

    fn check(&self, origin: &str) -> Result<(), CatalogError> {
        let bad = |solution: &str, message: String| CatalogError::Invalid {
            origin: origin.into(),
            solution: solution.into(),
            message,
        };
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.solutions {
            if !seen.insert(s.id.as_str()) {
                return Err(bad(&s.id, "the id is used twice".into()));
            }
            for src in s.sources() {
                if !self.sources.contains_key(src) {
                    return Err(bad(
                        &s.id,
                        format!(
                            "source {src:?} is not in [sources]: add it there with its citation"
                        ),
                    ));
                }
            }
            if let Some(t) = s.target_name() {
                crate::targets::parse(t).map_err(|e| {
                    bad(&s.id, format!("target {t:?} is not a virtmark target: {e}"))
                })?;
            }
            for h in &s.host_os.value {
                if !HOST_OS.contains(&h.as_str()) {
                    return Err(bad(
                        &s.id,
                        format!("host_os {h:?}: give one of {}", HOST_OS.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The citation of a source key.
    pub fn cite<'a>(&'a self, key: &'a str) -> &'a str {
        self.sources.get(key).map_or(key, |s| s.as_str())
    }

    /// The solutions of one class, in catalog order.
    pub fn of_class(&self, class: Class) -> impl Iterator<Item = &Solution> {
        self.solutions
            .iter()
            .filter(move |s| s.class.value == class)
    }
}

/// Host operating systems the catalog knows.
pub const HOST_OS: &[&str] = &["linux", "windows", "macos", "bare-metal"];

impl Solution {
    /// Every source key its facts cite.
    pub fn sources(&self) -> Vec<&str> {
        let mut v = vec![
            self.class.source.as_str(),
            self.license.source.as_str(),
            self.host_os.source.as_str(),
            self.guest_os.source.as_str(),
            self.guest_modification.source.as_str(),
            self.cross_arch.source.as_str(),
            self.live_migration.source.as_str(),
            self.isolation.source.as_str(),
            self.host_kernel.source.as_str(),
            self.density.source.as_str(),
            self.startup.source.as_str(),
            self.maturity.source.as_str(),
            self.status.source.as_str(),
            self.performance.source.as_str(),
        ];
        if let Some(t) = &self.target {
            v.push(t.source.as_str());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_loads_with_every_listed_solution() {
        let c = Catalog::embedded().unwrap();
        assert!(c.solutions.len() >= 20, "{}", c.solutions.len());
        for id in [
            "bochs",
            "qemu-tcg",
            "qemu-kvm",
            "kqemu",
            "virtualbox",
            "vmware",
            "hyper-v",
            "xen-pv",
            "xen-hvm",
            "uml",
            "openvz",
            "vserver",
            "lxc",
            "docker-runc",
            "crun",
            "podman",
            "nspawn",
            "gvisor",
            "kata",
            "firecracker",
            "cloud-hypervisor",
        ] {
            assert!(c.solutions.iter().any(|s| s.id == id), "{id} missing");
        }
        for class in Class::ALL {
            assert!(c.of_class(class).count() > 0, "{class} has no solution");
        }
    }

    #[test]
    fn an_unknown_source_is_refused_with_the_solution_named() {
        let text = EMBEDDED.replacen("source = \"bochs\"", "source = \"nowhere\"", 1);
        let e = Catalog::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("\"bochs\"") && e.contains("\"nowhere\""), "{e}");
    }

    #[test]
    fn a_fact_without_a_source_is_refused() {
        let text = EMBEDDED.replacen(
            "cross_arch = { value = true, detail = \"x86 guests on non-x86 hosts\", source = \"bochs\" }",
            "cross_arch = { value = true }",
            1,
        );
        assert_ne!(text, EMBEDDED);
        let e = Catalog::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("source"), "{e}");
    }

    #[test]
    fn a_target_virtmark_does_not_have_is_refused() {
        let text = EMBEDDED.replacen("value = \"qemu:tcg\"", "value = \"qemu:xyz\"", 1);
        let e = Catalog::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("qemu:xyz"), "{e}");
    }
}
