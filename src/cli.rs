//! Command-line interface: argument definitions and dispatch to each command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::error::user;
use crate::plan::Plan;
use crate::units::Dur;
use crate::workloads::{self, Preset};

/// Measures what a virtualization layer costs real workloads.
#[derive(Debug, Parser)]
#[command(name = "virtmark", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the overhead step: every workload in every target, repeated, normalized to native.
    Run(RunArgs),
    /// Run the scalability step: n instances of each target at once, n = 1, 2, 4, …
    Scale(ScaleArgs),
    /// Run the isolation step: k instances, one misbehaving in turn with each stressor.
    Isolate(IsolateArgs),
    /// Run the whole method — overhead, scalability, isolation — as one run with one report.
    Study(StudyArgs),
    /// List the built-in workloads: what each stands for, metric and unit.
    Workloads,
    /// List the probes: the primitive each exposes and the study or tool it follows.
    Probes,
    /// Measure the probes in each target: cost per operation and its multiple of native.
    Probe(ProbeArgs),
    /// List every target driver: available here or not, and exactly why not.
    /// A target that can fail to start for reasons no file shows (UML, QEMU,
    /// gVisor, LXC) is started once to prove it; the verdict is cached.
    Targets {
        /// Only these targets (default: every known one).
        names: Vec<String>,
        /// Print the list as JSON: name, class, available, reason.
        #[arg(long)]
        json: bool,
    },
    /// Print the default plan (TOML), to edit and pass to `run --plan`, or check one.
    Plan {
        /// Print the default plan.
        #[arg(long)]
        print_default: bool,
        /// Check a plan file (every field and parameter against its range) and
        /// run nothing; exit status 2 when it is not valid.
        #[arg(long, value_name = "FILE", conflicts_with = "print_default")]
        check: Option<PathBuf>,
    },
    /// Detect the virtualization this runs under (VM, container, sandbox, nesting),
    /// with the evidence for each layer.
    Detect {
        /// Print the whole fingerprint as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the runs stored in the results database, newest first.
    History {
        /// Results database (default: $VIRTMARK_DB or the user's data directory).
        #[arg(long)]
        db: Option<PathBuf>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write a run's report: HTML and Markdown into its run directory, or one format
    /// to a file or standard output.
    Report(ReportArgs),
    /// Compare two runs per workload and target: change of the median and of the
    /// ratio to native, and whether it is significant. Exit status: 0 = no
    /// significant change beyond the threshold, 1 = at least one, 2 = bad input.
    Compare(CompareArgs),
    /// Recommend a virtualization solution: hard constraints from the catalog,
    /// then a ranking by the cost measured here for a workload profile.
    Recommend(crate::recommend::RecommendArgs),
    /// Print the survey's taxonomy with the catalog's solutions (and its SVG figure).
    Taxonomy(crate::recommend::TaxonomyArgs),
    /// Remove what crashed or killed runs left behind (namespaces, links, cgroups,
    /// mounts, scratch, processes), from their ledgers.
    Cleanup {
        /// Also clean ledgers of runs that still look alive.
        #[arg(long)]
        force: bool,
    },
    /// Run one stressor in this process until its duration or SIGTERM (used by the
    /// agent; prints a JSON report).
    #[command(hide = true)]
    Stress {
        /// Stressor kind.
        kind: String,
        /// Bounds and parameters (JSON).
        #[arg(long)]
        params: String,
    },
    /// Run as an agent inside a target: JSON requests on stdin, answers on stdout.
    #[command(hide = true)]
    Agent {
        /// Where per-workload scratch directories are made.
        #[arg(long, env = "VIRTMARK_SCRATCH")]
        scratch: Option<PathBuf>,
        /// Act as a VM guest's init (PID 1): set the guest up from the kernel
        /// command line, serve on its channel device, power off at the end.
        #[arg(long, hide = true)]
        init: bool,
        /// Words a kernel appends to init's arguments (UML adds `root=`,
        /// `console=`); ignored, accepted only with --init.
        #[arg(
            hide = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            requires = "init"
        )]
        kernel_words: Vec<String>,
    },
    /// Serve the host-side end of network workloads (what netserver is to netperf).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Exit when standard input reaches end of file (the parent has gone).
        #[arg(long)]
        exit_on_eof: bool,
    },
}

