//! The built-in workload suite: every benchmark runs inside the agent, so a target
//! needs nothing installed. Each workload stands for a benchmark of the classic
//! studies (`docs/studies.md`) and reports one headline metric first, then any
//! secondary metrics.
//!
//! A workload never knows which target it runs in: it gets a [`Ctx`] (duration,
//! parameters, a scratch directory that belongs to the target, the peer's address)
//! and returns an [`Outcome`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Dur};

mod build;
mod compress;
mod dbench;
mod dd;
mod fileio;
mod nbench;
pub(crate) mod net;
mod oltp;
mod paced;
mod rsync;
mod stream;

/// What kind of resource a workload mostly stresses; reports group ratios by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// CPU-bound integer or floating-point computation.
    Cpu,
    /// Memory bandwidth or latency.
    Memory,
    /// File-system and block I/O.
    Disk,
    /// TCP/UDP through the target's network path.
    Network,
    /// A whole application (compression, database, build, file sync).
    Application,
    /// A probe of one primitive ([`crate::probes`]), not a workload of the suite.
    Probe,
}

impl Class {
    /// Lowercase name, as shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Cpu => "cpu",
            Class::Memory => "memory",
            Class::Disk => "disk",
            Class::Network => "network",
            Class::Application => "application",
            Class::Probe => "probe",
        }
    }
}

/// Size of a run: `quick` finishes the whole suite in minutes, `faithful` uses the
/// studies' sizes and durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Short durations and small sizes (the default).
    #[default]
    Quick,
    /// The classic studies' parameters.
    Faithful,
}

/// Per-workload parameters, from the plan file or the command line. Every field is
/// optional: a workload falls back to its preset's default and documents which
/// fields it reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    /// Run time of time-based workloads (overrides the run's duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
    /// Data size: file size, corpus size, array size, transfer size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// Record or block size of one I/O call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<ByteSize>,
    /// Worker threads or parallel jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Simulated clients (dbench).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<u32>,
    /// Number of files (tree copies, builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Table rows (oltp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Fixed number of transactions instead of a duration (oltp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<u64>,
    /// Flush written data to storage before the clock stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<bool>,
    /// Bypass the page cache (O_DIRECT) where the workload supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
    /// Offered request rate, requests per second (rr-paced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Longest time for a response to count as good (rr-paced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Dur>,
    /// The `auto` rule's time cap for each of this workload's cells, instead of
    /// the run's `max-time` (how long to measure, not what: the agent ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<Dur>,
}

/// The accepted range of every workload parameter, checked by the plan before
/// anything runs and by the agent before it runs a request (a target must not
/// be asked to allocate without bound). `(field, lowest, highest, unit)`;
/// `docs/workloads.md` shows the same table.
pub const PARAM_RANGES: &[(&str, u64, u64, &str)] = &[
    ("duration", 10, 24 * 3600 * 1000, "ms"),
    ("max-time", 10, 24 * 3600 * 1000, "ms"),
    ("size", 4 << 10, 1 << 40, "bytes"),
    ("block-size", 512, 64 << 20, "bytes"),
    ("threads", 1, 1024, ""),
    ("clients", 1, 1024, ""),
    ("files", 1, 1_000_000, ""),
    ("rows", 1, 10_000_000, ""),
    ("transactions", 1, 10_000_000, ""),
    ("rate", 1, 1_000_000, "per second"),
    ("deadline", 1, 60_000, "ms"),
];

/// Workloads that hold `size` bytes in memory (a corpus, arrays) rather than on
/// disk: their `size` is further bounded by [`IN_MEMORY_SIZE_MAX`].
pub const IN_MEMORY_SIZE: &[&str] = &["compress", "mem-bw"];

/// Largest `size` of a workload in [`IN_MEMORY_SIZE`].
pub const IN_MEMORY_SIZE_MAX: u64 = 16 << 30;

fn range_of(field: &str) -> (u64, u64, &'static str) {
    PARAM_RANGES
        .iter()
        .find(|r| r.0 == field)
        .map_or((0, u64::MAX, ""), |r| (r.1, r.2, r.3))
}

