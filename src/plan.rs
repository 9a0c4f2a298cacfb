//! The plan: what to run. A TOML file (`virtmark plan --print-default` writes the
//! default one); command-line flags override it. Every field is checked before
//! anything runs, and every error names the file, the field and what is accepted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{user, UserError};
use crate::units::Dur;
use crate::workloads::{self, Params, Preset};

/// A whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// How to run.
    #[serde(default)]
    pub run: RunSection,
    /// Per-workload parameters, keyed by workload name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Params>,
    /// The scalability step (`virtmark scale`), when planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScalePlan>,
    /// The isolation step (`virtmark isolate`), when planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IsolationPlan>,
}

/// The `[isolation]` table: k instances, one of which misbehaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IsolationPlan {
    /// Instances (one misbehaves, the others keep going).
    #[serde(default = "default_isolation_instances")]
    pub instances: u32,
    /// Stressors run in turn by instance 0.
    #[serde(default = "default_stressors")]
    pub stressors: Vec<String>,
    /// Measurement window of each round (default 3s quick, 30s faithful).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Dur>,
    /// Memory of each instance (the bound of the memory bomb in a target).
    #[serde(default = "default_isolation_memory")]
    pub memory: crate::units::ByteSize,
    /// Offered request rate of the well-behaved load, per instance.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Let memory, fork and disk stressors run on `native` (bounded all the same).
    #[serde(default)]
    pub allow_host_stress: bool,
    /// Start the instances without memory and task limits (containers only): the
    /// contrast that shows what the limits contain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_limits: bool,
}

fn default_isolation_instances() -> u32 {
    4
}
fn default_stressors() -> Vec<String> {
    crate::stressors::KINDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_isolation_memory() -> crate::units::ByteSize {
    crate::units::ByteSize::mib(512)
}
fn default_rate() -> u32 {
    500
}

impl Default for IsolationPlan {
    fn default() -> Self {
        IsolationPlan {
            instances: default_isolation_instances(),
            stressors: default_stressors(),
            window: None,
            memory: default_isolation_memory(),
            rate: default_rate(),
            allow_host_stress: false,
            no_limits: false,
        }
    }
}

impl IsolationPlan {
    /// The measurement window for a preset.
    pub fn window(&self, preset: Preset) -> Dur {
        self.window.unwrap_or(Dur(match preset {
            Preset::Quick => std::time::Duration::from_secs(3),
            Preset::Faithful => std::time::Duration::from_secs(30),
        }))
    }
}

/// The `[scale]` table: n instances of one target at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScalePlan {
    /// The workload every instance runs (default `oltp`, the studies' SysBench OLTP).
    #[serde(default = "default_scale_workload")]
    pub workload: String,
    /// Instance counts, increasing.
    #[serde(default = "default_instances")]
    pub instances: Vec<u32>,
    /// Memory divided between the instances (the studies gave one VM 2039 MiB).
    #[serde(default = "default_memory_total")]
    pub memory_total: crate::units::ByteSize,
    /// How the memory is divided: `studies` (default: Camargos et al.'s split,
    /// 2039 MiB for 1, 1622 for 2, 811 for 4, … 101 for 32) or `even` (the total
    /// divided by n).
    #[serde(default)]
    pub memory_split: MemorySplit,
    /// Pin instance i to host CPU i mod CPUs (else they share every CPU).
    #[serde(default)]
    pub pin: bool,
}

/// How the scalability step divides memory between n instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MemorySplit {
    /// Camargos et al.'s split: one instance gets the whole total (2039 MiB), n ≥ 2
    /// share 3244 MiB (1622 × 2 = 811 × 4 = … ≈ 101 × 32), each never more than
    /// the total.
    #[default]
    Studies,
    /// The total divided by n.
    Even,
}

/// What the studies' hosts shared between n ≥ 2 guests, MiB (Camargos et al.
/// 2008: 1622 MiB each for 2, 811 for 4, 405 for 8, 202 for 16, 101 for 32).
pub const STUDIES_SHARED_MIB: u64 = 3244;

impl ScalePlan {
    /// Memory of each of `n` instances, bytes.
    pub fn memory_for(&self, n: u32) -> u64 {
        let n = u64::from(n.max(1));
        let total = self.memory_total.bytes();
        match self.memory_split {
            MemorySplit::Even => total / n,
            MemorySplit::Studies if n == 1 => total,
            MemorySplit::Studies => ((STUDIES_SHARED_MIB / n) << 20).min(total),
        }
    }
}

