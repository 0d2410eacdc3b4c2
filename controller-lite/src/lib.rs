//! controller-lite: the Cloud Foundry v3 API server (with a UAA-compatible
//! token endpoint and log-cache's read API), its SQLite data layer, the
//! blobstore, and staging orchestration behind a [`scheduler::Scheduler`]
//! hand-off that the BBS/auctioneer of a later issue implements.
//!
//! Layout: [`api`] (HTTP, one module per resource; errors become CF error
//! JSON in `api::error`), [`db`] (all SQL), [`blobstore`], [`packaging`]
//! (resource matching, zip assembly), [`staging`] (builds, completion,
//! timeout), [`lrps`] (apps → desired LRPs), [`scheduler`] (the hand-off),
//! [`manifest`], [`auth`], [`cells`] (internal API credentials), [`logcache`], [`config`], [`server`], [`tls`],
//! [`bbs`] (Diego's BBS, auctioneer and convergence) and [`recipes`] (work as Diego recipes).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bbs;
pub mod blobstore;
pub mod cells;
pub mod config;
pub mod db;
pub mod lifecycles;
pub mod logcache;
pub mod lrps;
pub mod manifest;
pub mod packaging;
pub mod recipes;
pub mod scheduler;
pub mod server;
pub mod staging;
pub mod states;
pub mod tls;
