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
    let mut out = vec![0f32; tokens.len() * v];
    let mut s = Session::new(&m);
    // Until the chunked prefill exists, both modes run the recurrent step.
    for (t, row) in tokens.iter().zip(out.chunks_exact_mut(v)) {
        s.step_token(&mamba_core::Scalar, *t, row)?;
    }
    super::write_f32_file(&a.out, &out)
}
