//! The flow model: requirements and a workload profile in; step 1 applies the
//! hard constraints (each exclusion with its reason), step 2 ranks what is left
//! by measured cost for the profile, falling back to the catalog's prior only
//! where this host measured nothing, and ties what the intervals cannot tell
//! apart.

use serde::{Deserialize, Serialize};

use super::catalog::{Band, Catalog, Class, GuestOs, HostKernel, Isolation, Level, License};
use super::catalog::{Solution, Startup, Status};
use crate::report::view::geometric_mean;
use crate::results::{Degradation, RunRecord};

/// A requirement that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RequirementError {
    /// An unknown requirement name.
    #[error("unknown requirement {0:?}: give one of guest-os=…, cross-arch, isolation=…, live-migration, license=open, density=…, start=…, host-os=…")]
    Unknown(String),
    /// A known requirement with a value it does not take.
    #[error("requirement {name}: {value:?} is not one of {accepted}")]
    Value {
        /// Requirement name.
        name: &'static str,
        /// What was given.
        value: String,
        /// What would be accepted.
        accepted: &'static str,
    },
    /// An unknown profile.
    #[error(
        "unknown profile {0:?}: give one of cpu, memory, disk, network, database, build, mixed"
    )]
    Profile(String),
}

/// The guest the user must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestNeed {
    /// Linux applications (any kernel, the host's included).
    Linux,
    /// Linux with its own kernel (modules, another version).
    LinuxOwnKernel,
    /// An unmodified, closed guest OS.
    Windows,
    /// Another x86 OS (a BSD, …).
    Other,
}

impl GuestNeed {
    fn parse(v: &str) -> Result<GuestNeed, RequirementError> {
        Ok(match v {
            "linux" => GuestNeed::Linux,
            "linux-own-kernel" => GuestNeed::LinuxOwnKernel,
            "windows" => GuestNeed::Windows,
            "other" | "bsd" => GuestNeed::Other,
            _ => {
                return Err(RequirementError::Value {
                    name: "guest-os",
                    value: v.into(),
                    accepted: "linux, linux-own-kernel, windows, bsd, other",
                })
            }
        })
    }
    fn key(self) -> &'static str {
        match self {
            GuestNeed::Linux => "linux",
            GuestNeed::LinuxOwnKernel => "linux-own-kernel",
            GuestNeed::Windows => "windows",
            GuestNeed::Other => "other",
        }
    }
}

/// What the user needs; every field unset is no constraint. Read from
/// `--need` flags or a TOML file with the same names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Requirements {
    /// The guest OS to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_os: Option<GuestNeed>,
    /// Guests of another CPU architecture.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cross_arch: bool,
    /// At least this isolation boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Live migration of running guests.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live_migration: bool,
    /// An open-source license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<License>,
    /// At least this density.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub density: Option<Level>,
    /// At least this fast a start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Startup>,
    /// The host's operating system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_os: Option<String>,
    /// Keep historic solutions and those that need a patched host kernel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_historic: bool,
    /// The workload profile (a file may name it; `--profile` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Requirements {
    /// Apply one `--need` word: `cross-arch` or `name=value`.
    pub fn apply(&mut self, need: &str) -> Result<(), RequirementError> {
        let (name, value) = match need.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (need.trim(), None),
        };
        let v = |name: &'static str, accepted: &'static str| {
            value.ok_or(RequirementError::Value {
                name,
                value: String::new(),
                accepted,
            })
        };
        let flag = |name: &'static str| match value {
            None | Some("yes") | Some("true") => Ok(true),
            Some("no") | Some("false") => Ok(false),
            Some(x) => Err(RequirementError::Value {
                name,
                value: x.into(),
                accepted: "yes, no (or the bare name)",
            }),
        };
        match name {
            "guest-os" => {
                self.guest_os = Some(GuestNeed::parse(v(
                    "guest-os",
                    "linux, linux-own-kernel, windows, bsd, other",
                )?)?)
            }
            "cross-arch" => self.cross_arch = flag("cross-arch")?,
            "live-migration" => self.live_migration = flag("live-migration")?,
            "isolation" => {
                const A: &str = "namespace, user-kernel, hypervisor";
                self.isolation = Some(match v("isolation", A)? {
                    "namespace" | "shared-kernel" => Isolation::SharedKernel,
                    "user-kernel" => Isolation::UserKernel,
                    "hypervisor" => Isolation::Hypervisor,
                    x => {
                        return Err(RequirementError::Value {
                            name: "isolation",
                            value: x.into(),
                            accepted: A,
                        })
                    }
                })
            }
            "license" => {
                const A: &str = "open";
                match v("license", A)? {
                    "open" => self.license = Some(License::Open),
                    x => {
                        return Err(RequirementError::Value {
                            name: "license",
                            value: x.into(),
                            accepted: A,
                        })
                    }
                }
            }
            "density" => {
                const A: &str = "high, medium, low";
                self.density = Some(match v("density", A)? {
                    "high" => Level::High,
                    "medium" => Level::Medium,
                    "low" => Level::Low,
                    x => {
                        return Err(RequirementError::Value {
                            name: "density",
                            value: x.into(),
                            accepted: A,
                        })
                    }
                })
            }
            "start" => {
                const A: &str = "fast, medium, slow";
                self.start = Some(match v("start", A)? {
                    "fast" => Startup::Fast,
                    "medium" => Startup::Medium,
                    "slow" => Startup::Slow,
                    x => {
                        return Err(RequirementError::Value {
                            name: "start",
                            value: x.into(),
                            accepted: A,
                        })
                    }
                })
            }
            "host-os" => {
                let h = v("host-os", "linux, windows, macos, bare-metal")?;
                if !super::catalog::HOST_OS.contains(&h) {
                    return Err(RequirementError::Value {
                        name: "host-os",
                        value: h.into(),
                        accepted: "linux, windows, macos, bare-metal",
                    });
                }
                self.host_os = Some(h.into());
            }
            "include-historic" => self.include_historic = flag("include-historic")?,
            _ => return Err(RequirementError::Unknown(need.into())),
        }
        Ok(())
    }

    /// The requirements as `--need` words, for the record.
    pub fn words(&self) -> Vec<String> {
        let mut w = vec![];
        if let Some(g) = self.guest_os {
            w.push(format!("guest-os={}", g.key()));
        }
        if self.cross_arch {
            w.push("cross-arch".into());
        }
        if let Some(i) = self.isolation {
            w.push(format!("isolation={}", isolation_word(i)));
        }
        if self.live_migration {
            w.push("live-migration".into());
        }
        if self.license.is_some() {
            w.push("license=open".into());
        }
        if let Some(d) = self.density {
            w.push(format!("density={}", d.key()));
        }
        if let Some(s) = self.start {
            w.push(format!("start={}", s.key()));
        }
        if let Some(h) = &self.host_os {
            w.push(format!("host-os={h}"));
        }
        if self.include_historic {
            w.push("include-historic".into());
        }
        w
    }
}

