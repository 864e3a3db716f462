use mamba_core::DType;
use mamba_rt::cpu::random_model::{random_model, shape_130m};
use mamba_rt::error::io_err;
use mamba_rt::{Error, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output GGUF file.
    #[arg(long)]
    pub out: PathBuf,
    /// Type of the 2-D projection and embedding weights: f32, f16, bf16, q8_0 or q4_0.
    #[arg(long = "type", default_value = "f32")]
    pub dtype: String,
    /// Seed of the weights (the same seed gives the same values before encoding).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// D (hidden size).
    #[arg(long, default_value_t = 768)]
    pub d_model: usize,
    /// Number of blocks.
    #[arg(long, default_value_t = 24)]
    pub n_layer: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 50280)]
    pub vocab: usize,
    /// N (SSM state size).
    #[arg(long, default_value_t = 16)]
    pub d_state: usize,
    /// K (conv width).
    #[arg(long, default_value_t = 4)]
    pub d_conv: usize,
    /// E (inner size).
    #[arg(long, default_value_t = 1536)]
    pub d_inner: usize,
    /// R (dt rank).
    #[arg(long, default_value_t = 48)]
    pub dt_rank: usize,
}

pub fn run(a: Args) -> Result<()> {
    let dtype = DType::from_name(&a.dtype).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown --type '{}' (f32, f16, bf16, q8_0, q4_0)",
            a.dtype
        ))
    })?;
    let mut c = shape_130m();
    c.d_model = a.d_model;
    c.n_layer = a.n_layer;
    c.vocab_size = a.vocab;
    c.d_state = a.d_state;
    c.d_conv = a.d_conv;
    c.d_inner = a.d_inner;
    c.dt_rank = a.dt_rank;
    c.validate().map_err(|e| Error::Invalid(e.to_string()))?;
    let w = random_model(&c, dtype, a.seed);
    let tmp = a.out.with_extension("gguf.tmp");
    {
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut bw = std::io::BufWriter::new(f);
        w.write_to(&mut bw).map_err(io_err(&tmp))?;
        bw.flush().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &a.out).map_err(io_err(&a.out))?;
    eprintln!("wrote {} ({})", a.out.display(), dtype.name());
    Ok(())
}
