//! GPU streaming decode (`GpuDecoder`), timed with CUDA events: the median of
//! many single steps after a warm-up, for each weight type, batch size and
//! graph setting; plus the wall-clock rate of the same steps queued back to
//! back (host overhead included). Prints, per configuration, the bytes a step
//! must read (weights + states, read and written) and the GB/s that implies,
//! and one machine-readable `DECODE ...` line.
//!
//! `cargo bench -p mamba-cuda --bench decode -- MODEL.gguf [--batches 1,64,256]
//!  [--weights f16,q8_0] [--graphs on,off] [--steps N] [--gemm-min-batch N]
//!  [--placement device|host]`
//! (a random 130m-shaped model: `mamba-cli random-model --out m130.gguf --type f16`).

use mamba_core::{Gguf, LayerWeights, Model, ModelLayout};
use mamba_cuda::{DecodeOptions, DecodeWeights, GpuContext, GpuDecoder, GpuError, WeightPlacement};

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// The anchor (mamba_ssm + CUDA graphs, f16) and target, tokens/s.
fn anchor(batch: usize) -> (f64, f64) {
    match batch {
        1 => (815.0, 2_500.0),
        64 => (40_300.0, 80_000.0),
        256 => (111_400.0, 200_000.0),
        _ => (0.0, 0.0),
    }
}

struct Args {
    path: String,
    batches: Vec<usize>,
    weights: Vec<DecodeWeights>,
    graphs: Vec<bool>,
    steps: usize,
    gemm_min_batch: usize,
    placement: WeightPlacement,
}

fn parse() -> Option<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        path: String::new(),
        batches: vec![1, 64, 256],
        weights: vec![DecodeWeights::F16, DecodeWeights::Q8_0],
        graphs: vec![true, false],
        steps: 100,
        gemm_min_batch: DecodeOptions::default().gemm_min_batch,
        placement: WeightPlacement::Device,
    };
    let mut path = None;
    let mut i = 0;
    let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
    while i < args.len() {
        let next = |i: &mut usize| {
            *i += 1;
            args.get(*i).cloned().expect("missing value")
        };
        match args[i].as_str() {
            "--batches" => {
                a.batches = list(&next(&mut i))
                    .iter()
                    .map(|s| s.parse().expect("--batches 1,64"))
                    .collect()
            }
            "--weights" => {
                a.weights = list(&next(&mut i))
                    .iter()
                    .map(|s| DecodeWeights::from_name(s).expect("--weights f16,q8_0,..."))
                    .collect()
            }
            "--graphs" => a.graphs = list(&next(&mut i)).iter().map(|s| s == "on").collect(),
            "--steps" => a.steps = next(&mut i).parse().expect("--steps N"),
            "--gemm-min-batch" => {
                a.gemm_min_batch = match next(&mut i).as_str() {
                    "never" => usize::MAX,
                    s => s.parse().expect("--gemm-min-batch N|never"),
                }
            }
            "--placement" => {
                a.placement = match next(&mut i).as_str() {
                    "host" => WeightPlacement::HostMapped,
                    "auto" => WeightPlacement::Auto,
                    _ => WeightPlacement::Device,
                }
            }
            "--bench" => {}
            s if !s.starts_with('-') => path = Some(s.to_string()),
            s => panic!("unknown argument {s}"),
        }
        i += 1;
    }
    a.path = path.or_else(|| std::env::var("MAMBA_BENCH_MODEL").ok())?;
    Some(a)
}

/// (median event ms per step, wall-clock ms per step over back-to-back steps).
fn time_steps(
    gpu: &GpuContext,
    dec: &mut GpuDecoder<'_>,
    pairs: &mut [(u32, u32)],
    steps: usize,
) -> Result<(f32, f32), GpuError> {
    let v = dec.config().vocab_size as u32;
    let bump = |pairs: &mut [(u32, u32)], t: usize| {
        for (i, p) in pairs.iter_mut().enumerate() {
            p.1 = ((t * 7919 + i * 104_729 + 13) as u32) % v;
        }
    };
    // Warm-up: plain launches, then the capture, then replays.
    for t in 0..5 {
        bump(pairs, t);
        dec.step_tokens(pairs)?;
    }
    gpu.synchronize()?;
    let mut ms = Vec::with_capacity(steps);
    for t in 0..steps {
        bump(pairs, t);
        ms.push(gpu.time_ms(|| dec.step_tokens(pairs))?);
    }
    let t0 = std::time::Instant::now();
    for t in 0..steps {
        bump(pairs, t);
        dec.step_tokens(pairs)?;
    }
    gpu.synchronize()?;
    let wall = t0.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let logits = dec.logits()?;
    if logits.iter().any(|x| !x.is_finite()) {
        return Err(GpuError::InvalidArgument("non-finite logits".into()));
    }
    dec.argmax()?;
    Ok((median(ms), wall as f32))
}

