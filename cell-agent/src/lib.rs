//! The cell agent: Diego's rep and executor for one host.
//!
//! [`executor`] runs Tasks and LRP instances in garden containers: a
//! container store with Diego's states, the recipe interpreter, health
//! checks, download cache, logs and metrics. The rep (presence, auction
//! bids, `/state` and `/work`) and evacuation arrive with their own work;
//! the `cell-agent` binary so far only carries the in-container
//! `healthcheck` command.
#![forbid(unsafe_code)]

pub mod executor;
