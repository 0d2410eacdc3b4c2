//! The cell agent: Diego's rep and executor for one host.
//!
//! Presence, capacity and auction bids, and running Tasks and LRPs in garden
//! containers, arrive with their own issue; this crate holds the place in the
//! workspace until then.
#![forbid(unsafe_code)]
