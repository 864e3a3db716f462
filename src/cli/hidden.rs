use mamba_rt::cpu::CpuKernels;
use mamba_rt::error::io_err;
use mamba_rt::{Error, LoadedModel, Result, Session};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or HF checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Input: T x D little-endian f32 vectors.
    #[arg(long)]
    pub embeds: PathBuf,
    /// Output: T x D little-endian f32 final hidden states (after norm_f).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let m = LoadedModel::open(&a.model)?;
    let d = m.config().d_model;
    let bytes = std::fs::read(&a.embeds).map_err(io_err(&a.embeds))?;
    if bytes.is_empty() || bytes.len() % (4 * d) != 0 {
        return Err(Error::Invalid(format!(
            "{}: {} bytes is not a whole number of {d}-float vectors",
            a.embeds.display(),
            bytes.len()
        )));
    }
    let x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut out = vec![0f32; x.len()];
    let mut s = Session::new(&m);
    let k = CpuKernels::from_env(0)?;
    for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        s.step_embedding(&k, xi, oi)?;
    }
    super::write_f32_file(&a.out, &out)
}