impl Params {
    /// Check every parameter against [`PARAM_RANGES`]; `Err` names the field, the
    /// value and the accepted range.
    pub fn check(&self, workload: &str) -> Result<(), String> {
        let ms =
            |d: &Option<Dur>| d.map(|d| u64::try_from(d.get().as_millis()).unwrap_or(u64::MAX));
        let fields: [(&str, Option<u64>); 11] = [
            ("duration", ms(&self.duration)),
            ("max-time", ms(&self.max_time)),
            ("size", self.size.map(|b| b.bytes())),
            ("block-size", self.block_size.map(|b| b.bytes())),
            ("threads", self.threads.map(u64::from)),
            ("clients", self.clients.map(u64::from)),
            ("files", self.files),
            ("rows", self.rows),
            ("transactions", self.transactions),
            ("rate", self.rate.map(u64::from)),
            ("deadline", ms(&self.deadline)),
        ];
        for (field, value) in fields {
            let Some(v) = value else { continue };
            let (lo, mut hi, unit) = range_of(field);
            if field == "size" && IN_MEMORY_SIZE.contains(&workload) {
                hi = IN_MEMORY_SIZE_MAX;
            }
            if v < lo || v > hi {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                return Err(format!(
                    "{field} = {v}{unit} is out of range: give {lo} to {hi}{unit}"
                ));
            }
        }
        Ok(())
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name, unique within a workload (`throughput`, `triad`, `p99_latency`).
    pub name: String,
    /// Unit (`MB/s`, `Mbit/s`, `s`, `tx/s`, `us`, `index`).
    pub unit: String,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// The measured value.
    pub value: f64,
}

impl Metric {
    /// A metric where larger is better.
    pub fn higher(name: &str, unit: &str, value: f64) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            higher_is_better: true,
            value,
        }
    }
    /// A metric where smaller is better (times, latencies).
    pub fn lower(name: &str, unit: &str, value: f64) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            higher_is_better: false,
            value,
        }
    }
}

/// What one execution of a workload measured: the headline metric first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Headline metric first, then secondary metrics.
    pub metrics: Vec<Metric>,
    /// Facts about how it ran that a reader needs (pinning, effective sizes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Outcome {
    /// Check that every metric is a finite number: JSON has no NaN or infinity
    /// (serde writes them as `null`, which the host cannot read back as a sample), and
    /// a figure that is not a number is a failed measurement, never a sample.
    pub fn check_finite(&self, workload: &str) -> Result<(), WorkloadError> {
        if self.metrics.is_empty() {
            return Err(WorkloadError::Failed(format!(
                "{workload} measured no metric"
            )));
        }
        match self.metrics.iter().find(|m| !m.value.is_finite()) {
            None => Ok(()),
            Some(m) => Err(WorkloadError::NotFinite {
                metric: m.name.clone(),
                value: m.value,
            }),
        }
    }
}

/// Why a workload could not produce a sample.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A tool or facility the workload needs is missing here.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A network workload was started without a peer address.
    #[error("this workload needs a peer (virtmark serve) and none was given")]
    NoPeer,
    /// The peer misbehaved or the connection failed.
    #[error("peer: {0}")]
    Peer(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A parameter is out of range for this workload.
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A metric came out as NaN or infinite (a zero-length timing, a division by
    /// zero): the sample is failed instead of sent.
    #[error("metric {metric} is not a finite number ({value}): the measurement failed")]
    NotFinite {
        /// The metric's name.
        metric: String,
        /// The value it came out as.
        value: f64,
    },
    /// Anything else that went wrong while measuring.
    #[error("{0}")]
    Failed(String),
}

impl WorkloadError {
    /// Machine-readable kind, used in the agent protocol.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkloadError::Unavailable(_) => "unavailable",
            WorkloadError::NoPeer => "no_peer",
            WorkloadError::Peer(_) => "peer",
            WorkloadError::Io { .. } => "io",
            WorkloadError::Param(_) => "invalid_param",
            WorkloadError::NotFinite { .. } => "not_finite",
            WorkloadError::Failed(_) => "failed",
        }
    }
}

