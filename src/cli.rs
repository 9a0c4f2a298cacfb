//! Command-line interface: argument definitions and dispatch to each command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::workloads;

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
    /// List the built-in workloads: what each stands for, metric and unit.
    Workloads,
    /// Detect the virtualization this runs under (VM, container, sandbox, nesting),
    /// with CPU, memory, kernel, clock source and cgroup limits.
    Detect {
        /// Print the fingerprint as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run as an agent inside a target: JSON requests on stdin, answers on stdout.
    #[command(hide = true)]
    Agent {
        /// Where per-workload scratch directories are made.
        #[arg(long, env = "VIRTMARK_SCRATCH")]
        scratch: Option<PathBuf>,
    },
}

/// Execute a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Workloads => cmd_workloads(),
        Command::Detect { json } => cmd_detect(json),
        Command::Agent { scratch } => {
            let root = scratch.unwrap_or_else(std::env::temp_dir);
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            crate::agent::serve(stdin, stdout, &root).context("agent channel")
        }
    }
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
