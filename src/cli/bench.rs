use mamba_rt::cpu::CpuKernels;
use mamba_rt::{Error, LoadedModel, Result, Session};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF file or HF checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt tokens processed as one prefill (0 to skip).
    #[arg(long, default_value_t = 512)]
    pub prompt: usize,
    /// Tokens decoded one step at a time (0 to skip).
    #[arg(long = "gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Worker threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Compute backend.
    #[arg(long, default_value = "cpu", value_parser = ["cpu"])]
    pub backend: String,
    /// Repetitions; the median of each figure is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub fn run(a: Args) -> Result<()> {
    if a.backend != "cpu" {
        return Err(Error::Invalid(format!("unknown backend '{}'", a.backend)));
    }
    let m = LoadedModel::open(&a.model)?;
    let k = CpuKernels::from_env(a.threads)?;
    let c = *m.config();
    let v = c.vocab_size;
    // Deterministic pseudo-random token ids, like llama-bench's random prompt.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % v as u64) as u32
    };
    let prompt: Vec<u32> = (0..a.prompt).map(|_| next()).collect();
    let gen_ids: Vec<u32> = (0..a.n_gen.max(1)).map(|_| next()).collect();
    let mut logits = vec![0f32; v];
    let reps = a.reps.max(1);
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    let mut s = Session::new(&m);
    // One untimed warm-up of each phase (page faults of the mapping, pool start-up).
    if a.prompt > 0 {
        s.prefill_tokens(&k, &prompt[..a.prompt.min(16)], &mut logits)?;
    }
    s.step_token(&k, gen_ids[0], &mut logits)?;
    for _ in 0..reps {
        s.reset();
        if a.prompt > 0 {
            let t0 = Instant::now();
            s.prefill_tokens(&k, &prompt, &mut logits)?;
            pp.push(a.prompt as f64 / t0.elapsed().as_secs_f64());
        }
        if a.n_gen > 0 {
            let t0 = Instant::now();
            for &t in &gen_ids[..a.n_gen] {
                s.step_token(&k, t, &mut logits)?;
            }
            tg.push(a.n_gen as f64 / t0.elapsed().as_secs_f64());
        }
    }
    let (pp, tg) = (median(&mut pp), median(&mut tg));
    // Every weight matrix is read once per decoded token (the head once more only when
    // untied; the embedding row is negligible).
    let view = m.view();
    let mut bytes = view.head().data.len();
    for l in view.layers() {
        for t in [&l.in_proj, &l.x_proj, &l.dt_proj, &l.out_proj] {
            bytes += t.nbytes;
        }
    }
    let gbs = bytes as f64 * tg / 1e9;
    let types: std::collections::BTreeSet<&str> = view
        .layers()
        .iter()
        .flat_map(|l| {
            [
                l.in_proj.dtype,
                l.x_proj.dtype,
                l.dt_proj.dtype,
                l.out_proj.dtype,
            ]
        })
        .chain([view.head().dtype])
        .map(|d| d.name())
        .collect();
    let types: Vec<&str> = types.into_iter().collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": m.source,
                "backend": "cpu",
                "kernels": k.isa().name(),
                "threads": k.threads(),
                "weight_types": types,
                "prompt_tokens": a.prompt,
                "gen_tokens": a.n_gen,
                "reps": reps,
                "prompt_tok_s": pp,
                "decode_tok_s": tg,
                "weight_bytes_per_token": bytes,
                "decode_gb_s": gbs,
            })
        );
    } else {
        println!(
            "model {} ({}), cpu/{} x{} threads, median of {reps}",
            m.source,
            types.join("+"),
            k.isa().name(),
            k.threads()
        );
        if a.prompt > 0 {
            println!("prompt  pp{:<5} {pp:9.1} tok/s", a.prompt);
        }
        if a.n_gen > 0 {
            println!("decode  tg{:<5} {tg:9.1} tok/s", a.n_gen);
        }
        println!(
            "weights read per decoded token: {:.1} MB -> {gbs:.1} GB/s",
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
