//! `resmem`: run WebAssembly components against resizable shared memory, and inspect, verify
//! and clean up memories from the command line.

mod cli;
mod pattern;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("resmem: {e:#}");
            ExitCode::FAILURE
        }
    }
}