fn default_scale_workload() -> String {
    "oltp".into()
}
fn default_instances() -> Vec<u32> {
    vec![1, 2, 4, 8, 16, 32]
}
fn default_memory_total() -> crate::units::ByteSize {
    crate::units::ByteSize::mib(2039)
}

impl Default for ScalePlan {
    fn default() -> Self {
        ScalePlan {
            workload: default_scale_workload(),
            instances: default_instances(),
            memory_total: default_memory_total(),
            memory_split: MemorySplit::default(),
            pin: false,
        }
    }
}

/// The `[run]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// `quick` (default) or `faithful` (the studies' sizes and durations).
    #[serde(default)]
    pub preset: Preset,
    /// Repetitions of each (target, workload); with `auto`, the overhead step's
    /// first repetitions, before it decides whether more are needed. The
    /// scalability and isolation steps always run exactly this many.
    #[serde(default = "default_reps")]
    pub reps: u32,
    /// Leading repetitions discarded as warm-up.
    #[serde(default = "default_discard")]
    pub discard: u32,
    /// Overhead step (`--reps auto`, the default): after `reps`, keep repeating
    /// each (target, workload) until its ratio to native is known to ±`precision`
    /// at 95%, or `max-reps` or `max-time` is reached.
    #[serde(default = "default_auto")]
    pub auto: bool,
    /// Auto: the relative half-width sought for each ratio's 95% interval.
    #[serde(default = "default_precision")]
    pub precision: f64,
    /// Auto: most repetitions of one (target, workload), warm-ups included.
    #[serde(default = "default_max_reps", rename = "max-reps")]
    pub max_reps: u32,
    /// Auto: no repetition of a (target, workload) beyond `reps` once its samples
    /// took this long together (warm-ups included); none at all, even before
    /// `reps`, once they took `reps` times this long and one is kept: a slow
    /// target then gets fewer samples and says so with a lower level.
    /// Default: 5 s with the quick preset, 30 min with the faithful one (whose
    /// single samples take up to 5 min).
    #[serde(default, rename = "max-time", skip_serializing_if = "Option::is_none")]
    pub max_time: Option<Dur>,
    /// Seed of the order of the overhead step's rounds (targets shuffled,
    /// workloads rotated); drawn and recorded when absent, so a run can be
    /// replayed in the same order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Run time of time-based workloads; default depends on the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
    /// Longest wait for one answer from an agent before the sample is DNR.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
    /// Targets; absent means every target available on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// Workloads; absent means the whole built-in suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<String>>,
    /// CPUs each target gets (absent: every host CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory each target gets in the overhead step (absent: 2 GiB, as the
    /// studies gave their guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::units::ByteSize>,
    /// A peer (`host:port`) that remote targets (`ssh:`) reach directly, instead
    /// of the default ssh reverse tunnel to the local peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Run `native` without the CPU and memory envelope the targets get (absent or
    /// false: native runs in a cgroup with the same `cpus` and `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_unbounded: Option<bool>,
}

fn default_reps() -> u32 {
    4
}
fn default_discard() -> u32 {
    1
}
fn default_auto() -> bool {
    true
}
/// ±3%, as the Phoronix Test Suite re-runs while its relative deviation is above 3%.
fn default_precision() -> f64 {
    0.03
}
fn default_max_reps() -> u32 {
    MAX_REPS
}

/// Default cap on repetitions of one (target, workload) under `auto`: high enough
/// that the time cap is what stops a workload of short samples (`cpu-int` and
/// `cpu-fp` take 200 ms a sample in the quick preset), which needs many of them on
/// a host whose speed moves (see `nbench::QUICK_DURATION`), and `mem-bw`'s 30 s
/// (about 0.5 s a sample; 40 stopped it at 39 pairs).
pub const MAX_REPS: u32 = 60;
/// Default cap on the time of one (target, workload) under `auto`, quick preset.
pub const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);
/// The same for the faithful preset.
pub const MAX_TIME_FAITHFUL: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl RunSection {
    /// The `auto` time cap of one (target, workload): as planned, else by preset.
    pub fn max_time(&self) -> Dur {
        self.max_time.unwrap_or(Dur(match self.preset {
            Preset::Quick => MAX_TIME,
            Preset::Faithful => MAX_TIME_FAITHFUL,
        }))
    }
}
fn default_deadline() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            preset: Preset::Quick,
            reps: default_reps(),
            discard: default_discard(),
            auto: default_auto(),
            precision: default_precision(),
            max_reps: default_max_reps(),
            max_time: None,
            seed: None,
            duration: None,
            deadline: default_deadline(),
            targets: None,
            workloads: None,
            cpus: None,
            memory: None,
            peer: None,
            native_unbounded: None,
        }
    }
}