/// Options of `virtmark run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workloads, comma-separated (default: the whole suite; see `virtmark workloads`).
    #[arg(short, long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// Continue the interrupted or killed run RUN (an id from `virtmark history`)
    /// from its stored plan and samples: only the missing cells run.
    #[arg(
        long,
        value_name = "RUN",
        conflicts_with_all = [
            "workloads", "plan", "targets", "reps", "discard", "duration", "preset",
            "deadline", "cpus", "memory", "out", "peer"
        ]
    )]
    pub resume: Option<String>,
    /// Also run every probe (`virtmark probes`), so that the report explains
    /// each slowdown (diagnosis).
    #[arg(long)]
    pub probes: bool,
    /// Options every step takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `virtmark probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probes, comma-separated (default: every probe; see `virtmark probes`).
    #[arg(short, long, value_delimiter = ',')]
    pub probes: Option<Vec<String>>,
    /// Options every step takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `--reps`: `auto` or a fixed count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepsArg {
    /// Repeat until precise or a cap.
    Auto,
    /// Exactly this many.
    Fixed(u32),
}

impl std::str::FromStr for RepsArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(RepsArg::Auto);
        }
        s.parse()
            .map(RepsArg::Fixed)
            .map_err(|_| format!("`{s}`: give `auto` or a number of repetitions"))
    }
}

/// Options shared by `run`, `scale` and `isolate`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Plan file (TOML); flags below override it.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Targets, comma-separated (default: every target available here).
    #[arg(short, long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Repetitions of each (target, workload): `auto` (the default: the overhead
    /// step repeats until each ratio is known to ±3% or a cap) or a number.
    #[arg(long, value_name = "auto|N")]
    pub reps: Option<RepsArg>,
    /// With `--reps auto`: most repetitions of one (target, workload), warm-ups
    /// included (default 60).
    #[arg(long, value_name = "N")]
    pub max_reps: Option<u32>,
    /// With `--reps auto`: no repetition beyond the first `reps` once a (target,
    /// workload)'s samples took this long together (default: 5s quick, 30m
    /// faithful; quick mem-bw 30s, compress and dd-copy 10s, unless this is given). A noisy
    /// host needs more: `--max-time 30s`.
    #[arg(long, value_name = "DUR")]
    pub max_time: Option<Dur>,
    /// Seed of the overhead step's order (default: drawn, and recorded in the
    /// run's plan); the same seed replays the same order.
    #[arg(long)]
    pub seed: Option<u32>,
    /// Leading repetitions discarded as warm-up.
    #[arg(long)]
    pub discard: Option<u32>,
    /// Run time of time-based workloads (e.g. 3s, 500ms).
    #[arg(long)]
    pub duration: Option<Dur>,
    /// quick (default) or faithful (the classic studies' sizes and durations).
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Longest wait for one answer from a target before the sample is DNR.
    #[arg(long)]
    pub deadline: Option<Dur>,
    /// CPUs each target gets (default: every host CPU).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory each target instance gets (default: 2GiB in run, as the studies gave
    /// their guests; 512MiB in isolate; scale divides --memory-total).
    #[arg(long)]
    pub memory: Option<crate::units::ByteSize>,
    /// Run native without the targets' CPU and memory envelope (default: native runs
    /// in a cgroup with the same --cpus and --memory as every target).
    #[arg(long)]
    pub native_unbounded: bool,
    /// Directory in which the run directory is made (default: ./virtmark-results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Results database (default: $VIRTMARK_DB or the user's data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Peer (host:port) that ssh targets reach directly, instead of an ssh
    /// reverse tunnel to the local peer.
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<String>,
}