/// Attach what was being done to an I/O error.
pub trait IoContext<T> {
    /// Wrap an I/O error as [`WorkloadError::Io`] with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, WorkloadError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, WorkloadError> {
        self.map_err(|source| WorkloadError::Io {
            context: context(),
            source,
        })
    }
}

/// Everything a workload may use while it runs.
pub struct Ctx<'a> {
    /// Quick or faithful defaults.
    pub preset: Preset,
    /// Run time for time-based workloads (already resolved from params and the run).
    pub duration: Duration,
    /// This workload's parameters from the plan.
    pub params: &'a Params,
    /// A fresh directory on the target's own storage, removed after the workload.
    pub scratch: &'a Path,
    /// The peer (`virtmark serve`) for network workloads.
    pub peer: Option<SocketAddr>,
    /// Report progress: fraction done in [0, 1] and a short phase name.
    pub progress: &'a dyn Fn(f64, &str),
    /// Called once by the workloads of [`SET_UP_FIRST`] between their set-up and
    /// their measured window: there the agent waits at the step's barrier (the
    /// scalability and isolation steps' `ready` → `go`) and notes when the window
    /// starts. An error means: stop, do not measure.
    pub begin: &'a dyn Fn() -> Result<(), WorkloadError>,
}

/// Workloads with a set-up (a table, a connection) that must not fall inside
/// the window the other instances measure: they call [`Ctx::begin_measuring`]
/// once it is done. For every other workload the agent waits at the barrier
/// before it starts the workload at all.
pub static SET_UP_FIRST: &[&str] = &[
    "oltp",
    "rr-paced",
    "compress",
    "build",
    "rsync-tree",
    "rsync-file",
    "dd-copy",
    "dbench",
    "mem-bw",
    "fileio",
];

/// Largest page-cache primer ([`Ctx::prime_page_cache`]): enough for the quick
/// preset's files; beyond it the kernel recycles pages under its own pressure.
pub const PRIME_MAX: u64 = 512 << 20;

/// Workloads whose samples in one round of the overhead step make their set-ups
/// together, before the first of them is measured, and are then measured one
/// right after the other (the runner's pairing group, `a N b`): `mem-bw`, whose
/// set-up (three 80 MB arrays allocated and faulted in, about 0.2 s here) parted
/// a target's window from its native partner's by 0.3 s and took a third of
/// each sample's time. Together, the windows are 4 ms apart and a cell gets 11
/// pairs in its 5 s instead of 8–9 (2026-12-01, `docs/method.md`). Each must be
/// in [`SET_UP_FIRST`].
pub static SET_UP_TOGETHER: &[&str] = &["mem-bw"];

/// Whether the samples of `name` make their set-ups together
/// ([`SET_UP_TOGETHER`]).
pub fn sets_up_together(name: &str) -> bool {
    SET_UP_TOGETHER.contains(&name)
}

/// Whether `name` calls [`Ctx::begin_measuring`] itself.
pub fn sets_up_first(name: &str) -> bool {
    SET_UP_FIRST.contains(&name)
}

