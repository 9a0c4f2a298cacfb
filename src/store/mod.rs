//! Where runs are kept: the SQLite results database (history, one transaction per
//! sample) and the run directory (`plan.toml`, `results.json`, `samples.csv`).

pub mod db;
pub mod rundir;
