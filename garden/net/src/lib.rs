//! Container networking for gardend (Garden's "kawasaki"): a bridge per
//! subnet, a veth pair per container with `eth0` inside, isolation and
//! NetIn/NetOut in one nftables table changed in batched transactions, and
//! state that survives a daemon restart.
//!
//! The daemon holds one [`Network`] and calls, per container:
//!
//! | when | call |
//! |---|---|
//! | start | [`Network::open`] (rebuilds the table from the state directory), then [`Network::restore`] with the live handles |
//! | create, once the container's init pid is known | [`Network::attach`] with [`Netns::Pid`] and an [`AttachRequest`] from the spec; write [`Network::hosts_file`] and [`Network::resolv_conf`] into the rootfs |
//! | NetIn / NetOut | [`Network::net_in`], [`Network::net_out`] |
//! | Info | [`Network::attachment`] (`ContainerIP`, `HostIP` = gateway, `MappedPorts`), [`Network::external_ip`] |
//! | Metrics | [`Network::stats`] |
//! | destroy | [`Network::detach`] (idempotent) |
//!
//! See `docs/networking.md` for the packet paths and the rules.

#![deny(unsafe_code)]

pub mod alloc;
mod attach;
mod bridges;
pub mod config;
pub mod files;
pub mod link;
pub mod netns;
mod network;
pub mod nft;
pub mod rules;
pub mod shaping;
pub mod state;
#[allow(unsafe_code)]
mod sys;

pub use attach::AttachRequest;
pub use config::NetConfig;
pub use netns::Netns;
pub use network::{Attachment, NetError, NetStats, Network, OpenReport, Usage};