impl Ctx<'_> {
    /// The peer address, or [`WorkloadError::NoPeer`].
    pub fn peer(&self) -> Result<SocketAddr, WorkloadError> {
        self.peer.ok_or(WorkloadError::NoPeer)
    }
    /// Set-up is done: wait at the step's barrier, if any, and start the
    /// measured window (workloads of [`SET_UP_FIRST`] only).
    pub fn begin_measuring(&self) -> Result<(), WorkloadError> {
        (self.begin)()
    }
    /// Write `bytes` (at most [`PRIME_MAX`]) to a file in scratch and delete it, unsynced,
    /// so no block reaches the disk: the set-up of a workload whose window fills the page
    /// cache. Returns the note saying so.
    ///
    /// Why: the first touch of a page the kernel has not used for a second or two can
    /// cost several times more than touching a recently freed one. Measured on a
    /// 2-vCPU guest of a nested hypervisor (kvm_pvm), 128 MiB written into the page
    /// cache took 0.07–0.26 s two seconds after the last write and 0.03–0.07 s right
    /// after one; a 128 MiB rsync-file took 0.06–0.11 s after another one and
    /// 0.13–0.45 s after any other workload. Repetitions interleaved across targets
    /// and workloads (the method's order) would otherwise measure that state instead
    /// of the layer. Priming puts every target in the state of back-to-back
    /// repetitions, the studies' "repeat, drop the first".
    pub fn prime_page_cache(&self, bytes: u64) -> Result<String, WorkloadError> {
        let bytes = bytes.min(PRIME_MAX);
        let path = self.scratch.join("prime.tmp");
        let mut f = std::fs::File::create(&path).ctx(|| format!("creating {}", path.display()))?;
        let chunk = vec![0x5au8; 1 << 20];
        let mut done = 0u64;
        while done < bytes {
            let n = (bytes - done).min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut f, &chunk[..n])
                .ctx(|| format!("writing {}", path.display()))?;
            done += n as u64;
        }
        drop(f);
        std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
        Ok(format!(
            "page cache primed before the window: {} MiB written and deleted unsynced, \
             as a back-to-back repetition leaves it",
            bytes >> 20
        ))
    }
    /// `quick` when the preset is quick, else `faithful`.
    pub fn pick<T>(&self, quick: T, faithful: T) -> T {
        match self.preset {
            Preset::Quick => quick,
            Preset::Faithful => faithful,
        }
    }
}

/// What the orchestrator knows of the machine and of the envelope every target gets,
/// to resolve workload sizes once ([`resolve_params`]) instead of each target
/// deriving them from what it sees of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Memory each target instance gets, bytes.
    pub memory: u64,
    /// CPUs each target instance gets.
    pub cpus: usize,
    /// The host's last-level cache, bytes (STREAM's array rule).
    pub llc: Option<u64>,
}

impl Host {
    /// This machine, with `memory` bytes and `cpus` CPUs per target.
    pub fn here(memory: u64, cpus: usize) -> Host {
        Host {
            memory,
            cpus,
            llc: stream::host_llc(),
        }
    }
}

/// Fill every size-like parameter of workload `name` that `given` leaves open, from
/// the preset and `host`, so that the plan records them and every target receives
/// the same values. A parameter the plan set is kept as given; `run_duration` is
/// the run's duration when the plan or the command line gave one (the workloads
/// with a duration of their own in the quick preset then take that instead).
pub fn resolve_params(
    name: &str,
    preset: Preset,
    given: &Params,
    host: &Host,
    run_duration: Option<Dur>,
    run_max_time: Option<Dur>,
) -> Params {
    let mut p = given.clone();
    own_time_cap(name, preset, &mut p, run_max_time);
    match name {
        "cpu-int" | "cpu-fp" | "dbench" => short_samples(preset, &mut p, run_duration),
        "mem-bw" => {
            short_samples(preset, &mut p, run_duration);
            stream::resolve(preset, &mut p, host)
        }
        "fileio" => fileio::resolve(preset, &mut p, host),
        "compress" => compress::resolve(preset, &mut p),
        "build" => build::resolve(preset, &mut p, host),
        "dd-zero" => {
            short_samples(preset, &mut p, run_duration);
            dd::resolve(name, preset, &mut p)
        }
        "dd-copy" => dd::resolve(name, preset, &mut p),
        _ => {}
    }
    p
}

/// Duration of a sample of `cpu-int`, `cpu-fp`, `mem-bw`, `dd-zero` and `dbench` in the quick
/// preset when the run gives none: 200 ms, not the preset's 1 s. On a host whose
/// CPUs change speed for a second or two at a time (a guest whose sibling
/// hardware threads other guests load: `cpu-fp` at 50 or 86, `cpu-int` at 52 or
/// 67, 2026-12-01), a 1 s sample mixes the two speeds in any proportion and its
/// value spreads over the whole range (`cpu-fp` CoV 23%), while a 200 ms sample
/// mostly falls in one, and the ratio's estimate, a median, sets the other apart;
/// the time cap then buys many samples instead of four. Measured on that host from
/// 600 samples of each length, with 4 s of samples a side, the ratio of two
/// samples of the same machine fell within ±5% in 94–95% of draws with 200 ms
/// samples against 37–77% with 1 s ones; next to a native sample (the runner pairs
/// them), in 99–100% (`docs/workloads.md`).
pub const QUICK_SHORT_DURATION: Duration = Duration::from_millis(200);