fn isolation_word(i: Isolation) -> &'static str {
    match i {
        Isolation::SharedKernel => "namespace",
        Isolation::UserKernel => "user-kernel",
        Isolation::Hypervisor => "hypervisor",
    }
}

/// The workloads a choice is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// `network`, or `run <id>` for `--profile-from`.
    pub name: String,
    /// The workloads whose ratios to native are averaged.
    pub workloads: Vec<String>,
}

/// Named profiles and their workloads.
pub const PROFILES: &[(&str, &[&str])] = &[
    ("cpu", &["cpu-int", "cpu-fp"]),
    ("memory", &["mem-bw"]),
    ("disk", &["fileio", "dd-copy", "dd-zero", "dbench"]),
    (
        "network",
        &["net-stream", "net-maerts", "net-sendfile", "net-rr"],
    ),
    ("database", &["oltp"]),
    ("build", &["build"]),
];

impl Profile {
    /// A named profile (`mixed` = every workload of the suite).
    pub fn named(name: &str) -> Result<Profile, RequirementError> {
        let workloads: Vec<String> = if name == "mixed" {
            crate::workloads::ALL
                .iter()
                .map(|w| w.name.to_string())
                .collect()
        } else {
            PROFILES
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| RequirementError::Profile(name.into()))?
                .1
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        Ok(Profile {
            name: name.into(),
            workloads,
        })
    }

    /// The workloads a run measured with a ratio to native, each once.
    pub fn from_run(run: &RunRecord) -> Profile {
        let mut workloads: Vec<String> = vec![];
        for r in run.results.iter().filter(|r| r.headline) {
            if !workloads.contains(&r.workload) {
                workloads.push(r.workload.clone());
            }
        }
        Profile {
            name: format!("the workloads of run {}", run.run_id),
            workloads,
        }
    }

    /// Share of the profile that the catalog's `cpu` band stands for (CPU and
    /// memory work); the rest is system-call and I/O work (`io` band).
    fn cpu_share(&self) -> f64 {
        if self.workloads.is_empty() {
            return 0.5;
        }
        let cpu = self
            .workloads
            .iter()
            .filter(|w| matches!(w.as_str(), "cpu-int" | "cpu-fp" | "mem-bw" | "compress"))
            .count();
        cpu as f64 / self.workloads.len() as f64
    }
}

/// A ratio to native in words: two decimals from 0.095 up, else two
/// significant digits (`0.18`, `0.0042`), so that small ratios keep their size.
pub fn x(r: f64) -> String {
    if !r.is_finite() {
        return "–".into();
    }
    if r.abs() >= 0.095 || r == 0.0 {
        return format!("{r:.2}");
    }
    let decimals = (-r.abs().log10()).ceil() as usize + 1;
    format!("{r:.decimals$}")
}

/// `, 94%` for an interval's stated coverage; `, no interval` at 0.
pub fn level_text(level: Option<f64>) -> String {
    match level {
        Some(l) if l > 0.0 => format!(", {:.0}%", l * 100.0),
        Some(_) => ", no interval: too few samples".into(),
        None => String::new(),
    }
}

/// One measured ratio that a rank rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The run it comes from.
    pub run_id: String,
    /// The virtmark target.
    pub target: String,
    /// The workload.
    pub workload: String,
    /// Median ratio to native (1.0 = native, higher is better).
    pub ratio: f64,
    /// The ratio's interval, as stored with the run.
    pub low: f64,
    /// High end.
    pub high: f64,
    /// The interval's real coverage as the run stores it (0: too few samples
    /// for any interval); absent in runs stored before virtmark recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
}