/// Options of `virtmark scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Workload every instance runs (default: oltp, the studies' SysBench OLTP).
    #[arg(short, long)]
    pub workload: Option<String>,
    /// Instance counts, comma-separated and increasing (default: 1,2,4,8,16,32).
    #[arg(long, value_delimiter = ',')]
    pub instances: Option<Vec<u32>>,
    /// Memory divided between the instances (default: 2039MiB, the studies' guest);
    /// given, it is divided evenly unless --memory-split says otherwise.
    #[arg(long)]
    pub memory_total: Option<crate::units::ByteSize>,
    /// How memory is divided: `studies` (2039, 1622, 811, 405, 202, 101 MiB for
    /// n = 1 … 32, as Camargos et al.) or `even` (the total / n).
    #[arg(long, value_name = "studies|even")]
    pub memory_split: Option<crate::plan::MemorySplit>,
    /// Pin instance i to host CPU i mod CPUs (default: instances share every CPU).
    #[arg(long)]
    pub pin: bool,
    /// Options every step takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `virtmark isolate`.
#[derive(Debug, Args)]
pub struct IsolateArgs {
    /// Instances per target; instance 0 misbehaves (default: 4).
    #[arg(long)]
    pub instances: Option<u32>,
    /// Stressors, comma-separated, or `all`: cpu, memory, fork, disk, udp-send, udp-recv.
    #[arg(long, value_delimiter = ',')]
    pub stressors: Option<Vec<String>>,
    /// Measurement window of each round (default: 3s quick, 30s faithful).
    #[arg(long)]
    pub window: Option<Dur>,
    /// Requests per second each instance offers (default: 500).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Let memory, fork and disk stressors run on native (bounded all the same).
    #[arg(long)]
    pub allow_host_stress: bool,
    /// Run container instances without their memory and task limits, to show what
    /// the limits contain (refused on native, which has none to lift).
    #[arg(long)]
    pub no_limits: bool,
    /// Options every step takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of `virtmark report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run id from the results database or a run directory (default: the newest run).
    pub run: Option<String>,
    /// Write only this format (to -o FILE, else standard output).
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Output file for --format (default: standard output).
    #[arg(short, long, requires = "format")]
    pub output: Option<PathBuf>,
    /// Also write every chart as standalone SVG and PNG into this directory.
    #[arg(long)]
    pub charts: Option<PathBuf>,
    /// Results database (default: $VIRTMARK_DB or the user's data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// `--format` values of `virtmark report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Self-contained HTML with inline SVG charts.
    Html,
    /// GitHub-flavoured Markdown: summary and tables.
    Md,
    /// One row per sample and metric (every field needed to recompute statistics).
    Csv,
    /// The whole run (results.json, with schema_version).
    Json,
}

/// Options of `virtmark compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier run: id or run directory.
    pub run_a: String,
    /// The later run: id or run directory.
    pub run_b: String,
    /// Smallest change of a median that counts, e.g. 5%.
    #[arg(long, default_value = "5%", value_parser = crate::report::compare::parse_threshold)]
    pub threshold: f64,
    /// Significance level of the Mann–Whitney U test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Results database (default: $VIRTMARK_DB or the user's data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// Options of `virtmark study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Workloads of the overhead step, comma-separated (default: the whole suite).
    #[arg(short, long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// Workload of the scalability step (default: oltp).
    #[arg(long)]
    pub scale_workload: Option<String>,
    /// Instance counts of the scalability step (default: 1,2,4,8 quick; 1,2,4,8,16,32 faithful).
    #[arg(long, value_delimiter = ',')]
    pub instances: Option<Vec<u32>>,
    /// Stressors of the isolation step, comma-separated, or `all` (default: all).
    #[arg(long, value_delimiter = ',')]
    pub stressors: Option<Vec<String>>,
    /// Measurement window of each isolation round (default: 3s quick, 30s faithful).
    #[arg(long)]
    pub window: Option<Dur>,
    /// Also run the isolation step on native (bounded).
    #[arg(long)]
    pub allow_host_stress: bool,
    /// Leave the probes out of the overhead step (they are run by default, for
    /// the diagnosis).
    #[arg(long)]
    pub no_probes: bool,
    /// Options every step takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `--preset` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    /// Short durations, small sizes.
    Quick,
    /// The studies' sizes and durations.
    Faithful,
}

