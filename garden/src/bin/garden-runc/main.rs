//! `garden-runc`: garden's OCI runtime behind runc's command line, so tools
//! that drive runc (containerd shims, conformance suites, scripts) can drive
//! it unchanged.

mod cli;
mod exec;
mod log;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Verbs whose processes enter containers run from a sealed copy of the
    // binary (CVE-2019-5736 class); see `sealed_exe`. Before logging is set
    // up, which the re-executed process does again anyway.
    let sealed = if args.command.enters_container() {
        garden::runtime::sealed_exe::reexec_sealed()
    } else {
        Ok(())
    };
    let _guard = log::init(&args.global);
    if let Err(e) = sealed {
        log::error(&e.into());
        return ExitCode::from(1);
    }
    match cli::dispatch(args) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            log::error(&e);
            ExitCode::from(1)
        }
    }
}
