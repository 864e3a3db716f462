//! `mamba-cli`: run, inspect, convert and benchmark Mamba models.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mamba-cli: error: {e}");
            ExitCode::FAILURE
        }
    }
}
