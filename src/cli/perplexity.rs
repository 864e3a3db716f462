use super::common::{Progress, default_model_path};
use mamba_rt::cpu::CpuKernels;
use mamba_rt::tokenizer::{TextCodec, read_text};
use mamba_rt::{Error, LoadedModel, Result, Session};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or HF checkpoint folder; default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// UTF-8 text to score. The whole file is one stream: Mamba has no context window.
    #[arg(long)]
    pub file: PathBuf,
    /// Score only the first N tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object (perplexity, bits_per_byte, tokens, bytes, nll) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Natural-log probability of `target` under softmax(logits).
pub fn log_prob(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits[target] as f64 - max - sum.ln()
}

pub fn run(a: Args) -> Result<()> {
    let path = match &a.model {
        Some(p) => p.clone(),
        None => default_model_path()?,
    };
    let model = LoadedModel::open(&path)?;
    let codec = TextCodec::for_model(&model, &path)?;
    let text = read_text(&a.file)?;
    let mut tokens = codec.encode(&text)?;
    if a.limit > 0 {
        tokens.truncate(a.limit);
    }
    if tokens.len() < 2 {
        return Err(Error::Invalid(format!(
            "{}: needs at least two tokens of text",
            a.file.display()
        )));
    }
    // Bytes covered by the scored tokens (all but the first, which nothing predicts).
    let scored_bytes = codec.decode(&tokens[1..])?.len();
    let k = CpuKernels::new(a.threads);
    let mut s = Session::new(&model);
    let v = model.config().vocab_size;
    let mut logits = vec![0f32; v];
    let mut nll = 0f64;
    let mut bar = Progress::new("perplexity", tokens.len() - 1);
    let t0 = std::time::Instant::now();
    for i in 0..tokens.len() - 1 {
        s.step_token(&k, tokens[i], &mut logits)?;
        nll -= log_prob(&logits, tokens[i + 1] as usize);
        bar.update(i + 1);
    }
    bar.finish();
    let n = (tokens.len() - 1) as f64;
    let ppl = (nll / n).exp();
    let bpb = nll / std::f64::consts::LN_2 / scored_bytes.max(1) as f64;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": model.source,
                "file": a.file.display().to_string(),
                "tokens": tokens.len() - 1,
                "bytes": scored_bytes,
                "nll": nll,
                "perplexity": ppl,
                "bits_per_byte": bpb,
                "seconds": secs,
            })
        );
    } else {
        println!("tokens scored:  {}", tokens.len() - 1);
        println!("perplexity:     {ppl:.4}");
        println!("bits per byte:  {bpb:.4}");
        eprintln!("[{:.1} s, {:.0} tok/s]", secs, n / secs.max(1e-9));
    }
    Ok(())
}
