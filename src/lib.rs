//! virtmark measures what a virtualization layer costs real workloads.
//!
//! The flow, one direction: [`plan`] → target drivers ([`targets`]) →
//! [`agent`] running [`workloads`] → samples ([`protocol`]) → [`stats`] and
//! [`results`] → results store ([`store`]) → reports ([`report`]). [`runner`]
//! drives the steps; [`peer`] is the host-side end of network workloads and
//! [`stressors`] the misbehaving loads of the isolation step. [`recommend`]
//! turns stored runs into a choice of solution.

pub mod agent;
pub mod cli;
pub mod error;
pub mod fingerprint;
pub mod fuzzing;
pub mod peer;
pub mod plan;
pub mod probes;
pub mod protocol;
pub mod recommend;
pub mod report;
pub mod results;
pub mod runner;
pub mod stats;
pub mod store;
pub mod stressors;
pub mod sys;
pub mod targets;
pub mod units;
pub mod workloads;