/// Default run time of time-based workloads for a preset.
pub fn default_duration(preset: Preset) -> Dur {
    Dur(match preset {
        Preset::Quick => std::time::Duration::from_secs(1),
        Preset::Faithful => std::time::Duration::from_secs(10),
    })
}

/// The default plan written by `virtmark plan --print-default`, with comments.
pub fn default_toml() -> String {
    let names = workloads::names()
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (max_reps, max_time) = (MAX_REPS, MAX_TIME.as_secs());
    format!(
        r#"# virtmark plan: what `virtmark run` does when given `--plan FILE`.
# Command-line flags override what is written here.

[run]
# "quick": short durations and small sizes (the suite takes minutes);
# "faithful": the classic studies' sizes and durations.
preset = "quick"
# Each (target, workload) runs `reps` times; the first `discard` are warm-up.
reps = 4
discard = 1
# auto = true: after `reps`, repeat each (target, workload) of the overhead step
# until its ratio to native is known to ±precision at 95%, or until it has run
# max-reps times or its samples took max-time together (reps × max-time cuts
# `reps` short for a slow target, once one sample is kept). auto = false: exactly `reps`.
auto = true
precision = 0.03
max-reps = {max_reps}
# max-time default: {max_time}s quick (their own caps: mem-bw 30s, compress and dd-copy 10s), 30m faithful.
# max-time = "{max_time}s"
# The order of each round is drawn from this seed (recorded in every run's plan).
# seed = 1234
# Run time of time-based workloads (default: 1s quick, 10s faithful).
# duration = "1s"
# Longest wait for one answer from a target before the sample is marked DNR.
deadline = "10m"
# Targets to measure; leave out to use every target available on this host.
# targets = ["native"]
# Workloads to run; leave out for the whole built-in suite.
workloads = [{names}]

# Per-workload parameters (all optional): duration, size, block-size, threads,
# clients, files, rows, transactions, fsync, direct, and max-time (the auto
# rule's time cap for that workload's cells). For example:
# [params.fileio]
# size = "1GiB"
# block-size = "64KiB"
"#
    )
}