impl Evidence {
    /// `net-rr 0.18× [0.17–0.19] (run R)`.
    pub fn cite(&self) -> String {
        format!(
            "{} {}× [{}–{}{}] (run {})",
            self.workload,
            x(self.ratio),
            x(self.low),
            x(self.high),
            level_text(self.level),
            self.run_id
        )
    }
}

/// The cost estimate of one solution for the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Geometric mean of the ratios to native (1.0 = native, higher is better).
    pub value: f64,
    /// Interval: geometric mean of the ratios' low ends.
    pub low: f64,
    /// Interval: geometric mean of the ratios' high ends.
    pub high: f64,
    /// Measured here (true) or the catalog's prior ("not measured here").
    pub measured: bool,
    /// The measurements it rests on (empty for a prior).
    pub evidence: Vec<Evidence>,
    /// Profile workloads the target did not measure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// How it was obtained, in words.
    pub basis: String,
}

/// A solution left out in step 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// Catalog id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Class.
    pub class: Class,
    /// Every constraint it fails, in words, with the source of the fact.
    pub reasons: Vec<String>,
}

/// One decision of the flow: a node of the flow chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Short name (`guest OS`).
    pub node: String,
    /// What was asked, or `no requirement`.
    pub asked: String,
    /// Whether this decision constrained anything (the path goes through it).
    pub applied: bool,
    /// Candidates before the decision.
    pub before: usize,
    /// Ids it excluded.
    pub excluded: Vec<String>,
}

/// A ranked solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// Rank (1 = best); tied solutions share it.
    pub rank: usize,
    /// Whether it shares its rank with another solution.
    pub tied: bool,
    /// Catalog id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Class.
    pub class: Class,
    /// The virtmark target that measures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Cost for the profile.
    pub cost: Cost,
    /// Measured isolation: the worst degradation of the well-behaved instances
    /// over the stressors, %, and the stressors where they returned nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_measured: Option<String>,
    /// Why it stands where it does.
    pub reasons: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The catalog version used.
    pub catalog_version: String,
    /// The requirements as `--need` words.
    pub requirements: Vec<String>,
    /// The workload profile.
    pub profile: Profile,
    /// The run measurements came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Remarks on the inputs (no run found, partial run, …).
    pub notes: Vec<String>,
    /// Every decision in order: the path through the flow.
    pub path: Vec<Decision>,
    /// Step 2: what is left, best first.
    pub ranking: Vec<Ranked>,
    /// Step 1: what was left out and why.
    pub excluded: Vec<Excluded>,
    /// The citation of every source key in the reasons (`[felter]`).
    pub sources: std::collections::BTreeMap<String, String>,
}

/// What a run measured about one target besides overhead.
#[derive(Debug, Clone, Default)]
struct Measured {
    density: Option<(Level, String)>,
    startup: Option<(Startup, String)>,
    isolation: Option<String>,
}

/// Density from the scalability step: a target that returned nothing at an n
/// where another target completed is `low`; one that completed the largest n
/// with an aggregate at least 0.8 of the best target's there is `high`;
/// otherwise `medium`.
fn measured_density(run: &RunRecord, target: &str) -> Option<(Level, String)> {
    let mine: Vec<_> = run.scale.iter().filter(|e| e.target == target).collect();
    if mine.is_empty() {
        return None;
    }
    let complete = |e: &crate::results::ScaleEntry| e.dnr.is_empty() && e.aggregate.is_some();
    for e in &mine {
        if !complete(e)
            && run
                .scale
                .iter()
                .any(|o| o.target != target && o.instances == e.instances && complete(o))
        {
            return Some((
                Level::Low,
                format!(
                    "{} of {} instances returned nothing at n = {} where another target completed (run {})",
                    e.dnr.len(),
                    e.instances,
                    e.instances,
                    run.run_id
                ),
            ));
        }
    }
    let top = mine.iter().map(|e| e.instances).max()?;
    let at = mine.iter().find(|e| e.instances == top)?;
    let agg = at.aggregate?.mean_times_n;
    let best = run
        .scale
        .iter()
        .filter(|o| o.instances == top)
        .filter_map(|o| o.aggregate.map(|a| a.mean_times_n))
        .fold(f64::NAN, f64::max);
    let share = agg / best;
    let level = if complete(at) && share >= 0.8 {
        Level::High
    } else {
        Level::Medium
    };
    Some((
        level,
        format!(
            "aggregate {} at n = {top} is {:.2} of the best target's (run {})",
            crate::report::fmt_num(agg),
            share,
            run.run_id
        ),
    ))
}

fn measured_isolation(run: &RunRecord, target: &str) -> Option<String> {
    let mine: Vec<_> = run
        .isolation
        .iter()
        .filter(|e| e.target == target)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut worst: Option<(f64, &str)> = None;
    let mut dnr = vec![];
    for e in &mine {
        match &e.degradation.well_behaved {
            Degradation::Percent(p) => {
                if worst.is_none_or(|(w, _)| *p > w) {
                    worst = Some((*p, e.stressor.as_str()));
                }
            }
            Degradation::Dnr { .. } => dnr.push(e.stressor.as_str()),
        }
    }
    let mut s = match worst {
        Some((p, st)) => format!(
            "well-behaved instances lost at most {} (under {st})",
            crate::report::view::fmt_percent(p)
        ),
        None => "well-behaved instances returned nothing".to_string(),
    };
    if !dnr.is_empty() {
        s.push_str(&format!("; DNR under {}", dnr.join(", ")));
    }
    s.push_str(&format!(" (run {})", run.run_id));
    Some(s)
}

