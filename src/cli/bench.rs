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
    /// Compute backend. `cuda`: the prompt is the whole-model GPU prefill of
    /// `--batch` sequences of `--prompt` tokens, timed with CUDA events (median of
    /// `--reps` after a warm-up); decode is `--streams` streams stepped together
    /// through the GPU decoder (CUDA graphs on, weights as `--weights`), each of
    /// `--gen` steps timed with CUDA events after a warm-up, the median reported:
    /// tokens/s of all streams, ms per step, and the bytes a step must read
    /// (weights once + every stream's state read and written) with the GB/s that
    /// implies. Needs a CUDA GPU: without one it fails with an error.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub backend: String,
    /// Decode streams stepped together by `--backend cuda` (`cpu` runs 1).
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Weight type of the `--backend cuda` decoder: stored (each matrix as in the
    /// file), f32, f16, bf16, q8_0 or q4_0 (ignored by the prompt, which uses
    /// `--gemm`; not accepted by `cpu`).
    #[arg(long, value_parser = ["stored", "f32", "f16", "bf16", "q8_0", "q4_0"])]
    pub weights: Option<String>,
    /// GEMM precision of `--backend cuda`: f32, tf32, f16 or bf16 (ignored by `cpu`).
    #[arg(long, default_value = "bf16", value_parser = ["f32", "tf32", "f16", "bf16"])]
    pub gemm: String,
    /// Sequences prefilled at once by `--backend cuda` (`cpu` runs 1).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// GPU ordinal for `--backend cuda`.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
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

/// Deterministic pseudo-random token ids below `v`, like llama-bench's random prompt.
fn token_stream(v: usize) -> impl FnMut() -> u32 {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % v as u64) as u32
    }
}

/// Bytes of weights a decoded token reads, and the weight types (sorted names).
fn weight_stats(m: &LoadedModel) -> (usize, Vec<&'static str>) {
    // Every weight matrix is read once per decoded token (the head once more only when
    // untied; the embedding row is negligible).
    let view = m.view();
    let mut bytes = view.head().data.len();
    for l in view.layers() {
        for t in [&l.in_proj, &l.x_proj, &l.dt_proj, &l.out_proj] {
            bytes += t.nbytes;
        }
    }
    let types: std::collections::BTreeSet<&'static str> = view
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
    (bytes, types.into_iter().collect())
}