/// The `auto` rule's time cap of a workload's cells in the quick preset when the run
/// gives no `max-time` (the run's is [`crate::plan::MAX_TIME`], 5 s), for the
/// workloads whose samples, slow or spread wide, need more time than 5 s to give
/// a ratio the A/A goals trust (±5% CPU and memory, ±10% disk), measured on the
/// 2-vCPU EPYC guest of 2026-12-01/02 (`docs/method.md`):
///
/// - `mem-bw`, 30 s: its memory bandwidth varies by 12–15% from one 0.3 s window
///   to the next, the next one included (log-ratio deviation of back-to-back pairs
///   0.13–0.16), so 5 s bought 11 pairs and one A/A ratio in three fell outside
///   ±5% (1.041/0.976/1.065, 1.059/1.019/0.913). 20 s bought 31–34 pairs in a
///   default run and still one miss in three runs (0.943); resampling the pairs of
///   five A/A runs, the median of 32 pairs fell within ±5% in 86% of draws, of 48
///   in 91%.
/// - `compress`, 10 s: a sample takes about 0.4 s (0.2 s of compression in the
///   window; the corpus generated, synced and checked around it), so 5 s bought
///   10–12 pairs, and two A/A runs in five put one ratio outside ±5% (0.912,
///   0.946). With 10 s, 22–24 pairs and 0.976–1.026 in two runs.
/// - `dd-copy`, 10 s: 0.5 s a sample (its 32 MiB source written and synced
///   first), so 5 s bought 8–10 pairs, and ratios reached 0.917 and 1.105 against
///   a ±10% goal.
pub const QUICK_OWN_MAX_TIME: [(&str, Duration); 3] = [
    ("mem-bw", Duration::from_secs(30)),
    ("compress", Duration::from_secs(10)),
    ("dd-copy", Duration::from_secs(10)),
];

/// Give workload `name` its own time cap from [`QUICK_OWN_MAX_TIME`] in the quick
/// preset, unless the run gives one (`--max-time` sets every cell's) or the plan
/// gave the workload one.
fn own_time_cap(name: &str, preset: Preset, p: &mut Params, run_max_time: Option<Dur>) {
    let cap = QUICK_OWN_MAX_TIME.iter().find(|(w, _)| *w == name);
    if let (Preset::Quick, None, Some(&(_, cap))) = (preset, run_max_time, cap) {
        p.max_time.get_or_insert(Dur(cap));
    }
}

/// The quick preset's short sample duration ([`QUICK_SHORT_DURATION`]) unless the
/// workload's parameters or the run (`run_duration`) give one.
fn short_samples(preset: Preset, p: &mut Params, run_duration: Option<Dur>) {
    if preset == Preset::Quick && run_duration.is_none() && p.duration.is_none() {
        p.duration = Some(Dur(QUICK_SHORT_DURATION));
    }
}

/// A built-in workload: its catalog entry and the functions that check and run it.
pub struct Workload {
    /// Name used on the command line and in plans (`net-stream`).
    pub name: &'static str,
    /// The classic benchmark it stands for (`netperf TCP_STREAM`).
    pub stands_for: &'static str,
    /// Resource class.
    pub class: Class,
    /// Name of the headline metric.
    pub metric: &'static str,
    /// Unit of the headline metric.
    pub unit: &'static str,
    /// Whether a larger headline value is better.
    pub higher_is_better: bool,
    /// Whether it needs the peer (`virtmark serve`).
    pub needs_peer: bool,
    /// One sentence on what it does.
    pub description: &'static str,
    /// Whether it can run here; `Err` names what is missing.
    pub available: fn() -> Result<(), String>,
    /// Run once and measure.
    pub run: fn(&Ctx) -> Result<Outcome, WorkloadError>,
}

/// Always available.
pub fn always() -> Result<(), String> {
    Ok(())
}