fn measured(run: Option<&RunRecord>, target: Option<&str>) -> Measured {
    let (Some(run), Some(t)) = (run, target) else {
        return Measured::default();
    };
    Measured {
        density: measured_density(run, t),
        startup: run
            .targets
            .iter()
            .find(|r| r.name == t)
            .and_then(|r| r.startup_s)
            .map(|s| {
                (
                    Startup::of_seconds(s),
                    format!("started in {s:.2} s (run {})", run.run_id),
                )
            }),
        isolation: measured_isolation(run, t),
    }
}

/// The cost of `s` for `profile`: measured when the run has ratios for its
/// target on any of the profile's workloads, else the catalog's prior.
fn cost(s: &Solution, profile: &Profile, run: Option<&RunRecord>) -> Cost {
    if let (Some(run), Some(target)) = (run, s.target_name()) {
        let mut evidence = vec![];
        let mut missing = vec![];
        for w in &profile.workloads {
            let hit = run.results.iter().find(|r| {
                r.headline && r.target == target && &r.workload == w && r.ratio_to_native.is_some()
            });
            match hit {
                Some(r) => {
                    let ratio = r.ratio_to_native.unwrap_or(f64::NAN);
                    evidence.push(Evidence {
                        run_id: run.run_id.clone(),
                        target: target.into(),
                        workload: w.clone(),
                        ratio,
                        low: r.ratio_ci_low.unwrap_or(ratio),
                        high: r.ratio_ci_high.unwrap_or(ratio),
                        level: r.ratio_ci_level,
                    })
                }
                None => missing.push(w.clone()),
            }
        }
        let gm =
            |f: fn(&Evidence) -> f64| geometric_mean(&evidence.iter().map(f).collect::<Vec<_>>());
        if let (Some(value), Some(low), Some(high)) =
            (gm(|e| e.ratio), gm(|e| e.low), gm(|e| e.high))
        {
            let basis = format!(
                "measured here: {}× [{}–{}], geometric mean over {} of {} workload(s): {}",
                x(value),
                x(low),
                x(high),
                evidence.len(),
                profile.workloads.len(),
                evidence
                    .iter()
                    .map(Evidence::cite)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            return Cost {
                value,
                low,
                high,
                measured: true,
                evidence,
                missing,
                basis,
            };
        }
    }
    prior(s, profile)
}

fn prior(s: &Solution, profile: &Profile) -> Cost {
    let p = &s.performance;
    let w = profile.cpu_share();
    let mix = |a: f64, b: f64| (w * a.ln() + (1.0 - w) * b.ln()).exp();
    let (clo, chi) = p.value.cpu.interval();
    let (ilo, ihi) = p.value.io.interval();
    let (low, high) = (mix(clo, ilo), mix(chi, ihi));
    let bands = |b: Band| format!("{} ({}–{})", b.key(), x(b.interval().0), x(b.interval().1));
    Cost {
        value: (low * high).sqrt(),
        low,
        high,
        measured: false,
        evidence: vec![],
        missing: vec![],
        basis: format!(
            "not measured here: catalog prior cpu {}, io {}, weighted {:.0}% cpu for this profile{} [{}]",
            bands(p.value.cpu),
            bands(p.value.io),
            w * 100.0,
            p.detail
                .as_deref()
                .map(|d| format!("; {d}"))
                .unwrap_or_default(),
            p.source
        ),
    }
}

/// A constraint's test: `None` = passes, `Some(reason)` = excluded.
type Test = Box<dyn Fn(&Solution, &Measured) -> Option<String>>;

/// One hard constraint of step 1.
struct Constraint {
    node: &'static str,
    asked: Option<String>,
    test: Test,
}

fn fact_note<T>(f: &super::catalog::Fact<T>) -> String {
    match &f.detail {
        Some(d) => format!(" ({d}) [{}]", f.source),
        None => format!(" [{}]", f.source),
    }
}

fn constraints(req: &Requirements) -> Vec<Constraint> {
    let mut v: Vec<Constraint> = vec![];
    let g = req.guest_os;
    v.push(Constraint {
        node: "guest OS",
        asked: g.map(|g| match g {
            GuestNeed::Windows => "windows: an unmodified, closed guest OS".to_string(),
            GuestNeed::Other => "another x86 OS (not Linux)".to_string(),
            GuestNeed::LinuxOwnKernel => "Linux with its own kernel".to_string(),
            GuestNeed::Linux => "Linux applications".to_string(),
        }),
        test: Box::new(move |s, _| {
            let g = g?;
            let gos = s.guest_os.value;
            let any = matches!(gos, GuestOs::AnyX86 | GuestOs::AnyArch);
            let why = match g {
                GuestNeed::Linux => None,
                GuestNeed::LinuxOwnKernel => (gos == GuestOs::SameKernel)
                    .then(|| "guests share the host's kernel".to_string()),
                GuestNeed::Other => {
                    (!any).then(|| format!("runs {} guests only", guest_words(gos)))
                }
                GuestNeed::Windows => {
                    if !any {
                        Some(format!("runs {} guests only", guest_words(gos)))
                    } else if s.guest_modification.value {
                        Some("needs a modified guest".to_string())
                    } else {
                        None
                    }
                }
            };
            why.map(|w| {
                let f = if w.contains("modified") {
                    fact_note(&s.guest_modification)
                } else {
                    fact_note(&s.guest_os)
                };
                format!("{w}{f}")
            })
        }),
    });
    let cross = req.cross_arch;
    v.push(Constraint {
        node: "cross-architecture",
        asked: cross.then(|| "guests of another CPU architecture".into()),
        test: Box::new(move |s, _| {
            (cross && !s.cross_arch.value).then(|| {
                format!(
                    "runs guests of the host's architecture only{}",
                    fact_note(&s.cross_arch)
                )
            })
        }),
    });
    let iso = req.isolation;
    v.push(Constraint {
        node: "isolation",
        asked: iso.map(|i| format!("at least a {} boundary", i.key())),
        test: Box::new(move |s, _| {
            let i = iso?;
            (s.isolation.value < i).then(|| {
                format!(
                    "isolation boundary is {}, weaker than {}{}",
                    s.isolation.value.key(),
                    i.key(),
                    fact_note(&s.isolation)
                )
            })
        }),
    });
    let lm = req.live_migration;
    v.push(Constraint {
        node: "live migration",
        asked: lm.then(|| "live migration of running guests".into()),
        test: Box::new(move |s, _| {
            (lm && !s.live_migration.value)
                .then(|| format!("no live migration{}", fact_note(&s.live_migration)))
        }),
    });
    let lic = req.license;
    v.push(Constraint {
        node: "license",
        asked: lic.map(|_| "an open-source license".into()),
        test: Box::new(move |s, _| {
            (lic.is_some() && s.license.value != License::Open).then(|| {
                format!(
                    "license is {}{}",
                    match s.license.value {
                        License::Dual => "dual (open core, proprietary parts)",
                        License::Proprietary => "proprietary",
                        License::Open => "open",
                    },
                    fact_note(&s.license)
                )
            })
        }),
    });
    let dens = req.density;
    v.push(Constraint {
        node: "density",
        asked: dens.map(|d| format!("at least {} density", d.key())),
        test: Box::new(move |s, m| {
            let d = dens?;
            match &m.density {
                Some((lvl, why)) => {
                    (*lvl < d).then(|| format!("measured density is {}: {why}", lvl.key()))
                }
                None => (s.density.value < d).then(|| {
                    format!(
                        "density is {}{}",
                        s.density.value.key(),
                        fact_note(&s.density)
                    )
                }),
            }
        }),
    });
    let st = req.start;
    v.push(Constraint {
        node: "start-up",
        asked: st.map(|x| format!("a {} start", x.key())),
        test: Box::new(move |s, m| {
            let want = st?;
            match &m.startup {
                Some((c, why)) => {
                    (*c < want).then(|| format!("measured start-up is {}: {why}", c.key()))
                }
                None => (s.startup.value < want).then(|| {
                    format!(
                        "start-up is {}{}",
                        s.startup.value.key(),
                        fact_note(&s.startup)
                    )
                }),
            }
        }),
    });
    let host = req.host_os.clone();
    v.push(Constraint {
        node: "host OS",
        asked: host.as_ref().map(|h| format!("runs on a {h} host")),
        test: Box::new(move |s, _| {
            let h = host.as_deref()?;
            (!s.host_os.value.iter().any(|x| x == h)).then(|| {
                format!(
                    "runs on {} hosts only{}",
                    s.host_os.value.join(", "),
                    fact_note(&s.host_os)
                )
            })
        }),
    });
    let hist = req.include_historic;
    v.push(Constraint {
        node: "maintained",
        asked: (!hist)
            .then(|| "maintained, no patched host kernel (--include-historic lifts this)".into()),
        test: Box::new(move |s, _| {
            if hist {
                return None;
            }
            let mut why = vec![];
            if s.host_kernel.value == HostKernel::Patched {
                why.push(format!(
                    "needs a patched host kernel{}",
                    fact_note(&s.host_kernel)
                ));
            }
            if s.status.value == Status::Historic {
                why.push(format!("status historic{}", fact_note(&s.status)));
            }
            (!why.is_empty()).then(|| why.join("; "))
        }),
    });
    v
}

fn guest_words(g: GuestOs) -> &'static str {
    match g {
        GuestOs::SameKernel => "same-kernel (the host's Linux)",
        GuestOs::LinuxOnly => "Linux",
        GuestOs::AnyX86 => "x86",
        GuestOs::AnyArch => "any-architecture",
    }
}

