//! Links `garden-runc` lean: it is started several times per container
//! (create, its sealed re-exec, start, delete), so its start-up time counts.
//! - position-dependent: a PIE spends a third of a millisecond on every
//!   start applying relocations a fixed-address binary resolved at link time;
//! - stripped: 5 MB instead of 29 MB to map (other binaries and
//!   the tests keep their line tables for backtraces).
fn main() {
    println!("cargo:rustc-link-arg-bin=garden-runc=-no-pie");
    println!("cargo:rustc-link-arg-bin=garden-runc=-Wl,--strip-all");
}