/// Execute a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Scale(args) => cmd_scale(args),
        Command::Isolate(args) => cmd_isolate(args),
        Command::Study(args) => cmd_study(args),
        Command::Workloads => cmd_workloads(),
        Command::Probes => cmd_probes(),
        Command::Probe(args) => cmd_probe(args),
        Command::Targets { names, json } => cmd_targets(&names, json),
        Command::Plan {
            check: Some(path), ..
        } => {
            let plan = Plan::load(&path)?;
            println!(
                "{}: valid ({} workload(s), {} target(s), {} repetition(s))",
                path.display(),
                plan.workload_names().len(),
                plan.run
                    .targets
                    .as_ref()
                    .map_or("every available".into(), |t| t.len().to_string()),
                plan.run.reps
            );
            Ok(())
        }
        Command::Plan { print_default, .. } => {
            if !print_default {
                return Err(user(
                    "say what to do: `virtmark plan --print-default` prints the default plan, \
                     `virtmark plan --check FILE` checks one",
                ));
            }
            print!("{}", crate::plan::default_toml());
            Ok(())
        }
        Command::History { db, limit } => cmd_history(db, limit),
        Command::Report(args) => cmd_report(args),
        Command::Compare(args) => cmd_compare(args),
        Command::Recommend(args) => crate::recommend::cmd_recommend(args),
        Command::Taxonomy(args) => crate::recommend::cmd_taxonomy(args),
        Command::Cleanup { force } => cmd_cleanup(force),
        Command::Stress { kind, params } => {
            let p: crate::stressors::StressParams =
                serde_json::from_str(&params).map_err(|e| user(format!("stress --params: {e}")))?;
            let report = crate::stressors::run(&kind, &p)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Detect { json } => cmd_detect(json),
        Command::Agent { init: true, .. } => crate::targets::guest_init::run(),
        Command::Agent { scratch, .. } => {
            let root = scratch.unwrap_or_else(std::env::temp_dir);
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            crate::agent::serve(stdin, stdout, &root).context("agent channel")
        }
        Command::Serve {
            listen,
            exit_on_eof,
        } => crate::peer::run_cli(&listen, exit_on_eof),
    }
}

/// Merge the plan file (if any) and the flags into one validated plan.
pub fn build_plan(args: &CommonArgs, workloads: Option<&Vec<String>>) -> Result<Plan> {
    let mut plan = match &args.plan {
        Some(p) => Plan::load(p)?,
        None => Plan::default(),
    };
    let r = &mut plan.run;
    if let Some(t) = &args.targets {
        r.targets = Some(t.iter().map(|s| s.trim().to_string()).collect());
    }
    if let Some(w) = workloads {
        r.workloads = Some(w.iter().map(|s| s.trim().to_string()).collect());
    }
    match args.reps {
        Some(RepsArg::Auto) => r.auto = true,
        Some(RepsArg::Fixed(n)) => {
            r.reps = n;
            r.auto = false;
        }
        None => {}
    }
    if let Some(n) = args.max_reps {
        r.max_reps = n;
    }
    if args.max_time.is_some() {
        r.max_time = args.max_time;
    }
    if args.seed.is_some() {
        r.seed = args.seed;
    }
    if let Some(n) = args.discard {
        r.discard = n;
    }
    if let Some(d) = args.duration {
        r.duration = Some(d);
    }
    if let Some(d) = args.deadline {
        r.deadline = d;
    }
    if args.cpus.is_some() {
        r.cpus = args.cpus;
    }
    if args.memory.is_some() {
        r.memory = args.memory;
    }
    if let Some(p) = &args.peer {
        r.peer = Some(p.clone());
    }
    if args.native_unbounded {
        r.native_unbounded = Some(true);
    }
    if let Some(p) = args.preset {
        r.preset = match p {
            PresetArg::Quick => Preset::Quick,
            PresetArg::Faithful => Preset::Faithful,
        };
    }
    let origin = match &args.plan {
        Some(p) => format!("{} (with command-line flags)", p.display()),
        None => "command line".into(),
    };
    plan.validate(&origin)?;
    Ok(plan)
}

