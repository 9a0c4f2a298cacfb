//! virtmark measures what a virtualization layer costs real workloads.
//!
//! The flow, one direction: [`plan`] → target drivers ([`targets`]) →
//! [`agent`] running [`workloads`] → samples ([`protocol`]) → [`stats`] →
//! results store ([`store`]) → terminal and file reports ([`report`]).

pub mod agent;
pub mod cli;
pub mod error;
pub mod fingerprint;
pub mod peer;
pub mod protocol;
pub mod units;
pub mod workloads;