fn main() {
    let Some(a) = parse() else {
        eprintln!("usage: decode MODEL.gguf [--batches 1,64,256] [--weights f16,q8_0]; skipping");
        return;
    };
    if let Err(why) = GpuContext::is_available() {
        eprintln!("skipping: no GPU ({})", why.reason());
        return;
    }
    let bytes = std::fs::read(&a.path).expect("read the model");
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let data = &bytemuck::cast_slice::<u64, u8>(&words)[..bytes.len()];
    drop(bytes);
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
        "{} (integrated: {}) | model {}: D {} E {} N {} layers {} V {}, stored {:?} | median of {} steps, gemm_min_batch {}",
        gpu.device_name(),
        gpu.is_integrated(),
        a.path,
        c.d_model,
        c.d_inner,
        c.d_state,
        c.n_layer,
        c.vocab_size,
        model.matrix(&layers[0].in_proj).dtype,
        a.steps,
        a.gemm_min_batch
    );
    let max_b = a.batches.iter().copied().max().unwrap_or(1);
    for &w in &a.weights {
        let o = DecodeOptions {
            weights: w,
            max_slots: max_b,
            graphs: true,
            placement: a.placement,
            gemm_min_batch: a.gemm_min_batch,
        };
        let t = std::time::Instant::now();
        let mut dec = match GpuDecoder::new(&gpu, &model, o) {
            Ok(d) => d,
            Err(e) => {
                println!("{}: cannot build the decoder: {e}", w.name());
                continue;
            }
        };
        println!(
            "weights {}: image {:.1} MB, placement {:?}, built in {:.2?}",
            w.name(),
            dec.weight_bytes() as f64 / 1e6,
            dec.placement(),
            t.elapsed()
        );
        let slots: Vec<u32> = (0..max_b)
            .map(|_| dec.alloc_slot().expect("slot"))
            .collect();
        for &b in &a.batches {
            for &graphs in &a.graphs {
                dec.set_graphs(graphs);
                let mut pairs: Vec<(u32, u32)> = slots[..b].iter().map(|&s| (s, 0)).collect();
                match time_steps(&gpu, &mut dec, &mut pairs, a.steps) {
                    Ok((ms, wall)) => {
                        let (wb, sb) = dec.step_bytes(b);
                        let tok_s = b as f64 / (ms as f64 * 1e-3);
                        let wall_tok_s = b as f64 / (wall as f64 * 1e-3);
                        let gbs = (wb + sb) as f64 / (ms as f64 * 1e-3) / 1e9;
                        let (anc, target) = anchor(b);
                        let vs = if anc > 0.0 {
                            format!(
                                " | {:.2}x mamba_ssm ({anc:.0}), target {target:.0} {}",
                                tok_s / anc,
                                if tok_s >= target { "met" } else { "missed" }
                            )
                        } else {
                            String::new()
                        };
                        println!(
                            "  {} b={b:<4} graphs {:<3}: {ms:.4} ms/step, {tok_s:.0} tok/s (wall {wall:.4} ms, {wall_tok_s:.0} tok/s); \
                             reads {:.1} MB weights + {:.1} MB states = {gbs:.0} GB/s{vs}",
                            w.name(),
                            if graphs { "on" } else { "off" },
                            wb as f64 / 1e6,
                            sb as f64 / 1e6
                        );
                        println!(
                            "DECODE weights={} batch={b} graphs={} ms={ms:.5} tok_s={tok_s:.0} wall_ms={wall:.5} wall_tok_s={wall_tok_s:.0} weight_mb={:.2} state_mb={:.2} gbs={gbs:.1} graph_count={} note={:?}",
                            w.name(),
                            if graphs { "on" } else { "off" },
                            wb as f64 / 1e6,
                            sb as f64 / 1e6,
                            dec.graph_count(),
                            dec.fallback_note().unwrap_or("")
                        );
                    }
                    Err(e) => println!("  {} b={b} graphs {graphs}: error {e}", w.name()),
                }
                if graphs {
                    // Where the time goes (plain launches, an event per stage).
                    let _ = dec.profile_step(&pairs);
                    match dec.profile_step(&pairs) {
                        Ok(stages) => {
                            let total: f32 = stages.iter().map(|s| s.1).sum();
                            let parts: Vec<String> = stages
                                .iter()
                                .map(|(n, ms)| format!("{n} {ms:.3} ({:.0}%)", 100.0 * ms / total))
                                .collect();
                            println!("    profile (no graph) {total:.3} ms: {}", parts.join(", "));
                        }
                        Err(e) => println!("    profile: error {e}"),
                    }
                }
            }
        }
    }
}
