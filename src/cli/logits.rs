use mamba_rt::cpu::CpuKernels;
use mamba_rt::{Error, LoadedModel, Result, Session};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or HF checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Comma-separated token ids, e.g. 5,17,3.
    #[arg(long)]
    pub tokens: String,
    /// Output file: T x V little-endian f32, row t = logits after input position t.
    #[arg(long)]
    pub out: PathBuf,
    /// `step` feeds one token at a time; `prefill` the whole sequence at once.
    #[arg(long, default_value = "step", value_parser = ["step", "prefill"])]
    pub mode: String,
    /// `cpu`, or `cuda`: the whole-model GPU prefill (with `--mode prefill`).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub backend: String,
    /// GEMM precision of `--backend cuda`: f32 (exact), tf32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "tf32", "f16", "bf16"])]
    pub gemm: String,
}

pub fn parse_tokens(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| Error::Invalid(format!("bad token id '{t}' in --tokens")))
        })
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    let tokens = parse_tokens(&a.tokens)?;
    if tokens.is_empty() {
        return Err(Error::Invalid("--tokens is empty".into()));
    }
    let m = LoadedModel::open(&a.model)?;
    let v = m.config().vocab_size;
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
        return Err(Error::Invalid(format!(
            "token id {bad} out of range (vocabulary {v})"
        )));
    }
    if a.backend == "cuda" {
        return run_cuda(&a, &m, &tokens);
    }
    let mut out = vec![0f32; tokens.len() * v];
    let mut s = Session::new(&m);
    // Every core, on the path MAMBA_KERNELS forces or the best this CPU runs.
    let k = CpuKernels::from_env(0)?;
    if a.mode == "prefill" {
        s.prefill_tokens_all(&k, &tokens, &mut out)?;
    } else {
        for (t, row) in tokens.iter().zip(out.chunks_exact_mut(v)) {
            s.step_token(&k, *t, row)?;
        }
    }
    super::write_f32_file(&a.out, &out)
}

/// `--backend cuda`: one GPU prefill over the whole sequence, every position's logits.
#[cfg(feature = "cuda")]
fn run_cuda(a: &Args, m: &LoadedModel, tokens: &[u32]) -> Result<()> {
    use mamba_cuda::{GemmPrecision, GpuContext, GpuModel, LogitsWanted};
    if a.mode != "prefill" {
        return Err(Error::Invalid(
            "--backend cuda runs --mode prefill only".into(),
        ));
    }
    let gpu_err = |e: mamba_cuda::GpuError| Error::Invalid(format!("cuda backend: {e}"));
    let precision = GemmPrecision::from_name(&a.gemm)
        .ok_or_else(|| Error::Invalid(format!("unknown --gemm '{}'", a.gemm)))?;
    let ctx = GpuContext::new(0).map_err(gpu_err)?;
    let gm = GpuModel::upload(&ctx, &m.view(), precision).map_err(gpu_err)?;
    let (out, _state) = gm
        .prefill(tokens, 1, None, LogitsWanted::All)
        .map_err(gpu_err)?;
    super::write_f32_file(&a.out, &out)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_: &Args, _: &LoadedModel, _: &[u32]) -> Result<()> {
    Err(Error::Invalid(
        "this mamba-cli was built without the `cuda` feature".into(),
    ))
}