/// The whole built-in suite, in catalog order.
pub static ALL: &[&Workload] = &[
    &nbench::CPU_INT,
    &nbench::CPU_FP,
    &stream::MEM_BW,
    &compress::COMPRESS,
    &fileio::FILEIO,
    &dd::DD_COPY,
    &dd::DD_ZERO,
    &dbench::DBENCH,
    &net::NET_STREAM,
    &net::NET_MAERTS,
    &net::NET_SENDFILE,
    &net::NET_RR,
    &rsync::RSYNC_TREE,
    &rsync::RSYNC_FILE,
    &oltp::OLTP,
    &build::BUILD,
];

/// Workloads of the other steps, not in the default overhead suite.
pub static STEP_WORKLOADS: &[&Workload] = &[&paced::RR_PACED];

/// Look a workload up by name (suite and step workloads, and probes).
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter()
        .chain(STEP_WORKLOADS.iter())
        .chain(crate::probes::ALL.iter())
        .copied()
        .find(|w| w.name == name)
}

/// Whether workload `name` needs the host's toolchain, which the targets then
/// show read-only inside: `build` compiles with it, and the `fork` probe's
/// dynamically linked program runs with its C library.
pub fn needs_host_toolchain(name: &str) -> bool {
    name == build::BUILD.name || name == crate::probes::FORK.name
}

/// Names of every workload, for error messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|w| w.name).collect()
}

#[cfg(test)]
mod resolve_tests {
    use super::*;
    use crate::units::ByteSize;

    fn host() -> Host {
        Host {
            memory: 2 << 30,
            cpus: 2,
            llc: Some(32 << 20),
        }
    }

    #[test]
    fn sizes_come_from_the_envelope_not_the_target() {
        let none = Params::default();
        let f = resolve_params("fileio", Preset::Faithful, &none, &host(), None, None);
        assert_eq!(
            f.size,
            Some(ByteSize(4 << 30)),
            "2 x the memory each target gets"
        );
        assert_eq!(f.block_size, Some(ByteSize(64 << 10)));
        assert_eq!((f.fsync, f.direct), (Some(true), Some(false)));
        let q = resolve_params("fileio", Preset::Quick, &none, &host(), None, None);
        assert_eq!(q.size, Some(ByteSize(64 << 20)));
        let b = resolve_params("build", Preset::Quick, &none, &host(), None, None);
        assert_eq!(b.threads, Some(2));
        let big = Host {
            memory: 8 << 30,
            ..host()
        };
        let m = resolve_params("mem-bw", Preset::Faithful, &none, &big, None, None);
        assert_eq!(
            m.size,
            Some(ByteSize(640_000_000)),
            "STREAM's size fits in 8 GiB"
        );
        let m = resolve_params("mem-bw", Preset::Faithful, &none, &host(), None, None);
        assert_eq!(m.size, Some(ByteSize(1 << 29)), "a quarter of 2 GiB");
        assert_eq!(m.threads, Some(1));
    }

    #[test]
    fn what_the_plan_set_is_kept() {
        let given = Params {
            size: Some(ByteSize::mib(8)),
            threads: Some(7),
            ..Params::default()
        };
        let f = resolve_params("fileio", Preset::Faithful, &given, &host(), None, None);
        assert_eq!(f.size, Some(ByteSize::mib(8)));
        let b = resolve_params("build", Preset::Quick, &given, &host(), None, None);
        assert_eq!(b.threads, Some(7));
        let run = Some(Dur(Duration::from_secs(2)));
        assert_eq!(
            resolve_params("cpu-int", Preset::Quick, &given, &host(), run, None),
            given
        );
    }

    #[test]
    fn cpu_samples_are_short_in_the_quick_preset_unless_a_duration_is_given() {
        let none = Params::default();
        let short = Some(Dur(QUICK_SHORT_DURATION));
        for name in ["cpu-int", "cpu-fp", "mem-bw", "dd-zero", "dbench"] {
            let q = resolve_params(name, Preset::Quick, &none, &host(), None, None);
            assert_eq!(q.duration, short, "{name}");
            let run = Some(Dur(Duration::from_secs(3)));
            let given = resolve_params(name, Preset::Quick, &none, &host(), run, None);
            assert_eq!(given.duration, None, "{name}: the run's own duration");
            let f = resolve_params(name, Preset::Faithful, &none, &host(), None, None);
            assert_eq!(f.duration, None, "{name}: the preset's");
        }
        let mine = Params {
            duration: Some(Dur(Duration::from_millis(700))),
            ..Params::default()
        };
        let kept = resolve_params("cpu-int", Preset::Quick, &mine, &host(), None, None);
        assert_eq!(kept.duration, mine.duration);
    }

