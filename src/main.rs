//! The `atrium` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

// The gateway's request path allocates per request inside pingora; glibc malloc showed up as
// about a tenth of its CPU profile, mimalloc is markedly cheaper for this pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = atrium::cli::Cli::parse();
    match atrium::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be up (or may be JSON), so the final error goes to stderr plainly.
            // Every error's message already includes its cause.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
