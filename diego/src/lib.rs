//! Diego's model shared by the controller (BBS, auctioneer, convergence) and
//! the cell agent (rep and executor): LRP and Task records, the recipes a
//! cell runs, and the pure placement and convergence logic.
#![forbid(unsafe_code)]

pub mod models;
