//! Whole-model GPU prefill, timed with CUDA events (median of many runs after
//! a warm-up): 2048 tokens at batch 1, 16384 at batch 1 and 8 x 2048, with
//! only the last position's logits (the head GEMM of a prompt prefill),
//! against mamba_ssm's whole-model anchors on the H200 (MAMBA_SPEC.md) and
//! the targets.
//!
//! `cargo bench -p mamba-cuda --bench prefill -- MODEL.gguf [--runs N] [--gemm bf16,f16,...]`
//! (a random 130m-shaped model: `mamba-cli random-model --out m130.gguf --type f16`).

use mamba_core::{Gguf, LayerWeights, Model, ModelLayout};
use mamba_cuda::{GemmPrecision, GpuContext, GpuError, GpuModel, LogitsWanted, PrefillRun};

/// (batch, L, mamba_ssm tokens/s, target tokens/s or 0).
const SHAPES: [(usize, usize, f64, f64); 3] = [
    (1, 2048, 210_000.0, 400_000.0),
    (1, 16384, 385_000.0, 700_000.0),
    (8, 2048, 404_000.0, 0.0),
];

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

fn time_run(
    gpu: &GpuContext,
    gm: &GpuModel<'_>,
    batch: usize,
    len: usize,
    wanted: LogitsWanted,
    runs: usize,
) -> Result<(f32, String), GpuError> {
    let v = gm.config().vocab_size;
    let toks: Vec<u32> = (0..batch * len)
        .map(|i| ((i * 7919 + 13) % v) as u32)
        .collect();
    let mut run = PrefillRun::new(gm, batch, len, wanted)?;
    run.set_tokens(&toks)?;
    for _ in 0..3 {
        run.forward()?;
    }
    gpu.synchronize()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        ms.push(gpu.time_ms(|| run.forward())?);
    }
    // One profiled pass (an event after every stage; launch gaps show up
    // in it, so its total exceeds the timed median a little).
    run.forward_profiled()?;
    let stages = run.forward_profiled()?;
    let total: f32 = stages.iter().map(|s| s.1).sum();
    let breakdown = stages
        .iter()
        .map(|(n, ms)| format!("{n} {ms:.3} ({:.0}%)", 100.0 * ms / total))
        .collect::<Vec<_>>()
        .join(", ");
    let logits = run.logits()?;
    if logits.iter().any(|x| !x.is_finite()) {
        return Err(GpuError::InvalidArgument("non-finite logits".into()));
    }
    Ok((median(ms), breakdown))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let mut runs = 20;
    let mut gemms = vec![GemmPrecision::Bf16, GemmPrecision::F16];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                i += 1;
                runs = args[i].parse().expect("--runs N");
            }
            "--gemm" => {
                i += 1;
                gemms = args[i]
                    .split(',')
                    .map(|s| GemmPrecision::from_name(s).expect("--gemm f32,tf32,f16,bf16"))
                    .collect();
            }
            "--bench" => {}
            a if !a.starts_with('-') => path = Some(a.to_string()),
            a => panic!("unknown argument {a}"),
        }
        i += 1;
    }
    let Some(path) = path.or_else(|| std::env::var("MAMBA_BENCH_MODEL").ok()) else {
        eprintln!("usage: prefill MODEL.gguf [--runs N] [--gemm bf16,f16]; skipping");
        return;
    };
    if let Err(why) = GpuContext::is_available() {
        eprintln!("skipping: no GPU ({})", why.reason());
        return;
    }
    let bytes = std::fs::read(&path).expect("read the model");
    // Model::new wants 4-byte aligned bytes.
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let data = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    let g = Gguf::parse(data).expect("parse GGUF");
    let n_layer = mamba_core::weights::config_from_gguf(&g)
        .expect("config")
        .n_layer;
    let mut layers = vec![LayerWeights::EMPTY; n_layer];
    let layout = ModelLayout::from_gguf(&g, &mut layers).expect("layout");
    let model = Model::new(data, &layout, &layers).expect("model");
    let c = model.config();
    let gpu = GpuContext::new(0).expect("GPU");
    println!(
        "{} | model {path}: D {} E {} N {} layers {} V {}, weights {:?} | median of {runs} runs",
        gpu.device_name(),
        c.d_model,
        c.d_inner,
        c.d_state,
        c.n_layer,
        c.vocab_size,
        model.matrix(&layers[0].in_proj).dtype
    );
    println!(
        "| gemm | batch x L | logits | ms | tokens/s | mamba_ssm tokens/s | x mamba_ssm | target | met |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for &p in &gemms {
        let gm = GpuModel::upload(&gpu, &model, p).expect("upload");
        for &(b, l, anchor, target) in &SHAPES {
            for wanted in [LogitsWanted::Last, LogitsWanted::All] {
                // All positions' logits only for the short batch-1 shape
                // (16384 x V f32 logits are 3.3 GB).
                if wanted == LogitsWanted::All && (b, l) != (1, 2048) {
                    continue;
                }
                match time_run(&gpu, &gm, b, l, wanted, runs) {
                    Ok((ms, breakdown)) => {
                        notes.push(format!("{} {b}x{l} {wanted:?}: {breakdown}", p.name()));
                        let tps = (b * l) as f64 / (ms as f64 / 1e3);
                        let met = if target == 0.0 {
                            "-".to_string()
                        } else if tps >= target {
                            "yes".to_string()
                        } else {
                            "no".to_string()
                        };
                        println!(
                            "| {} | {b} x {l} | {} | {ms:.3} | {tps:.0} | {anchor:.0} | {:.2} | {} | {met} |",
                            p.name(),
                            if wanted == LogitsWanted::Last {
                                "last"
                            } else {
                                "all"
                            },
                            tps / anchor,
                            if target > 0.0 {
                                format!("{target:.0}")
                            } else {
                                "-".into()
                            },
                        );
                    }
                    Err(e) => println!("| {} | {b} x {l} | error: {e} |", p.name()),
                }
            }
        }
    }
    println!("\nStage times of one profiled pass (ms, summed over layers):");
    for n in notes {
        println!("  {n}");
    }
}
