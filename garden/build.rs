//! Links `garden-runc` as a position-dependent executable: it is started
//! several times per container (create, its sealed re-exec, start, delete),
//! and a PIE spends a third of a millisecond on every start applying
//! relocations that a fixed-address binary has resolved at link time.
fn main() {
    println!("cargo:rustc-link-arg-bin=garden-runc=-no-pie");
}