impl Plan {
    /// What `workload` was asked to do under this plan, field by field: the
    /// preset, the run time, the envelope each target got and every parameter
    /// (sizes already resolved by the orchestrator). Two runs whose figures for
    /// `workload` are compared must agree on all of it.
    pub fn work_of(&self, workload: &str) -> BTreeMap<String, String> {
        let show = |v: Option<String>| v.unwrap_or_else(|| "default".into());
        let mut w = BTreeMap::new();
        w.insert(
            "preset".into(),
            format!("{:?}", self.run.preset).to_lowercase(),
        );
        w.insert(
            "duration".into(),
            show(self.run.duration.map(|d| d.to_string())),
        );
        w.insert("cpus".into(), show(self.run.cpus.map(|c| c.to_string())));
        w.insert(
            "memory".into(),
            show(self.run.memory.map(|m| m.to_string())),
        );
        let mut params = self.params.get(workload).cloned().unwrap_or_default();
        // How long to measure, not what: two runs with other caps did the same work.
        params.max_time = None;
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&params) {
            for (k, v) in m {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                };
                w.insert(format!("{workload}.{k}"), v);
            }
        }
        w
    }

    /// The fields of [`Plan::work_of`] on which `self` and `other` differ for
    /// `workload`, as `field: A vs B`.
    pub fn work_differences(&self, other: &Plan, workload: &str) -> Vec<String> {
        let (a, b) = (self.work_of(workload), other.work_of(workload));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let get = |m: &BTreeMap<String, String>| {
                    m.get(k).cloned().unwrap_or_else(|| "default".into())
                };
                format!("{k}: {} vs {}", get(&a), get(&b))
            })
            .collect()
    }

    /// Parse and validate a plan from TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Plan, UserError> {
        let plan: Plan = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end_matches('.').to_string();
            let at = e
                .span()
                .map(|s| {
                    let start = s.start.min(text.len());
                    let line_no = text[..start].matches('\n').count() + 1;
                    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                    format!(" (line {line_no}: `{line}`)")
                })
                .unwrap_or_default();
            UserError(format!("{origin}{at}: {msg}"))
        })?;
        plan.validate(origin)?;
        Ok(plan)
    }

    /// Read a plan file.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| user(format!("cannot read plan {}: {e}", path.display())))?;
        Ok(Plan::from_toml(&text, &path.display().to_string())?)
    }

    /// Check every field; errors name `origin` and the field.
    pub fn validate(&self, origin: &str) -> Result<(), UserError> {
        let r = &self.run;
        if r.reps == 0 {
            return Err(UserError(format!(
                "{origin}: run.reps = 0: need at least 1 repetition"
            )));
        }
        if r.auto && r.max_reps < r.reps {
            return Err(UserError(format!(
                "{origin}: run.max-reps = {} must be at least run.reps = {}",
                r.max_reps, r.reps
            )));
        }
        if !(r.precision > 0.0 && r.precision < 1.0) {
            return Err(UserError(format!(
                "{origin}: run.precision = {}: give a fraction between 0 and 1 (0.03 = ±3%)",
                r.precision
            )));
        }
        if r.discard >= r.reps {
            return Err(UserError(format!(
                "{origin}: run.discard = {} must be less than run.reps = {} (at least one sample must be kept)",
                r.discard, r.reps
            )));
        }
        if let Some(ws) = &r.workloads {
            if ws.is_empty() {
                return Err(UserError(format!(
                    "{origin}: run.workloads is empty: name at least one of {}",
                    workloads::names().join(", ")
                )));
            }
            for w in ws {
                check_workload(origin, "run.workloads", w)?;
            }
        }
        for (w, p) in &self.params {
            check_workload(origin, "params", w)?;
            p.check(w)
                .map_err(|e| UserError(format!("{origin}: params.{w}: {e}")))?;
        }
        let ms = |d: Dur| d.get().as_millis();
        if !(1..=24 * 3600 * 1000).contains(&ms(r.deadline)) {
            return Err(UserError(format!(
                "{origin}: run.deadline = {}: give 1ms to 24h",
                r.deadline
            )));
        }
        if let Some(d) = r.duration {
            if !(10..=24 * 3600 * 1000).contains(&ms(d)) {
                return Err(UserError(format!(
                    "{origin}: run.duration = {d}: give 10ms to 24h"
                )));
            }
        }
        if r.reps > 10_000 {
            return Err(UserError(format!(
                "{origin}: run.reps = {}: give 1 to 10000",
                r.reps
            )));
        }
        if r.max_reps > 10_000 {
            return Err(UserError(format!(
                "{origin}: run.max-reps = {}: give run.reps to 10000",
                r.max_reps
            )));
        }
        let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(c) = r.cpus {
            if c == 0 || c as usize > host_cpus {
                return Err(UserError(format!(
                    "{origin}: run.cpus = {c}: this host has {host_cpus} CPU(s); give 1 to {host_cpus}"
                )));
            }
        }
        if let Some(m) = r.memory {
            let host = host_memory();
            if m.bytes() < 32 << 20 || (host > 0 && m.bytes() > host) {
                return Err(UserError(format!(
                    "{origin}: run.memory = {m}: give 32MiB to this host's {} MiB",
                    host >> 20
                )));
            }
        }
        if let Some(iso) = &self.isolation {
            if !(2..=64).contains(&iso.instances) {
                return Err(UserError(format!(
                    "{origin}: isolation.instances = {}: give 2 to 64 (one misbehaves, the others are measured)",
                    iso.instances
                )));
            }
            if iso.stressors.is_empty() {
                return Err(UserError(format!(
                    "{origin}: isolation.stressors is empty: name some of {}",
                    crate::stressors::KINDS.join(", ")
                )));
            }
            for st in &iso.stressors {
                if !crate::stressors::KINDS.contains(&st.as_str()) {
                    return Err(UserError(format!(
                        "{origin}: isolation.stressors: unknown stressor {st:?} (known: {}, or all)",
                        crate::stressors::KINDS.join(", ")
                    )));
                }
            }
            if iso.rate == 0 || iso.rate > 100_000 {
                return Err(UserError(format!(
                    "{origin}: isolation.rate = {}: give 1 to 100000 requests per second",
                    iso.rate
                )));
            }
            if let Some(w) = iso.window {
                if !(100..=3600 * 1000).contains(&ms(w)) {
                    return Err(UserError(format!(
                        "{origin}: isolation.window = {w}: give 100ms to 1h"
                    )));
                }
            }
            let host = host_memory();
            if host > 0 && iso.memory.bytes() > host {
                return Err(UserError(format!(
                    "{origin}: isolation.memory = {}: give 32MiB to this host's {} MiB",
                    iso.memory,
                    host >> 20
                )));
            }
            if iso.memory.bytes() < 32 << 20 {
                return Err(UserError(format!(
                    "{origin}: isolation.memory = {}: give at least 32MiB",
                    iso.memory
                )));
            }
        }
        if let Some(sc) = &self.scale {
            check_workload(origin, "scale.workload", &sc.workload)?;
            if sc.instances.is_empty()
                || sc.instances.contains(&0)
                || sc.instances.windows(2).any(|w| w[0] >= w[1])
                || sc.instances.iter().any(|&n| n > 250)
            {
                return Err(UserError(format!(
                    "{origin}: scale.instances = {:?}: give increasing counts from 1 to 250, e.g. [1, 2, 4, 8, 16, 32]",
                    sc.instances
                )));
            }
            let smallest = sc.memory_for(*sc.instances.last().unwrap_or(&1));
            if smallest < 16 << 20 {
                return Err(UserError(format!(
                    "{origin}: scale.memory-total = {} ({:?} split) leaves {} MiB per instance at n = {}: give at least 16 MiB each",
                    sc.memory_total,
                    sc.memory_split,
                    smallest >> 20,
                    sc.instances.last().unwrap_or(&1)
                )));
            }
        }
        if let Some(p) = &r.peer {
            let ok = p
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
            if !ok {
                return Err(UserError(format!(
                    "{origin}: run.peer = {p:?}: expected host:port (e.g. 192.0.2.9:7700)"
                )));
            }
        }
        if let Some(ts) = &r.targets {
            if ts.is_empty() {
                return Err(UserError(format!(
                    "{origin}: run.targets is empty: name at least one target, or leave it out for every available one"
                )));
            }
            for t in ts {
                crate::targets::parse(t)
                    .map_err(|e| UserError(format!("{origin}: run.targets: {e}")))?;
            }
        }
        Ok(())
    }

    /// The workloads to run, in catalog order when not given.
    pub fn workload_names(&self) -> Vec<String> {
        match &self.run.workloads {
            Some(ws) => ws.clone(),
            None => workloads::names().into_iter().map(String::from).collect(),
        }
    }

    /// The effective duration for time-based workloads.
    pub fn duration(&self) -> Dur {
        self.run
            .duration
            .unwrap_or_else(|| default_duration(self.run.preset))
    }

    /// Serialize back to TOML (the exact plan of a run, for re-running).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("plans always serialize")
    }
}

