//! garden's images: where a container's root filesystem comes from.
//!
//! [`Store::pull`] turns an image URI (a local rootfs directory or tarball,
//! an OCI layout, or a registry image) into read-only layer directories for
//! an overlay, unpacked once into a content-addressed store and shared by
//! all containers. [`Store::acquire`] and [`Store::release`] record which
//! container uses which layers, persistently; [`Store::gc`] removes the
//! rest when the store outgrows its cap. See `docs/images.md`.
#![forbid(unsafe_code)]

pub mod digest;
pub mod extract;
pub mod layout;
pub mod manifest;
pub mod mapping;
pub mod reference;
pub mod registry;
pub mod shift;
mod store;

pub use extract::{ExtractError, LayerStats};
pub use manifest::ImageConfig;
pub use mapping::{DevicePolicy, IdMapping};
pub use registry::Credentials;
pub use store::{GcReport, Image, ImageError, Store, StoreConfig, StoreMetrics};