fn cmd_run(args: RunArgs) -> Result<()> {
    if let Some(id) = &args.resume {
        let opts = run_options(&args.common);
        let done = crate::runner::resume::resume(id, &opts)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", crate::report::terminal::render(&done.record))?;
        return print_paths(&mut out, &done, &opts);
    }
    let workloads = if args.probes {
        Some(with_probes(args.workloads))
    } else {
        args.workloads
    };
    let plan = build_plan(&args.common, workloads.as_ref())?;
    execute(
        &args.common,
        plan,
        crate::runner::run,
        crate::report::terminal::render,
    )
}

/// Run one step (or the study) of `plan`, print `render` of the record, then
/// where everything went.
fn execute(
    common: &CommonArgs,
    plan: Plan,
    step: fn(Plan, &crate::runner::RunOptions) -> Result<crate::runner::Finished>,
    render: impl Fn(&crate::results::RunRecord) -> String,
) -> Result<()> {
    let opts = run_options(common);
    let done = step(plan, &opts)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", render(&done.record))?;
    print_paths(&mut out, &done, &opts)
}

fn cmd_report(args: ReportArgs) -> Result<()> {
    use crate::report::{export, load};
    let db = args.db.unwrap_or_else(crate::store::db::default_path);
    let loaded = load::load(args.run.as_deref(), &db)?;
    let run = &loaded.record;
    let mut out = std::io::stdout().lock();
    if let Some(dir) = &args.charts {
        let files = export::write_charts(&crate::report::charts(run), dir)?;
        writeln!(out, "charts: {} file(s) in {}", files.len(), dir.display())?;
    }
    if let Some(fmt) = args.format {
        let text = match fmt {
            ReportFormat::Html => crate::report::html(run),
            ReportFormat::Md => crate::report::markdown(run),
            ReportFormat::Csv => export::csv(run),
            ReportFormat::Json => export::json(run)?,
        };
        match &args.output {
            Some(p) => {
                std::fs::write(p, text)
                    .map_err(|e| user(format!("cannot write {}: {e}", p.display())))?;
                writeln!(out, "{}", p.display())?;
            }
            None => out.write_all(text.as_bytes())?,
        }
        return Ok(());
    }
    // Both reports beside the run; a run whose directory is gone reports into ./<id>/.
    let dir = match &loaded.dir {
        Some(d) => d.clone(),
        None => {
            let d = PathBuf::from(&run.run_id);
            std::fs::create_dir_all(&d)
                .map_err(|e| user(format!("cannot create {}: {e}", d.display())))?;
            d
        }
    };
    let (html, md) = crate::report::write_reports(run, &dir)?;
    writeln!(
        out,
        "run {} ({})",
        run.run_id,
        crate::report::view::status_text(run.status)
    )?;
    writeln!(out, "  {}", html.display())?;
    writeln!(out, "  {}", md.display())?;
    Ok(())
}

