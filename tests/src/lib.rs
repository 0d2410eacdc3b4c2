//! End-to-end tests of the whole platform live here as the parts arrive.
#![forbid(unsafe_code)]
