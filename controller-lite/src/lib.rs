//! controller-lite: the Cloud Foundry v3 API, database, blobstore, staging
//! orchestration, auctioneer and convergence.
//!
//! Built in its own issue; this crate holds the place in the workspace until then.
#![forbid(unsafe_code)]