fn cmd_compare(args: CompareArgs) -> Result<()> {
    use crate::report::{compare, load};
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(user(format!(
            "invalid --alpha {}: give a significance level between 0 and 1, e.g. 0.05",
            args.alpha
        )));
    }
    let db = args.db.unwrap_or_else(crate::store::db::default_path);
    let a = load::load(Some(&args.run_a), &db)?.record;
    let b = load::load(Some(&args.run_b), &db)?.record;
    let c = compare::compare(
        &a,
        &b,
        compare::Options {
            threshold: args.threshold,
            alpha: args.alpha,
        },
    )?;
    if !c.host_differences.is_empty() {
        eprintln!(
            "virtmark: warning: the runs were measured on different hosts: {}",
            c.host_differences.join("; ")
        );
    }
    for (id, r) in [(&a.run_id, &a), (&b.run_id, &b)] {
        if r.status != crate::results::RunStatus::Complete {
            eprintln!(
                "virtmark: warning: run {id} is {}",
                crate::report::view::status_text(r.status)
            );
        }
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{}", compare::render(&c))?;
    out.flush()?;
    let n = c.flagged();
    if n > 0 {
        anyhow::bail!(
            "{n} significant change(s) beyond {:.1}% between {} and {}",
            args.threshold * 100.0,
            a.run_id,
            b.run_id
        );
    }
    Ok(())
}

fn cmd_detect(json: bool) -> Result<()> {
    let fp = crate::fingerprint::collect();
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(&fp).context("serializing the fingerprint")?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", fp.summary())?;
    }
    Ok(())
}

fn cmd_cleanup(force: bool) -> Result<()> {
    let r = crate::targets::ledger::cleanup_all(force)?;
    let mut out = std::io::stdout().lock();
    for l in &r.ledgers {
        writeln!(out, "cleaned {}", l.display())?;
    }
    for l in &r.alive {
        writeln!(
            out,
            "skipped {} (its run is still going; --force to clean anyway)",
            l.display()
        )?;
    }
    for why in &r.refused {
        writeln!(out, "refused {why}")?;
    }
    if r.ledgers.is_empty() && r.alive.is_empty() && r.refused.is_empty() {
        writeln!(out, "nothing to clean")?;
    }
    if !r.problems.is_empty() {
        for p in &r.problems {
            eprintln!("virtmark: could not remove {p}");
        }
        anyhow::bail!("{} resource(s) could not be removed", r.problems.len());
    }
    Ok(())
}

fn run_options(args: &CommonArgs) -> crate::runner::RunOptions {
    crate::runner::RunOptions {
        out: args
            .out
            .clone()
            .unwrap_or_else(|| crate::runner::default_out().to_path_buf()),
        db: args
            .db
            .clone()
            .unwrap_or_else(crate::store::db::default_path),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    }
}

fn cmd_scale(args: ScaleArgs) -> Result<()> {
    let mut plan = build_plan(&args.common, None)?;
    let mut sp = plan.scale.clone().unwrap_or_default();
    if let Some(w) = args.workload {
        sp.workload = w;
    }
    if let Some(i) = args.instances {
        sp.instances = i;
    }
    if let Some(m) = args.memory_total {
        sp.memory_total = m;
        sp.memory_split = crate::plan::MemorySplit::Even;
    }
    if let Some(split) = args.memory_split {
        sp.memory_split = split;
    }
    sp.pin |= args.pin;
    plan.scale = Some(sp);
    plan.validate("command line")?;
    execute(
        &args.common,
        plan,
        crate::runner::scale::scale,
        crate::report::terminal::render_scale,
    )
}