pub fn run(a: Args) -> Result<()> {
    if a.batch == 0 {
        return Err(Error::Invalid("--batch must be at least 1".into()));
    }
    if a.streams == 0 || a.streams > 65535 {
        return Err(Error::Invalid(format!(
            "--streams is {}, must be 1..=65535",
            a.streams
        )));
    }
    match a.backend.as_str() {
        "cpu" => {}
        "cuda" => return run_cuda(&a),
        b => return Err(Error::Invalid(format!("unknown backend '{b}'"))),
    }
    if a.batch != 1 {
        return Err(Error::Invalid(
            "--batch applies to --backend cuda only (the CPU bench runs one stream)".into(),
        ));
    }
    if a.streams != 1 || a.weights.is_some() {
        return Err(Error::Invalid(
            "--streams and --weights apply to --backend cuda only (the CPU bench runs one \
             stream on the model's own weights)"
                .into(),
        ));
    }
    let m = LoadedModel::open(&a.model)?;
    let k = CpuKernels::from_env(a.threads)?;
    let c = *m.config();
    let v = c.vocab_size;
    let mut next = token_stream(v);
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
    let (bytes, types) = weight_stats(&m);
    let gbs = bytes as f64 * tg / 1e9;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": m.source,
                "backend": "cpu",
                "gemm": null,
                "batch": 1,
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

/// Decode figures of `--backend cuda`.
#[cfg(feature = "cuda")]
struct GpuDecode {
    weights: &'static str,
    ms_per_step: f64,
    tok_s: f64,
    step_bytes: u64,
    weight_bytes: u64,
    state_bytes: u64,
    gb_s: f64,
    graphs: bool,
    note: Option<String>,
}

/// `--backend cuda`: the whole-model GPU prefill of `batch` x `prompt` tokens (only
/// the last position's logits, as a prompt needs), timed with CUDA events around
/// each forward, median of `reps` after a warm-up; then `streams` streams decoded
/// together through `GpuDecoder` (CUDA graphs on), each of `n_gen` steps timed
/// with CUDA events after a warm-up (the graph capture included), median.
#[cfg(feature = "cuda")]
fn run_cuda(a: &Args) -> Result<()> {
    use mamba_cuda::{
        DecodeOptions, DecodeWeights, GemmPrecision, GpuContext, GpuDecoder, GpuModel,
        LogitsWanted, PrefillRun,
    };
    let gpu_err = |e: mamba_cuda::GpuError| Error::Invalid(format!("cuda backend: {e}"));
    let precision = GemmPrecision::from_name(&a.gemm)
        .ok_or_else(|| Error::Invalid(format!("unknown --gemm '{}'", a.gemm)))?;
    let wname = a.weights.as_deref().unwrap_or("stored");
    let weights = DecodeWeights::from_name(wname)
        .ok_or_else(|| Error::Invalid(format!("unknown --weights '{wname}'")))?;
    // Opened first: a machine without a GPU fails here, cleanly, before the model is read.
    let ctx = GpuContext::new(a.gpu).map_err(gpu_err)?;
    let m = LoadedModel::open(&a.model)?;
    let v = m.config().vocab_size;
    let reps = a.reps.max(1);
    let mut pp = Vec::new();
    if a.prompt > 0 {
        let gm = GpuModel::upload(&ctx, &m.view(), precision).map_err(gpu_err)?;
        let mut next = token_stream(v);
        let tokens: Vec<u32> = (0..a.batch * a.prompt).map(|_| next()).collect();
        let mut run =
            PrefillRun::new(&gm, a.batch, a.prompt, LogitsWanted::Last).map_err(gpu_err)?;
        run.set_tokens(&tokens).map_err(gpu_err)?;
        run.reset_state();
        // Warm-up: kernel compilation and loading, cuBLAS heuristics, allocations.
        for _ in 0..2 {
            run.forward().map_err(gpu_err)?;
        }
        ctx.synchronize().map_err(gpu_err)?;
        for _ in 0..reps {
            let ms = ctx.time_ms(|| run.forward()).map_err(gpu_err)?;
            pp.push((a.batch * a.prompt) as f64 / (ms as f64 / 1e3));
        }
        let logits = run.logits().map_err(gpu_err)?;
        if logits.iter().any(|x| !x.is_finite()) {
            return Err(Error::Invalid(
                "cuda backend: the prefill gave non-finite logits".into(),
            ));
        }
    }
    let pp = median(&mut pp);
    let decode = if a.n_gen > 0 {
        let b = a.streams;
        let opts = DecodeOptions {
            weights,
            max_slots: b,
            graphs: true,
            ..DecodeOptions::default()
        };
        let mut dec = GpuDecoder::new(&ctx, &m.view(), opts).map_err(gpu_err)?;
        let mut pairs = Vec::with_capacity(b);
        for _ in 0..b {
            pairs.push((dec.alloc_slot().map_err(gpu_err)?, 0u32));
        }
        let mut next = token_stream(v);
        let mut feed = |pairs: &mut [(u32, u32)]| {
            for p in pairs.iter_mut() {
                p.1 = next();
            }
        };
        // Warm-up: the first step of a batch size runs plainly, the second is
        // captured into a graph, later ones replay it.
        for _ in 0..5 {
            feed(&mut pairs);
            dec.step_tokens(&pairs).map_err(gpu_err)?;
        }
        ctx.synchronize().map_err(gpu_err)?;
        let mut ms = Vec::with_capacity(a.n_gen);
        for _ in 0..a.n_gen {
            feed(&mut pairs);
            let t = ctx.time_ms(|| dec.step_tokens(&pairs)).map_err(gpu_err)?;
            ms.push(t as f64);
        }
        if dec
            .logits()
            .map_err(gpu_err)?
            .iter()
            .any(|x| !x.is_finite())
        {
            return Err(Error::Invalid(
                "cuda backend: the decoder gave non-finite logits".into(),
            ));
        }
        let ms = median(&mut ms);
        let (wb, sb) = dec.step_bytes(b);
        let secs = ms / 1e3;
        Some(GpuDecode {
            weights: weights.name(),
            ms_per_step: ms,
            tok_s: b as f64 / secs,
            step_bytes: wb + sb,
            weight_bytes: wb,
            state_bytes: sb,
            gb_s: (wb + sb) as f64 / secs / 1e9,
            graphs: dec.graphs_enabled(),
            note: dec.fallback_note().map(str::to_string),
        })
    } else {
        None
    };
    let (bytes, types) = weight_stats(&m);
    let d = decode.as_ref();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": m.source,
                "backend": "cuda",
                "gemm": precision.name(),
                "batch": a.batch,
                "device": ctx.device_name(),
                "kernels": null,
                "threads": null,
                "weight_types": types,
                "prompt_tokens": a.prompt,
                "gen_tokens": a.n_gen,
                "reps": reps,
                "prompt_tok_s": pp,
                "decode_tok_s": d.map(|d| d.tok_s),
                "weight_bytes_per_token": bytes,
                "decode_gb_s": d.map(|d| d.gb_s),
                "streams": a.streams,
                "weights": d.map(|d| d.weights),
                "ms_per_step": d.map(|d| d.ms_per_step),
                "step_bytes": d.map(|d| d.step_bytes),
                "step_weight_bytes": d.map(|d| d.weight_bytes),
                "step_state_bytes": d.map(|d| d.state_bytes),
                "cuda_graphs": d.map(|d| d.graphs),
                "decode_note": d.and_then(|d| d.note.clone()),
            })
        );
    } else {
        println!(
            "model {} ({}), cuda/{} gemm {} batch {}, median of {reps}",
            m.source,
            types.join("+"),
            ctx.device_name(),
            precision.name(),
            a.batch
        );
        if a.prompt > 0 {
            let label = if a.batch > 1 {
                format!("{}x{}", a.batch, a.prompt)
            } else {
                a.prompt.to_string()
            };
            println!("prompt  pp{label:<5} {pp:9.1} tok/s");
        }
        if let Some(d) = d {
            println!(
                "decode  {} streams x tg{} ({} weights, graphs {}): {:.4} ms/step (median), {:.1} tok/s",
                a.streams,
                a.n_gen,
                d.weights,
                if d.graphs { "on" } else { "off" },
                d.ms_per_step,
                d.tok_s
            );
            println!(
                "bytes read per step: {:.1} MB weights + {:.1} MB states = {:.1} MB -> {:.1} GB/s",
                d.weight_bytes as f64 / 1e6,
                d.state_bytes as f64 / 1e6,
                d.step_bytes as f64 / 1e6,
                d.gb_s
            );
            if let Some(n) = &d.note {
                println!("note: {n}");
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_: &Args) -> Result<()> {
    Err(Error::Invalid(
        "this mamba-cli was built without the `cuda` feature".into(),
    ))
}
