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
    /// Run as an agent inside a target: JSON requests on stdin, answers on stdout.
    #[command(hide = true)]
    Agent {
        /// Where per-workload scratch directories are made.
        #[arg(long, env = "VIRTMARK_SCRATCH")]
        scratch: Option<PathBuf>,
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

/// Execute a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Workloads => cmd_workloads(),
        Command::Agent { scratch } => {
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