fn cmd_isolate(args: IsolateArgs) -> Result<()> {
    let mut plan = build_plan(&args.common, None)?;
    let mut iso = plan.isolation.clone().unwrap_or_default();
    if let Some(n) = args.instances {
        iso.instances = n;
    }
    if let Some(st) = args.stressors {
        iso.stressors = expand_stressors(st);
    }
    if args.window.is_some() {
        iso.window = args.window;
    }
    // `--memory` sizes each isolation instance (default 512MiB: the memory bomb's bound).
    if let Some(m) = args.common.memory {
        iso.memory = m;
    }
    if let Some(r) = args.rate {
        iso.rate = r;
    }
    iso.allow_host_stress |= args.allow_host_stress;
    iso.no_limits |= args.no_limits;
    plan.isolation = Some(iso);
    plan.validate("command line")?;
    execute(
        &args.common,
        plan,
        crate::runner::isolate::isolate,
        crate::report::terminal::render_isolation,
    )
}

/// `all` stands for every stressor.
fn expand_stressors(names: Vec<String>) -> Vec<String> {
    if names.iter().any(|s| s == "all") {
        crate::stressors::KINDS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        names
    }
}

fn cmd_study(args: StudyArgs) -> Result<()> {
    let workloads = if args.no_probes {
        args.workloads
    } else {
        Some(with_probes(args.workloads))
    };
    let mut plan = build_plan(&args.common, workloads.as_ref())?;
    let mut sp = plan.scale.clone().unwrap_or_default();
    if let Some(w) = args.scale_workload {
        sp.workload = w;
    }
    match args.instances {
        Some(i) => sp.instances = i,
        None if plan.scale.is_none() && plan.run.preset == Preset::Quick => {
            sp.instances = vec![1, 2, 4, 8]
        }
        None => {}
    }
    plan.scale = Some(sp);
    let mut iso = plan.isolation.clone().unwrap_or_default();
    if let Some(st) = args.stressors {
        iso.stressors = expand_stressors(st);
    }
    if args.window.is_some() {
        iso.window = args.window;
    }
    iso.allow_host_stress |= args.allow_host_stress;
    plan.isolation = Some(iso);
    plan.validate("command line")?;
    execute(&args.common, plan, crate::runner::study::study, |r| {
        use crate::report::terminal::{render, render_isolation, render_scale};
        let mut text = render(r);
        if !r.scale.is_empty() {
            text.push('\n');
            text.push_str(&render_scale(r));
        }
        if !r.isolation.is_empty() {
            text.push('\n');
            text.push_str(&render_isolation(r));
        }
        text
    })
}

fn print_paths(
    out: &mut impl Write,
    done: &crate::runner::Finished,
    opts: &crate::runner::RunOptions,
) -> Result<()> {
    writeln!(
        out,
        "run {} ({})",
        done.record.run_id,
        done.record.status.as_str()
    )?;
    writeln!(out, "  run directory: {}", done.dir.display())?;
    writeln!(
        out,
        "  results:       {}",
        done.dir.join("results.json").display()
    )?;
    writeln!(out, "  database:      {}", opts.db.display())?;
    match crate::report::write_reports(&done.record, &done.dir) {
        Ok((html, md)) => {
            writeln!(out, "  report:        {}", html.display())?;
            writeln!(out, "                 {}", md.display())?;
        }
        Err(e) => eprintln!("virtmark: warning: writing the report: {e:#}"),
    }
    Ok(())
}