    #[test]
    fn some_workloads_get_longer_time_caps_in_the_quick_preset_unless_the_run_gives_one() {
        let none = Params::default();
        let run = Some(Dur(Duration::from_secs(30)));
        for (w, cap) in QUICK_OWN_MAX_TIME {
            let q = resolve_params(w, Preset::Quick, &none, &host(), None, None);
            assert_eq!(q.max_time, Some(Dur(cap)), "{w}");
            assert!(q.check(w).is_ok(), "{w}");
            let r = resolve_params(w, Preset::Quick, &none, &host(), None, run);
            assert_eq!(r.max_time, None, "{w}: the run's max-time");
            let f = resolve_params(w, Preset::Faithful, &none, &host(), None, None);
            assert_eq!(f.max_time, None, "{w}: the preset's");
            let mine = Params {
                max_time: Some(Dur(Duration::from_secs(3))),
                ..Params::default()
            };
            let m = resolve_params(w, Preset::Quick, &mine, &host(), None, None);
            assert_eq!(m.max_time, mine.max_time, "{w}: the plan's");
        }
        let c = resolve_params("cpu-int", Preset::Quick, &none, &host(), None, None);
        assert_eq!(c.max_time, None, "the listed workloads only");
        let tiny = Params {
            max_time: Some(Dur(Duration::from_millis(1))),
            ..Params::default()
        };
        assert!(tiny.check("mem-bw").unwrap_err().contains("max-time"));
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for workload unit tests.
    use super::*;

    /// Run `w` once with `params` and a short duration in a temporary scratch dir;
    /// checks that it calls [`Ctx::begin_measuring`] exactly when it is one of
    /// [`SET_UP_FIRST`].
    pub fn run_briefly(w: &Workload, params: Params, peer: Option<SocketAddr>) -> Outcome {
        let dir = tempfile::tempdir().expect("tempdir");
        let begun = std::cell::Cell::new(0u32);
        let begin = || {
            begun.set(begun.get() + 1);
            Ok(())
        };
        let ctx = Ctx {
            preset: Preset::Quick,
            duration: params
                .duration
                .map(Dur::get)
                .unwrap_or(Duration::from_millis(300)),
            params: &params,
            scratch: dir.path(),
            peer,
            progress: &|_, _| {},
            begin: &begin,
        };
        let out = (w.run)(&ctx).unwrap_or_else(|e| panic!("{} failed: {e}", w.name));
        assert_eq!(
            begun.get(),
            u32::from(sets_up_first(w.name)),
            "{}: begin_measuring calls",
            w.name
        );
        assert!(!out.metrics.is_empty(), "{} returned no metric", w.name);
        let head = &out.metrics[0];
        assert_eq!(head.name, w.metric, "{}: headline metric name", w.name);
        assert_eq!(head.unit, w.unit, "{}: headline unit", w.name);
        assert_eq!(head.higher_is_better, w.higher_is_better);
        for m in &out.metrics {
            assert!(
                m.value.is_finite() && m.value > 0.0,
                "{}: metric {} = {} is not a positive figure",
                w.name,
                m.name,
                m.value
            );
        }
        out
    }
}

#[cfg(test)]
mod prime_tests {
    use super::*;

    #[test]
    fn priming_leaves_nothing_in_scratch_and_says_how_much() {
        let dir = tempfile::tempdir().expect("tempdir");
        let params = Params::default();
        let ctx = Ctx {
            preset: Preset::Quick,
            duration: Duration::from_millis(10),
            params: &params,
            scratch: dir.path(),
            peer: None,
            progress: &|_, _| {},
            begin: &|| Ok(()),
        };
        let note = ctx.prime_page_cache(3 << 20).expect("prime");
        assert!(note.contains("3 MiB written and deleted"), "{note}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