/// Run the flow: step 1 over the whole catalog, step 2 over what is left, with
/// measurements from `run` where it has them.
pub fn recommend(
    catalog: &Catalog,
    req: &Requirements,
    profile: &Profile,
    run: Option<&RunRecord>,
) -> Recommendation {
    let mut notes = vec![];
    match run {
        Some(r) => {
            let mut unused: Vec<&str> = vec![];
            for t in r.results.iter().filter(|x| x.ratio_to_native.is_some()) {
                let known = catalog
                    .solutions
                    .iter()
                    .any(|s| s.target_name() == Some(t.target.as_str()));
                if !known && !unused.contains(&t.target.as_str()) {
                    unused.push(&t.target);
                }
            }
            if !unused.is_empty() {
                notes.push(format!(
                    "run {} measured {} too, which no catalog solution names as its target (run qemu:kvm or qemu:tcg rather than qemu); not used",
                    r.run_id,
                    unused.join(", ")
                ));
            }
            if r.status != crate::results::RunStatus::Complete {
                notes.push(format!(
                    "run {} is {}: only what it measured counts",
                    r.run_id,
                    r.status.as_str()
                ));
            }
        }
        None => notes.push(
            "no run with ratios to native: every cost is the catalog's prior, not measured here"
                .into(),
        ),
    }
    let meas: Vec<Measured> = catalog
        .solutions
        .iter()
        .map(|s| measured(run, s.target_name()))
        .collect();
    // Step 1: every constraint in order; a solution fails at the first, but its
    // exclusion lists every constraint it fails.
    let cs = constraints(req);
    let mut alive: Vec<bool> = vec![true; catalog.solutions.len()];
    let mut reasons: Vec<Vec<String>> = vec![vec![]; catalog.solutions.len()];
    let mut path = vec![Decision {
        node: "requirements".into(),
        asked: if req.words().is_empty() {
            "none given".into()
        } else {
            req.words().join(", ")
        },
        applied: true,
        before: catalog.solutions.len(),
        excluded: vec![],
    }];
    for c in &cs {
        let before = alive.iter().filter(|a| **a).count();
        let mut excluded = vec![];
        for (i, s) in catalog.solutions.iter().enumerate() {
            if let Some(why) = (c.test)(s, &meas[i]) {
                reasons[i].push(format!("{}: {why}", c.node));
                if alive[i] {
                    alive[i] = false;
                    excluded.push(s.id.clone());
                }
            }
        }
        path.push(Decision {
            node: c.node.into(),
            asked: c.asked.clone().unwrap_or_else(|| "no requirement".into()),
            applied: c.asked.is_some(),
            before,
            excluded,
        });
    }
    let excluded: Vec<Excluded> = catalog
        .solutions
        .iter()
        .enumerate()
        .filter(|(i, _)| !alive[*i])
        .map(|(i, s)| Excluded {
            id: s.id.clone(),
            name: s.name.clone(),
            class: s.class.value,
            reasons: reasons[i].clone(),
        })
        .collect();
    // Step 2: cost for the profile, best first; overlapping intervals tie.
    let mut ranked: Vec<Ranked> = catalog
        .solutions
        .iter()
        .enumerate()
        .filter(|(i, _)| alive[*i])
        .map(|(i, s)| Ranked {
            rank: 0,
            tied: false,
            id: s.id.clone(),
            name: s.name.clone(),
            class: s.class.value,
            target: s.target_name().map(String::from),
            cost: cost(s, profile, run),
            isolation_measured: meas[i].isolation.clone(),
            reasons: vec![],
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.cost
            .value
            .total_cmp(&a.cost.value)
            .then(b.cost.measured.cmp(&a.cost.measured))
    });
    assign_ranks(&mut ranked);
    explain(&mut ranked);
    let measured_n = ranked.iter().filter(|r| r.cost.measured).count();
    path.push(Decision {
        node: "measured cost".into(),
        asked: format!(
            "{}: {} measured here, {} from the catalog's prior",
            profile.name,
            measured_n,
            ranked.len() - measured_n
        ),
        applied: measured_n > 0,
        before: ranked.len(),
        excluded: vec![],
    });
    path.push(Decision {
        node: "ranking".into(),
        asked: match ranked.first() {
            Some(r) => format!("best: {}", tied_names(&ranked, r.rank)),
            None => "nothing meets every requirement".into(),
        },
        applied: !ranked.is_empty(),
        before: ranked.len(),
        excluded: vec![],
    });
    let sources = catalog
        .sources
        .iter()
        .filter(|(k, _)| {
            let tag = format!("[{k}]");
            ranked
                .iter()
                .any(|r| r.reasons.iter().any(|x| x.contains(&tag)))
                || excluded
                    .iter()
                    .any(|e| e.reasons.iter().any(|x| x.contains(&tag)))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Recommendation {
        catalog_version: catalog.version.clone(),
        requirements: req.words(),
        profile: profile.clone(),
        run_id: run.map(|r| r.run_id.clone()),
        notes,
        path,
        ranking: ranked,
        excluded,
        sources,
    }
}

/// Rank groups: walking best first, a solution shares the rank of the group
/// before it when its interval overlaps the interval of every member of that
/// group; otherwise it starts the next rank.
fn assign_ranks(ranked: &mut [Ranked]) {
    let mut rank = 0;
    let mut group: Vec<(f64, f64)> = vec![];
    for r in ranked.iter_mut() {
        let me = (r.cost.low, r.cost.high);
        if group.is_empty() || !group.iter().all(|g| overlaps(me, *g)) {
            rank += 1;
            group.clear();
        }
        group.push(me);
        r.rank = rank;
    }
    let ranks: Vec<usize> = ranked.iter().map(|r| r.rank).collect();
    for r in ranked.iter_mut() {
        r.tied = ranks.iter().filter(|x| **x == r.rank).count() > 1;
    }
}

/// Whether two intervals overlap (sharing only an end point does not count:
/// the catalog's bands meet at their ends).
pub fn overlaps(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn tied_names(ranked: &[Ranked], rank: usize) -> String {
    ranked
        .iter()
        .filter(|r| r.rank == rank)
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(" = ")
}

fn short_cost(r: &Ranked) -> String {
    let ev: Vec<String> = r.cost.evidence.iter().map(Evidence::cite).collect();
    format!(
        "{} measured {}× [{}–{}]: {}",
        r.name,
        x(r.cost.value),
        x(r.cost.low),
        x(r.cost.high),
        ev.join("; ")
    )
}

/// Solutions in words: measured ones with their evidence, priors grouped by
/// their interval.
fn cite_group(group: &[&Ranked]) -> String {
    let mut parts: Vec<String> = group
        .iter()
        .filter(|r| r.cost.measured)
        .map(|r| short_cost(r))
        .collect();
    let mut priors: Vec<(String, Vec<&str>)> = vec![];
    for r in group.iter().filter(|r| !r.cost.measured) {
        let key = format!("{}–{}", x(r.cost.low), x(r.cost.high));
        match priors.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(&r.name),
            None => priors.push((key, vec![&r.name])),
        }
    }
    for (key, names) in priors {
        parts.push(format!(
            "{} (prior {key}, not measured here)",
            names.join(", ")
        ));
    }
    parts.join("; ")
}

fn explain(ranked: &mut [Ranked]) {
    let snapshot: Vec<Ranked> = ranked.to_vec();
    for r in ranked.iter_mut() {
        r.reasons.push(r.cost.basis.clone());
        if !r.cost.missing.is_empty() {
            r.reasons.push(format!(
                "not measured for {} (those workloads are not in the run)",
                r.cost.missing.join(", ")
            ));
        }
        let peers: Vec<&str> = snapshot
            .iter()
            .filter(|o| o.rank == r.rank && o.id != r.id)
            .map(|o| o.name.as_str())
            .collect();
        if !peers.is_empty() {
            r.reasons.push(format!(
                "tied with {}: the intervals overlap",
                peers.join(", ")
            ));
        }
        let me = (r.cost.low, r.cost.high);
        let apart = |o: &&Ranked| !overlaps(me, (o.cost.low, o.cost.high));
        for (rank, word) in [(r.rank + 1, "above"), (r.rank.wrapping_sub(1), "below")] {
            let group: Vec<&Ranked> = snapshot.iter().filter(|o| o.rank == rank).collect();
            let (d, o): (Vec<&Ranked>, Vec<&Ranked>) = group.into_iter().partition(apart);
            if !d.is_empty() {
                r.reasons.push(format!(
                    "{word} {}: the intervals do not overlap",
                    cite_group(&d)
                ));
            }
            if !o.is_empty() {
                r.reasons.push(format!(
                    "{word} {} by the point estimate only: the intervals overlap, but not with every solution of the other rank",
                    o.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if !r.cost.measured {
            let siblings: Vec<&Ranked> = snapshot
                .iter()
                .filter(|o| o.cost.measured && o.class == r.class)
                .collect();
            if !siblings.is_empty() {
                r.reasons.push(format!(
                    "the same class measured here: {}; this solution itself was not, so its prior may not hold on this host",
                    cite_group(&siblings)
                ));
            }
        }
        if let Some(i) = &r.isolation_measured {
            r.reasons.push(format!("isolation measured here: {i}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::fixtures;
    use crate::report::testing::{synthetic_isolation, synthetic_scale};

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn needs_parse_and_name_what_is_accepted() {
        let mut r = Requirements::default();
        for n in [
            "guest-os=windows",
            "cross-arch",
            "isolation=namespace",
            "license=open",
            "density=high",
            "start=fast",
            "live-migration",
            "host-os=linux",
        ] {
            r.apply(n).unwrap();
        }
        assert_eq!(r.isolation, Some(Isolation::SharedKernel));
        assert_eq!(r.words().len(), 8, "{:?}", r.words());
        let e = r.apply("density=huge").unwrap_err().to_string();
        assert!(e.contains("huge") && e.contains("high, medium, low"), "{e}");
        let e = r.apply("fast-network").unwrap_err().to_string();
        assert!(
            e.contains("fast-network") && e.contains("cross-arch"),
            "{e}"
        );
        assert!(Profile::named("gpu").is_err());
    }

    #[test]
    fn measured_density_overrides_the_catalog() {
        // uml loses instances at n = 8 where ns and gvisor complete: measured low.
        let mut run = fixtures::run("f", "h", &[("ns", "cpu-int", 1.0), ("uml", "cpu-int", 0.9)]);
        run.scale = synthetic_scale(&["ns", "gvisor", "uml"]);
        let mut req = Requirements::default();
        req.apply("density=medium").unwrap();
        let rec = recommend(
            &catalog(),
            &req,
            &Profile::named("cpu").unwrap(),
            Some(&run),
        );
        let uml = rec
            .excluded
            .iter()
            .find(|e| e.id == "uml")
            .expect("uml excluded");
        assert!(
            uml.reasons[0].contains("measured density is low"),
            "{:?}",
            uml.reasons
        );
        // Without measurements uml's catalog density (medium) passes.
        let rec = recommend(&catalog(), &req, &Profile::named("cpu").unwrap(), None);
        assert!(rec.ranking.iter().any(|r| r.id == "uml"));
    }

    #[test]
    fn measured_start_up_overrides_the_catalog() {
        let mut run = fixtures::run("f", "h", &[("qemu:tcg", "cpu-int", 0.1)]);
        run.targets.iter_mut().for_each(|t| t.startup_s = Some(0.4));
        let mut req = Requirements::default();
        req.apply("start=fast").unwrap();
        let rec = recommend(
            &catalog(),
            &req,
            &Profile::named("cpu").unwrap(),
            Some(&run),
        );
        // The catalog says slow; this host started it in 0.4 s.
        assert!(
            rec.ranking.iter().any(|r| r.id == "qemu-tcg"),
            "{:?}",
            rec.excluded
        );
        assert!(rec.excluded.iter().any(|e| e.id == "bochs"));
    }

    #[test]
    fn measured_isolation_is_cited() {
        let mut run = fixtures::run("f", "h", &[("gvisor", "cpu-int", 0.97)]);
        run.isolation = synthetic_isolation(&["gvisor"]);
        let rec = recommend(
            &catalog(),
            &Requirements::default(),
            &Profile::named("cpu").unwrap(),
            Some(&run),
        );
        let g = rec.ranking.iter().find(|r| r.id == "gvisor").unwrap();
        let iso = g.isolation_measured.as_deref().unwrap();
        assert!(
            iso.contains("well-behaved") && iso.contains("(run f)"),
            "{iso}"
        );
        assert!(g
            .reasons
            .iter()
            .any(|x| x.starts_with("isolation measured here")));
    }

    #[test]
    fn a_prior_is_marked_and_a_measurement_replaces_it() {
        let run = fixtures::run("f", "h", &[("gvisor", "net-rr", 0.5)]);
        let p = Profile::named("network").unwrap();
        let rec = recommend(&catalog(), &Requirements::default(), &p, Some(&run));
        let g = rec.ranking.iter().find(|r| r.id == "gvisor").unwrap();
        assert!(g.cost.measured);
        assert_eq!(
            g.cost.missing,
            vec!["net-stream", "net-maerts", "net-sendfile"]
        );
        let f = rec.ranking.iter().find(|r| r.id == "firecracker").unwrap();
        assert!(!f.cost.measured && f.cost.basis.starts_with("not measured here"));
        assert!(f.cost.low < f.cost.value && f.cost.value < f.cost.high);
        // An unmeasured sibling of a measured solution says so; Kata, whose
        // class nothing measured here, does not.
        let run = fixtures::run("f", "h", &[("ns", "net-rr", 0.6)]);
        let rec = recommend(&catalog(), &Requirements::default(), &p, Some(&run));
        let lxc = rec.ranking.iter().find(|r| r.id == "lxc").unwrap();
        assert!(
            lxc.reasons.iter().any(
                |x| x.starts_with("the same class measured here: Namespaces")
                    && x.contains("net-rr 0.60×")
            ),
            "{:?}",
            lxc.reasons
        );
        let kata = rec.ranking.iter().find(|r| r.id == "kata").unwrap();
        assert!(!kata.reasons.iter().any(|x| x.contains("same class")));
    }

    #[test]
    fn live_migration_with_an_open_license_keeps_the_open_hypervisors() {
        let mut req = Requirements::default();
        req.apply("live-migration").unwrap();
        req.apply("license=open").unwrap();
        let rec = recommend(&catalog(), &req, &Profile::named("mixed").unwrap(), None);
        let ids: Vec<&str> = rec.ranking.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "qemu-kvm",
            "qemu-tcg",
            "xen-hvm",
            "xen-pv",
            "cloud-hypervisor",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        let why = |id: &str| {
            rec.excluded
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.reasons.join("; "))
                .unwrap_or_default()
        };
        assert!(why("vmware").contains("license is proprietary"));
        assert!(why("virtualbox").contains("license is dual"));
        assert!(why("firecracker").contains("no live migration (snapshot and restore only)"));
        // The historic OpenVZ is excluded by status, not by live migration.
        assert!(why("openvz").contains("status historic") && !why("openvz").contains("live"));
    }

    #[test]
    fn a_measured_target_no_solution_names_is_noted_not_used() {
        let run = fixtures::run(
            "f",
            "h",
            &[("qemu", "cpu-int", 0.9), ("ns", "cpu-int", 1.0)],
        );
        let rec = recommend(
            &catalog(),
            &Requirements::default(),
            &Profile::named("cpu").unwrap(),
            Some(&run),
        );
        assert!(
            rec.notes.iter().any(|n| n.contains("measured qemu too")),
            "{:?}",
            rec.notes
        );
        assert!(rec
            .ranking
            .iter()
            .all(|r| !r.cost.measured || r.id == "linux-ns"));
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(x(0.18), "0.18");
        assert_eq!(x(1.234), "1.23");
        assert_eq!(x(0.05), "0.050");
        assert_eq!(x(0.0042), "0.0042");
        assert_eq!(x(0.005), "0.0050");
        assert_eq!(x(f64::NAN), "–");
    }

    #[test]
    fn tie_groups_follow_their_first_member() {
        assert!(overlaps((0.1, 0.5), (0.4, 0.6)));
        assert!(!overlaps((0.1, 0.5), (0.5, 0.6)));
        let run = fixtures::run(
            "f",
            "h",
            &[
                ("ns", "cpu-int", 1.0),
                ("lxc", "cpu-int", 0.5),
                ("oci:crun", "cpu-int", 0.2),
            ],
        );
        let rec = recommend(
            &catalog(),
            &Requirements::default(),
            &Profile::named("cpu").unwrap(),
            Some(&run),
        );
        let rank = |id: &str| rec.ranking.iter().find(|r| r.id == id).unwrap().rank;
        assert!(rank("linux-ns") < rank("lxc") && rank("lxc") < rank("crun"));
    }
}