fn cmd_history(db: Option<PathBuf>, limit: usize) -> Result<()> {
    let path = db.unwrap_or_else(crate::store::db::default_path);
    let db = crate::store::db::Db::open_existing(&path)?;
    let runs = db.history(limit)?;
    let mut out = std::io::stdout().lock();
    if runs.is_empty() {
        writeln!(out, "no runs stored in {}", path.display())?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "run",
        "started",
        "status",
        "host",
        "targets",
        "workloads",
        "samples",
    ]);
    for r in runs {
        let nw = r.workloads.split(',').filter(|s| !s.is_empty()).count();
        table.add_row(vec![
            r.id,
            r.started,
            r.status,
            r.hostname,
            r.targets,
            if nw > 3 {
                format!("{nw} workloads")
            } else {
                r.workloads
            },
            r.samples.to_string(),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

/// One row of `virtmark targets`.
#[derive(serde::Serialize)]
struct TargetRow {
    name: String,
    class: String,
    available: bool,
    reason: Option<String>,
}

fn cmd_targets(names: &[String], json: bool) -> Result<()> {
    let names: Vec<String> = if names.is_empty() {
        crate::targets::KNOWN
            .iter()
            .map(|n| n.to_string())
            .collect()
    } else {
        names.to_vec()
    };
    let mut rows = Vec::new();
    for name in &names {
        if name.contains('<') {
            // A pattern: its driver, when the family makes one of the pattern
            // itself, says what to give (`libvirt:<domain>`).
            let (class, reason) = match crate::targets::parse(name) {
                Ok(kind) => (
                    crate::targets::class_of(&kind).to_string(),
                    crate::targets::driver(&kind).available().err(),
                ),
                Err(_) => (
                    "whatever the remote host is".to_string(),
                    Some("give a host: ssh:[user@]host[:port] (checked when used)".into()),
                ),
            };
            rows.push(TargetRow {
                name: name.clone(),
                class,
                available: false,
                reason,
            });
            continue;
        }
        let kind = crate::targets::parse(name).map_err(user)?;
        let verdict = crate::targets::driver(&kind).available();
        rows.push(TargetRow {
            name: name.clone(),
            class: crate::targets::class_of(&kind).to_string(),
            available: verdict.is_ok(),
            reason: verdict.err(),
        });
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table.set_header(vec!["target", "class", "available here"]);
    for r in rows {
        let verdict = match (r.available, r.reason) {
            (true, _) if crate::targets::in_default(&r.name) => "yes".to_string(),
            (true, _) => "yes (run when named: not in the default list)".to_string(),
            (false, Some(why)) if r.name.contains('<') => why,
            (false, why) => format!("no: {}", why.unwrap_or_default()),
        };
        table.add_row(vec![r.name, r.class, verdict]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

/// The given workloads (default: the suite) followed by every probe not named.
fn with_probes(workloads: Option<Vec<String>>) -> Vec<String> {
    let mut names =
        workloads.unwrap_or_else(|| workloads::names().into_iter().map(String::from).collect());
    for p in crate::probes::names() {
        if !names.iter().any(|n| n == p) {
            names.push(p.to_string());
        }
    }
    names
}

fn cmd_probe(args: ProbeArgs) -> Result<()> {
    let names = match args.probes {
        Some(names) => {
            if let Some(bad) = names.iter().find(|n| !crate::probes::is_probe(n)) {
                return Err(user(format!(
                    "unknown probe {bad:?}: give some of {}",
                    crate::probes::names().join(", ")
                )));
            }
            names
        }
        None => crate::probes::names()
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let plan = build_plan(&args.common, Some(&names))?;
    execute(
        &args.common,
        plan,
        crate::runner::run,
        crate::report::terminal::render,
    )
}

fn cmd_probes() -> Result<()> {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["probe", "primitive exposed", "follows"]);
    for p in crate::probes::ALL {
        table.add_row(vec![p.name, p.description, p.stands_for]);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{table}")?;
    writeln!(
        out,
        "each reports its median cost in {} over a fixed time budget per sample; see docs/probes.md",
        crate::probes::UNIT
    )?;
    Ok(())
}

fn cmd_workloads() -> Result<()> {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "workload",
        "class",
        "stands for",
        "metric",
        "unit",
        "better",
        "available",
    ]);
    for w in workloads::ALL {
        table.add_row(vec![
            w.name.to_string(),
            w.class.as_str().to_string(),
            w.stands_for.to_string(),
            w.metric.to_string(),
            w.unit.to_string(),
            if w.higher_is_better {
                "higher"
            } else {
                "lower"
            }
            .to_string(),
            match (w.available)() {
                Ok(()) => "yes".to_string(),
                Err(why) => format!("no: {why}"),
            },
        ]);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{table}")?;
    Ok(())
}
