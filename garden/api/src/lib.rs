//! garden's wire types, Backend trait, HTTP server and client.
//!
//! The Garden HTTP API (Cloud Foundry's container API) as `docs/garden-api.md`
//! describes it: [`types`] are its JSON bodies, [`Backend`] is what the
//! server serves, [`server`] speaks the protocol on a unix socket and TCP,
//! [`client`] talks to this server or to a real Garden.
#![forbid(unsafe_code)]

pub mod backend;
pub mod client;
pub mod error;
pub mod http1;
pub mod routes;
pub mod server;
pub mod types;

pub use backend::{Backend, ByteStream, Process, ProcessIo, StreamInSpec, StreamOutSpec};
pub use error::{Error, ErrorKind};
