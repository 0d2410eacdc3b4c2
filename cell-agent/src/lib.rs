//! The cell agent: Diego's rep and executor for one host.
//!
//! [`executor`] runs Tasks and LRP instances in garden containers: a
//! container store with Diego's states, the recipe interpreter, health
//! checks, download cache, logs and metrics. [`rep`] is the cell's side of
//! the controller contract (`diego::rep`): presence, `/state` and `/work`,
//! event, log and metrics forwarding, evacuation, restart reconcile and
//! the loopback admin routes. [`diag`] is the operators' CLI over those
//! routes, garden and the host; [`config`] the agent's TOML file. See
//! `docs/cell-agent.md`.
#![forbid(unsafe_code)]

pub mod config;
pub mod diag;
pub mod executor;
pub mod rep;
