use super::common::default_model_path;
use mamba_core::SamplingParams;
use mamba_rt::cpu::CpuKernels;
use mamba_rt::generate::generate;
use mamba_rt::tokenizer::TextCodec;
use mamba_rt::{Error, LoadedModel, Result, Session};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The prompt. Generation continues this text. Empty: start from a newline
    /// (byte models) or the BOS token (BPE models).
    pub prompt: Option<String>,
    /// GGUF file or HF checkpoint folder; default: the shipped model (models/default-q8_0.gguf).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample from the k most likely tokens; 0 = all.
    #[arg(long, default_value_t = 40)]
    pub top_k: u32,
    /// Sample from the smallest set of tokens whose probability reaches p; 1 = all.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Penalty for tokens among the last 64; 1 = none.
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not echo the prompt before the generated text.
    #[arg(long)]
    pub no_echo: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = match &a.model {
        Some(p) => p.clone(),
        None => default_model_path()?,
    };
    let model = LoadedModel::open(&path)?;
    let codec = TextCodec::for_model(&model, &path)?;
    let prompt_text = a.prompt.clone().unwrap_or_default();
    let mut prompt = codec.encode(&prompt_text)?;
    if prompt.is_empty() {
        prompt.push(match &codec {
            TextCodec::Bytes => b'\n' as u32,
            TextCodec::Bpe(_) => model
                .gguf()
                .get_uint("tokenizer.ggml.bos_token_id")
                .unwrap_or(0) as u32,
        });
    }
    let params = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: 64,
        seed: a.seed,
    };
    params.validate()?;
    let k = CpuKernels::new(a.threads);
    let mut session = Session::new(&model);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| Error::Invalid(format!("writing to stdout: {e}"));
    if !a.no_echo {
        out.write_all(prompt_text.as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
    }
    // BPE pieces may split UTF-8 characters: decode the whole generated run and print
    // what is new each time.
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let mut write_err = None;
    let (stats, _) = generate(&mut session, &k, &prompt, &params, a.max_tokens, |tok| {
        let r = match &codec {
            TextCodec::Bytes => out.write_all(&[tok as u8]).and_then(|_| out.flush()),
            TextCodec::Bpe(_) => {
                generated.push(tok);
                match codec.decode(&generated) {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        let stable = text.trim_end_matches('\u{fffd}');
                        let new = stable.get(printed..).unwrap_or("");
                        printed = stable.len().max(printed);
                        out.write_all(new.as_bytes()).and_then(|_| out.flush())
                    }
                    Err(_) => Ok(()),
                }
            }
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = write_err {
        // A closed pipe (e.g. `| head`) is a normal way to stop.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(io(e));
        }
    }
    let _ = writeln!(out);
    eprintln!(
        "[{} prompt tokens in {:.3} s ({:.1} tok/s); {} generated in {:.3} s ({:.1} tok/s)]",
        stats.prompt_tokens,
        stats.prompt_secs,
        stats.prompt_tokens as f64 / stats.prompt_secs.max(1e-9),
        stats.generated,
        stats.gen_secs,
        stats.generated as f64 / stats.gen_secs.max(1e-9)
    );
    Ok(())
}
