//! `cfl`: the developer CLI for controller-lite, speaking the Cloud Foundry
//! v3 API (login, target, push, apps, logs, scale, tasks, routes,
//! buildpacks, stacks). See `docs/cfl.md`.
#![forbid(unsafe_code)]

pub mod bits;
pub mod client;
pub mod commands;
pub mod config;
pub mod logs;
pub mod manifest;
pub mod push;
