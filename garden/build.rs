//! Links `garden-runc` stripped (5 MB instead of 29 MB to map): it is
//! started several times per container, so its start-up time counts. Other
//! binaries and the tests keep their line tables for backtraces. Static,
//! position-dependent linking comes from `.cargo/config.toml`.
fn main() {
    println!("cargo:rustc-link-arg-bin=garden-runc=-Wl,--strip-all");
}