/// MemTotal of this host, bytes (0 when unreadable).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn check_workload(origin: &str, field: &str, name: &str) -> Result<(), UserError> {
    if workloads::find(name).is_none() {
        return Err(UserError(format!(
            "{origin}: {field}: unknown workload {name:?} (known: {})",
            workloads::names().join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn work_differences_name_what_two_plans_ask_differently() {
        let mut a = Plan::default();
        a.params.entry("fileio".into()).or_default().size = Some("128MiB".parse().unwrap());
        let mut b = a.clone();
        assert!(a.work_differences(&b, "fileio").is_empty());
        // Another workload's parameters do not matter.
        b.params.entry("dd-copy".into()).or_default().size = Some("1GiB".parse().unwrap());
        assert!(a.work_differences(&b, "fileio").is_empty());
        // How long to measure is not what is measured.
        b.params.get_mut("fileio").unwrap().max_time = Some("20s".parse().unwrap());
        assert!(a.work_differences(&b, "fileio").is_empty());
        b.params.get_mut("fileio").unwrap().size = Some("256MiB".parse().unwrap());
        b.run.preset = Preset::Faithful;
        assert_eq!(
            a.work_differences(&b, "fileio"),
            vec!["fileio.size: 128MiB vs 256MiB", "preset: quick vs faithful"]
        );
    }

    use super::*;

    fn err(text: &str) -> String {
        Plan::from_toml(text, "p.toml").unwrap_err().0
    }

    #[test]
    fn default_plan_parses_and_round_trips() {
        let p = Plan::from_toml(&default_toml(), "default").unwrap();
        assert_eq!(p.run.reps, 4);
        assert_eq!(p.run.discard, 1);
        assert_eq!(p.workload_names().len(), workloads::ALL.len());
        let again = Plan::from_toml(&p.to_toml(), "again").unwrap();
        assert_eq!(p, again);
        assert_eq!(Plan::from_toml("", "empty").unwrap(), Plan::default());
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = err("[run]\nreps = = 3\n");
        assert!(e.starts_with("p.toml (line 2: `reps = = 3`):"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_the_accepted_ones() {
        let e = err("[run]\nrepz = 3\n");
        assert!(e.contains("repz") && e.contains("reps"), "{e}");
        let e = err("[params.dd-zero]\nsizze = \"1M\"\n");
        assert!(e.contains("sizze") && e.contains("size"), "{e}");
    }

    #[test]
    fn parameters_out_of_range_are_refused_before_anything_runs() {
        for (text, what) in [
            ("[params.oltp]\ntransactions = 100000000000", "transactions"),
            ("[params.dd-zero]\nblock-size = \"1TiB\"", "block-size"),
            ("[params.compress]\nsize = \"100GiB\"", "size"),
            ("[params.fileio]\nthreads = 100000", "threads"),
            ("[params.rr-paced]\nrate = 0", "rate"),
            ("[params.fileio]\nduration = \"1ms\"", "duration"),
            ("[run]\nauto = false\nreps = 100000", "run.reps"),
            ("[run]\nmax-reps = 100000", "run.max-reps"),
            ("[run]\ndeadline = \"30d\"", "run.deadline"),
            ("[isolation]\nwindow = \"1ms\"", "isolation.window"),
        ] {
            let e = err(text);
            assert!(e.contains(what) && e.contains("give"), "{text}: {e}");
        }
        // The same size is fine for a workload that keeps it on disk.
        Plan::from_toml("[params.fileio]\nsize = \"100GiB\"", "p.toml").unwrap();
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(err("[run]\nduration = \"0s\"\n").contains("greater than zero"));
        assert!(err("[run]\nduration = \"-3s\"\n").contains("must be positive"));
        assert!(err("[run]\nreps = -1\n").contains("reps"));
        let e = err("[run]\nreps = 3\ndiscard = 3\n");
        assert!(
            e.contains("run.discard = 3 must be less than run.reps = 3"),
            "{e}"
        );
        let e = err("[run]\nworkloads = [\"spin\"]\n");
        assert!(
            e.contains("unknown workload \"spin\"") && e.contains("dd-zero"),
            "{e}"
        );
        let e = err("[params.spin]\nsize = \"1M\"\n");
        assert!(e.contains("params: unknown workload \"spin\""), "{e}");
        let e = err("[run]\ntargets = [\"mainframe\"]\n");
        assert!(e.contains("unknown target \"mainframe\""), "{e}");
    }

    #[test]
    fn the_studies_memory_split_gives_camargos_et_al_s_shares() {
        let sp = ScalePlan::default();
        let mib: Vec<u64> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&n| sp.memory_for(n) >> 20)
            .collect();
        assert_eq!(mib, vec![2039, 1622, 811, 405, 202, 101]);
        let even = ScalePlan {
            memory_split: MemorySplit::Even,
            memory_total: crate::units::ByteSize::mib(1024),
            ..ScalePlan::default()
        };
        assert_eq!(even.memory_for(4), 256 << 20);
        // Never more than the total, even for n = 2.
        let small = ScalePlan {
            memory_total: crate::units::ByteSize::mib(512),
            ..ScalePlan::default()
        };
        assert_eq!(small.memory_for(2), 512 << 20);
    }
}
