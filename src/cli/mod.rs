//! Subcommands of `mamba-cli`, one file each.

mod bench;
mod common;
mod convert;
mod generate;
mod hidden;
mod info;
mod logits;
mod perplexity;
mod random_model;

use clap::{Parser, Subcommand};
use mamba_rt::Result;

/// Mamba (selective state-space model) inference runtime.
///
/// MODEL arguments take a GGUF file (llama.cpp's `mamba` architecture) or a Hugging Face
/// checkpoint folder (config.json + model.safetensors or shards).
#[derive(Parser, Debug)]
#[command(name = "mamba-cli", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a model's shape, tensor types, sizes and metadata.
    Info(info::Args),
    /// Convert a HF checkpoint folder to a GGUF file llama.cpp can load.
    Convert(convert::Args),
    /// Write T x V little-endian f32 logits for a token sequence.
    Logits(logits::Args),
    /// Write T x D little-endian f32 final hidden states for T x D input vectors.
    Hidden(hidden::Args),
    /// Generate text from a prompt, streamed to stdout as it is produced.
    Generate(generate::Args),
    /// Measure perplexity (and bits per byte) of a model on a text file.
    Perplexity(perplexity::Args),
    /// Benchmark prompt processing and decoding speed.
    Bench(bench::Args),
    /// Write a random-weight model (default: mamba-130m's shape) for benchmarks and tests.
    RandomModel(random_model::Args),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Info(a) => info::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Hidden(a) => hidden::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Bench(a) => bench::run(a),
        Command::RandomModel(a) => random_model::run(a),
    }
}

/// Write f32 values little-endian to a file.
pub fn write_f32_file(path: &std::path::Path, vals: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(mamba_rt::error::io_err(path))
}
