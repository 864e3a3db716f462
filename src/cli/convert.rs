use mamba_core::DType;
use mamba_rt::error::io_err;
use mamba_rt::hf::HfCheckpoint;
use mamba_rt::{Error, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// HF checkpoint folder (config.json + model.safetensors or shards).
    pub hf_dir: PathBuf,
    /// Output GGUF file.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Type of the 2-D projection and embedding weights: f32, f16, bf16, q8_0 or q4_0.
    /// Conv, A, D, norms and biases stay f32; rows that are not a multiple of 32 fall
    /// back to f16 for the quantized types (as llama.cpp does).
    #[arg(long = "type", default_value = "f32")]
    pub dtype: String,
}

pub fn run(a: Args) -> Result<()> {
    let dtype = DType::from_name(&a.dtype).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown --type '{}' (f32, f16, bf16, q8_0, q4_0)",
            a.dtype
        ))
    })?;
    let ck = HfCheckpoint::open(&a.hf_dir)?;
    eprintln!(
        "converting {} -> {} ({})",
        a.hf_dir.display(),
        a.out.display(),
        dtype.name()
    );
    let w = ck.to_gguf(dtype)?;
    // Write to a temporary name and rename, so a failure never leaves half a file.
    let tmp = a.out.with_extension("gguf.tmp");
    {
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut bw = std::io::BufWriter::new(f);
        w.write_to(&mut bw).map_err(io_err(&tmp))?;
        bw.flush().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &a.out).map_err(io_err(&a.out))?;
    let bytes: usize = w.tensors().iter().map(|t| t.data.len()).sum();
    let mut counts = std::collections::BTreeMap::new();
    for t in w.tensors() {
        *counts.entry(t.dtype.name()).or_insert(0usize) += 1;
    }
    eprintln!(
        "wrote {} tensors ({:.2} MiB of data): {:?}",
        w.tensors().len(),
        bytes as f64 / 1048576.0,
        counts
    );
    Ok(())
}
