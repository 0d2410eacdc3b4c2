//! gardenctl: a command line for the Garden API (work in progress).
#![forbid(unsafe_code)]

fn main() {
    eprintln!("gardenctl: not implemented yet");
    std::process::exit(2);
}
