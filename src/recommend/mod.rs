//! Choosing a virtualization solution: the survey's taxonomy with a catalog of
//! solutions ([`catalog`]), and a flow model ([`flow`]) that applies the user's
//! hard constraints, then ranks what is left by the cost measured here for the
//! user's workload profile, read from stored runs through the results model.
//! [`figures`] draws the taxonomy and the flow chart, [`render`] writes the
//! terminal and HTML forms.
//!
//! This is the future work White & Pilbeam close their survey with: "a
//! methodology for selecting a virtualization solution based on a flow model",
//! and the taxonomy "augmented with an available solutions list".

pub mod catalog;
pub mod figures;
pub mod fixtures;
pub mod flow;
pub mod render;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::error::user;
use crate::results::RunRecord;
use catalog::Catalog;
use flow::{Profile, Requirements};

/// Options of `virtmark recommend`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A requirement, repeatable or comma-separated: guest-os=windows|linux|
    /// linux-own-kernel|bsd|other, cross-arch, isolation=namespace|user-kernel|
    /// hypervisor, live-migration, license=open, density=high|medium|low,
    /// start=fast|medium|slow, host-os=linux|windows|macos|bare-metal.
    #[arg(long, value_delimiter = ',', value_name = "NEED")]
    pub need: Vec<String>,
    /// Requirements from a TOML file (the same names as keys: `guest-os =
    /// "windows"`, `cross-arch = true`, `profile = "network"`); --need adds to it.
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<PathBuf>,
    /// Workload profile: cpu, memory, disk, network, database, build, mixed
    /// (default: mixed).
    #[arg(long, conflicts_with = "profile_from")]
    pub profile: Option<String>,
    /// Weight by the workloads a stored run measured (a run id or directory).
    #[arg(long, value_name = "RUN")]
    pub profile_from: Option<String>,
    /// Measurements from this run (id or directory; default: the newest run on
    /// this host with ratios to native).
    #[arg(long, value_name = "RUN")]
    pub from: Option<String>,
    /// Keep historic solutions and those that need a patched host kernel.
    #[arg(long)]
    pub include_historic: bool,
    /// Print the recommendation as JSON.
    #[arg(long)]
    pub json: bool,
    /// Results database (default: $VIRTMARK_DB or the user's data directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// Options of `virtmark taxonomy`.
#[derive(Debug, Args)]
pub struct TaxonomyArgs {
    /// Also write the taxonomy figure as SVG to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// The catalog, as an `anyhow` error when it cannot be read.
pub fn load_catalog() -> Result<Catalog> {
    Catalog::embedded().context("the embedded catalog")
}

/// `virtmark taxonomy`.
pub fn cmd_taxonomy(args: TaxonomyArgs) -> Result<()> {
    let c = load_catalog()?;
    let tree = figures::taxonomy(&c);
    let mut out = std::io::stdout().lock();
    write!(out, "{}", figures::tree_text(&tree))?;
    if let Some(p) = &args.svg {
        std::fs::write(p, figures::taxonomy_svg(&tree).svg)
            .map_err(|e| user(format!("cannot write {}: {e}", p.display())))?;
        writeln!(out, "figure: {}", p.display())?;
    }
    Ok(())
}

/// Read a requirements file.
pub fn read_requirements(path: &Path) -> Result<Requirements> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        user(format!(
            "{}: {}: keys are guest-os, cross-arch, isolation, live-migration, license, density, start, host-os, include-historic, profile",
            path.display(),
            e.message()
        ))
    })
}

/// The newest stored run from this host that has at least one ratio to native.
pub fn newest_on_host(db_path: &Path, host: &str) -> Result<Option<RunRecord>> {
    if !db_path.exists() {
        return Ok(None);
    }
    let db = crate::store::db::Db::open_existing(db_path)?;
    for s in db.history(200)? {
        if s.hostname != host || !s.targets.split(',').any(|t| t == crate::results::BASELINE) {
            continue;
        }
        if let Some((run, _)) = db.load_run(&s.id)? {
            if run.results.iter().any(|r| r.ratio_to_native.is_some()) {
                return Ok(Some(run));
            }
        }
    }
    Ok(None)
}

fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// `virtmark recommend`.
pub fn cmd_recommend(args: RecommendArgs) -> Result<()> {
    let catalog = load_catalog()?;
    let mut req = match &args.requirements {
        Some(p) => read_requirements(p)?,
        None => Requirements::default(),
    };
    for n in &args.need {
        req.apply(n).map_err(|e| user(format!("--need {n}: {e}")))?;
    }
    req.include_historic |= args.include_historic;
    let db = args
        .db
        .clone()
        .unwrap_or_else(crate::store::db::default_path);
    let profile = match (&args.profile_from, &args.profile, &req.profile) {
        (Some(run), _, _) => {
            let r = crate::report::load::load(Some(run), &db)?.record;
            let p = Profile::from_run(&r);
            if p.workloads.is_empty() {
                return Err(user(format!(
                    "--profile-from {run}: the run has no overhead results to weight by"
                )));
            }
            p
        }
        (None, Some(name), _) | (None, None, Some(name)) => {
            Profile::named(name).map_err(|e| user(format!("--profile: {e}")))?
        }
        (None, None, None) => Profile::named("mixed").map_err(|e| user(e.to_string()))?,
    };
    let run = match &args.from {
        Some(spec) => Some(crate::report::load::load(Some(spec), &db)?.record),
        None => newest_on_host(&db, &this_host())?,
    };
    let rec = flow::recommend(&catalog, &req, &profile, run.as_ref());
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&rec).context("serializing the recommendation")?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", render::terminal(&rec))?;
    }
    Ok(())
}

/// The report's closing section for a study: the recommendation from the run
/// itself (no requirements, the run's own workloads as the profile), its flow
/// chart and the taxonomy. `None` for runs that are not a study with ratios.
pub fn report_section(run: &RunRecord) -> Option<String> {
    if run.plan.scale.is_none()
        || run.plan.isolation.is_none()
        || !run.results.iter().any(|r| r.ratio_to_native.is_some())
    {
        return None;
    }
    let catalog = Catalog::embedded().ok()?;
    let profile = Profile::from_run(run);
    let rec = flow::recommend(&catalog, &Requirements::default(), &profile, Some(run));
    Some(render::html(&rec, &catalog))
}

#[cfg(test)]
mod tests {
    use crate::report::testing::{synthetic_run, synthetic_study};

    #[test]
    fn a_study_report_ends_with_the_recommendation_and_its_flow_chart() {
        let html = crate::report::html(&synthetic_study(4, 3, 4));
        let at = html.find("<section id=\"recommend\">").expect("section");
        let tail = &html[at..];
        assert!(!tail[1..].contains("<section "), "not the last section");
        assert!(tail.contains("id=\"flow\"") && tail.contains("class=\"taken\""));
        assert!(tail.contains("id=\"taxonomy\""));
        // The run's own ratios are the evidence.
        assert!(tail.contains("measured here") && tail.contains("20260101-000000-test"));
        assert!(tail.contains("<table class=\"evidence\">"));
        // Not a study: no recommendation.
        assert!(!crate::report::html(&synthetic_run(4, 3, 4)).contains("id=\"recommend\""));
    }
}
