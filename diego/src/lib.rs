//! Diego's model shared by the controller (BBS, auctioneer, convergence) and
//! the cell agent (rep and executor): LRP and Task records, the recipes a
//! cell runs, and the pure placement and convergence logic.
//!
//! Nothing here does I/O or reads the clock on its own: every function that
//! needs the time takes `now`, so tests drive it.
#![forbid(unsafe_code)]

pub mod auction;
pub mod backoff;
pub mod convergence;
pub mod models;
pub mod rep;
