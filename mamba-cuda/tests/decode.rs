//! GPU streaming decode (`GpuDecoder`) on the shipped models (GGUF, F32 /
//! F16 / Q8_0 / Q4_0) against mamba-core's scalar step path: logits and state
//! after many steps, greedy tokens; a stream's results do not depend on its
//! batch; graphs on and off agree; slot save / load / copy / reset round
//! trips; the continuous-input path; bad input is an error, never a panic.
//! Skips without a GPU (prints why); `MAMBA_REQUIRE_GPU=1` fails instead.
//!
//! Lines starting with `rel ` give the measured errors (parsed by the device script).

mod common;

use mamba_core::{Gguf, LayerWeights, Model, ModelLayout, Scalar};
use mamba_cuda::{DecodeOptions, DecodeWeights, GpuContext, GpuDecoder, WeightPlacement};

/// A GGUF model's bytes (8-byte aligned) and its parsed layout.
struct Loaded {
    words: Vec<u64>,
    len: usize,
    layout: ModelLayout,
    layers: Vec<LayerWeights>,
}

impl Loaded {
    fn open(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        let len = bytes.len();
        let data = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
        let g = Gguf::parse(data).expect("parse GGUF");
        let n_layer = mamba_core::weights::config_from_gguf(&g)
            .expect("config")
            .n_layer;
        let mut layers = vec![LayerWeights::EMPTY; n_layer];
        let layout = ModelLayout::from_gguf(&g, &mut layers).expect("layout");
        Self {
            words,
            len,
            layout,
            layers,
        }
    }

    fn model(&self) -> Model<'_> {
        let data = &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len];
        Model::new(data, &self.layout, &self.layers).expect("model")
    }
}

/// max |a - b| / max |b| (infinite when `a` holds a NaN).
fn rel_max(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let e = a.iter().zip(b).fold(0f32, |e, (x, y)| {
        if x.is_nan() {
            f32::INFINITY
        } else {
            e.max((x - y).abs())
        }
    });
    e / m
}

/// How many of the paired values differ in any bit.
fn bits_differ(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn opts(weights: DecodeWeights, max_slots: usize) -> DecodeOptions {
    DecodeOptions {
        weights,
        max_slots,
        graphs: true,
        placement: WeightPlacement::Device,
        gemm_min_batch: usize::MAX,
    }
}

/// Token t of stream s (deterministic, all over the vocabulary).
fn token(s: usize, t: usize, v: usize) -> u32 {
    ((t * 7919 + s * 104_729 + 13) % v) as u32
}

struct CpuStream {
    state: Vec<f32>,
    scratch: Vec<f32>,
    logits: Vec<f32>,
}

impl CpuStream {
    fn new(m: &Model<'_>) -> Self {
        let c = m.config();
        Self {
            state: vec![0.0; c.state_len()],
            scratch: vec![0.0; c.scratch_len()],
            logits: vec![0.0; c.vocab_size],
        }
    }

    fn step(&mut self, m: &Model<'_>, tok: u32) {
        mamba_core::step_token(
            m,
            &Scalar,
            &mut self.state,
            &mut self.scratch,
            tok,
            &mut self.logits,
        )
        .unwrap();
    }
}

/// `streams` streams decoded together for `steps` steps (teacher-forced
/// tokens) against the CPU; every stream joins at a different step and a
/// few sit out some steps (continuous batching). Returns the worst logits
/// and state errors and the greedy-token disagreements.
fn decode_vs_cpu(
    gpu: &GpuContext,
    model: &Model<'_>,
    o: DecodeOptions,
    streams: usize,
    steps: usize,
) -> (f32, f32, usize) {
    let v = model.config().vocab_size;
    let mut dec = GpuDecoder::new(gpu, model, o).unwrap();
    dec.poison().unwrap();
    let slots: Vec<u32> = (0..streams).map(|_| dec.alloc_slot().unwrap()).collect();
    let mut cpu: Vec<CpuStream> = (0..streams).map(|_| CpuStream::new(model)).collect();
    let mut pos = vec![0usize; streams];
    let (mut el, mut es, mut picks_off) = (0f32, 0f32, 0usize);
    for step in 0..steps + streams {
        // Stream s joins at step s; stream 1 skips every 7th step.
        let active: Vec<usize> = (0..streams)
            .filter(|&s| step >= s && pos[s] < steps && !(s == 1 && step % 7 == 3))
            .collect();
        if active.is_empty() {
            continue;
        }
        // Reverse order on odd steps: order must not matter.
        let order: Vec<usize> = if step % 2 == 1 {
            active.iter().rev().copied().collect()
        } else {
            active.clone()
        };
        let pairs: Vec<(u32, u32)> = order
            .iter()
            .map(|&s| (slots[s], token(s, pos[s], v)))
            .collect();
        dec.step_tokens(&pairs).unwrap();
        for &s in &order {
            cpu[s].step(model, token(s, pos[s], v));
            pos[s] += 1;
        }
        let check = order.iter().any(|&s| pos[s] % 100 == 0 || pos[s] == steps);
        if check {
            let logits = dec.logits().unwrap();
            let picks = dec.argmax().unwrap();
            for (i, &s) in order.iter().enumerate() {
                let got = &logits[i * v..(i + 1) * v];
                el = el.max(rel_max(got, &cpu[s].logits));
                assert_eq!(
                    picks[i] as usize,
                    mamba_core::sample::argmax(got),
                    "device argmax differs from the host argmax of the same logits"
                );
                if picks[i] as usize != mamba_core::sample::argmax(&cpu[s].logits) {
                    picks_off += 1;
                }
            }
        }
    }
    for (s, c) in cpu.iter().enumerate() {
        es = es.max(rel_max(&dec.save_slot(slots[s]).unwrap(), &c.state));
    }
    (el, es, picks_off)
}

#[test]
fn shipped_models_match_the_cpu_after_1000_steps() {
    let Some(gpu) = common::gpu() else { return };
    // (file, decode weights, tolerance): quantized files against mamba-core
    // running the same quantized weights; F16 / BF16 conversions of the f32
    // file against the f32 CPU path.
    let cases = [
        ("default-f32.gguf", DecodeWeights::AsStored, 1e-4),
        ("default-f32.gguf", DecodeWeights::F16, 2e-2),
        ("default-f32.gguf", DecodeWeights::Bf16, 2e-2),
        ("default-f16.gguf", DecodeWeights::AsStored, 1e-4),
        ("default-q8_0.gguf", DecodeWeights::AsStored, 1e-4),
        ("default-q4_0.gguf", DecodeWeights::AsStored, 1e-4),
        ("tiny-q8_0.gguf", DecodeWeights::AsStored, 1e-4),
    ];
    for (file, w, tol) in cases {
        let l = Loaded::open(file);
        let m = l.model();
        let t = std::time::Instant::now();
        let (el, es, off) = decode_vs_cpu(gpu, &m, opts(w, 4), 3, 1000);
        eprintln!(
            "rel {} {file} 1000 steps x 3 streams logits {el:.3e} state {es:.3e} greedy-mismatch {off} ({:.1?})",
            w.name(),
            t.elapsed()
        );
        assert!(
            el <= tol && es <= tol,
            "{file} {}: logits {el}, state {es} over {tol}",
            w.name()
        );
    }
}

/// Quantizing on load (f32 file to Q8_0 / Q4_0 on the device) against the
/// CPU running the file's own Q8_0 / Q4_0 version (quantized by the same
/// ggml rule, so the weights are identical): reported, and checked loosely.
#[test]
fn quantize_on_load_matches_the_quantized_files() {
    let Some(gpu) = common::gpu() else { return };
    let f32_file = Loaded::open("default-f32.gguf");
    let fm = f32_file.model();
    for (file, w) in [
        ("default-q8_0.gguf", DecodeWeights::Q8_0),
        ("default-q4_0.gguf", DecodeWeights::Q4_0),
    ] {
        let q = Loaded::open(file);
        let qm = q.model();
        let v = fm.config().vocab_size;
        let mut dec = GpuDecoder::new(gpu, &fm, opts(w, 2)).unwrap();
        let s = dec.alloc_slot().unwrap();
        let mut cpu = CpuStream::new(&qm);
        let mut cpu32 = CpuStream::new(&fm);
        for t in 0..200 {
            let tok = token(0, t, v);
            dec.step_tokens(&[(s, tok)]).unwrap();
            cpu.step(&qm, tok);
            cpu32.step(&fm, tok);
        }
        let got = dec.logits().unwrap();
        let e = rel_max(&got, &cpu.logits);
        let e32 = rel_max(&got, &cpu32.logits);
        eprintln!(
            "rel {} quantized-on-load vs {file} on the CPU: logits {e:.3e}; vs the f32 CPU path {e32:.3e}",
            w.name()
        );
        assert!(e <= 2e-2, "{}: {e}", w.name());
    }
}

/// The same stream alone and in batches of other streams (random subsets
/// in shuffled order) gives the same logits bit for bit; graphs on or off too.
#[test]
fn stream_results_do_not_depend_on_the_batch() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = common::Rng::fresh(7);
    for (file, w) in [
        ("default-q8_0.gguf", DecodeWeights::AsStored),
        ("default-f32.gguf", DecodeWeights::F16),
    ] {
        let l = Loaded::open(file);
        let m = l.model();
        let v = m.config().vocab_size;
        let mut alone = GpuDecoder::new(gpu, &m, opts(w, 2)).unwrap();
        let a = alone.alloc_slot().unwrap();
        let mut o = opts(w, 40);
        o.graphs = false;
        let mut crowd = GpuDecoder::new(gpu, &m, o).unwrap();
        let slots: Vec<u32> = (0..40).map(|_| crowd.alloc_slot().unwrap()).collect();
        let me = slots[17];
        let mut worst = 0f32;
        for t in 0..60 {
            if t == 30 {
                crowd.set_graphs(true);
            }
            let tok = token(0, t, v);
            alone.step_tokens(&[(a, tok)]).unwrap();
            let want = alone.logits().unwrap();
            // `me` plus a random subset of the others, shuffled.
            let mut pairs = vec![(me, tok)];
            for &s in &slots {
                if s != me && rng.below(3) == 0 {
                    pairs.push((s, rng.below(v) as u32));
                }
            }
            for i in (1..pairs.len()).rev() {
                let j = rng.below(i + 1);
                pairs.swap(i, j);
            }
            crowd.step_tokens(&pairs).unwrap();
            let at = pairs.iter().position(|p| p.0 == me).unwrap();
            let got = crowd.logits().unwrap();
            let got = &got[at * v..(at + 1) * v];
            worst = worst.max(rel_max(got, &want));
        }
        eprintln!(
            "rel {} batch-independence {file}: alone vs shuffled batches of up to 40 {worst:.3e}",
            w.name()
        );
        assert!(worst <= 1e-6, "{file}: {worst}");
    }
}

/// v5: at 64+ streams (128+ before v6; below `gemm_min_batch`) the SSM runs
/// as a prep kernel (chunk sums, dt_proj, softplus) plus a state stream
/// instead of the fused kernel a stream alone takes; the same stream gives the same logits
/// and state bit for bit either way (full and partial channel chunks, the
/// R % 8 == 0 and scalar dt_proj paths, partial row blocks: 130 streams;
/// v6: the prep's f16 / bf16 rows held in registers, its f32 rows loaded
/// after the barrier, its scalar path).
#[test]
fn split_ssm_gives_the_same_bits_as_the_fused_ssm() {
    let Some(gpu) = common::gpu() else { return };
    for (file, w) in [
        ("default-q8_0.gguf", DecodeWeights::AsStored),
        ("default-f32.gguf", DecodeWeights::F16),
        ("default-f32.gguf", DecodeWeights::Bf16),
        ("default-f32.gguf", DecodeWeights::AsStored),
        ("tiny-f32.gguf", DecodeWeights::AsStored),
    ] {
        let l = Loaded::open(file);
        let m = l.model();
        let v = m.config().vocab_size;
        let mut alone = GpuDecoder::new(gpu, &m, opts(w, 1)).unwrap();
        let a = alone.alloc_slot().unwrap();
        let n = 130;
        let mut crowd = GpuDecoder::new(gpu, &m, opts(w, n)).unwrap();
        let slots: Vec<u32> = (0..n).map(|_| crowd.alloc_slot().unwrap()).collect();
        let me = slots[77];
        let (mut diff_logits, mut diff_state) = (0usize, 0usize);
        for t in 0..24 {
            let tok = token(0, t, v);
            alone.step_tokens(&[(a, tok)]).unwrap();
            let want = alone.logits().unwrap();
            let mut pairs: Vec<(u32, u32)> = slots
                .iter()
                .enumerate()
                .map(|(i, &s)| (s, if s == me { tok } else { token(i + 1, t, v) }))
                .collect();
            pairs.rotate_left(t * 13 % n);
            crowd.step_tokens(&pairs).unwrap();
            let at = pairs.iter().position(|p| p.0 == me).unwrap();
            let got = crowd.logits().unwrap();
            let got = &got[at * v..(at + 1) * v];
            diff_logits += bits_differ(got, &want);
        }
        let sa = alone.save_slot(a).unwrap();
        let sc = crowd.save_slot(me).unwrap();
        diff_state += bits_differ(&sa, &sc);
        eprintln!(
            "rel {} split-ssm {file}: alone (fused) vs batch of {n} (split), 24 steps: \
             {diff_logits} logits and {diff_state} state values differ in any bit",
            w.name()
        );
        assert_eq!((diff_logits, diff_state), (0, 0), "{file}");
    }
}

/// v9: a step of one stream runs the GEMV kernel's batch-1 entry (BT = 1);
/// the same stream in a step of 5 (the batched entry, below
/// `gemm_min_batch`) gives the same logits, hidden states and state bit for
/// bit: every weight type, quantized files (a dt_proj of another type than
/// x_proj), the tiny models (partial row blocks), token and input-vector
/// steps, graphs on and off.
#[test]
fn batch_one_gemv_gives_the_same_bits_as_the_batched_gemv() {
    let Some(gpu) = common::gpu() else { return };
    for (file, w) in [
        ("default-q8_0.gguf", DecodeWeights::AsStored),
        ("default-q4_0.gguf", DecodeWeights::AsStored),
        ("default-f32.gguf", DecodeWeights::AsStored),
        ("default-f32.gguf", DecodeWeights::F16),
        ("default-f32.gguf", DecodeWeights::Bf16),
        ("default-f32.gguf", DecodeWeights::Q8_0),
        ("default-f32.gguf", DecodeWeights::Q4_0),
        ("tiny-f32.gguf", DecodeWeights::AsStored),
        ("tiny-q8_0.gguf", DecodeWeights::AsStored),
    ] {
        let l = Loaded::open(file);
        let m = l.model();
        let (v, d) = (m.config().vocab_size, m.config().d_model);
        let mut one = GpuDecoder::new(gpu, &m, opts(w, 1)).unwrap();
        let mut five = GpuDecoder::new(gpu, &m, opts(w, 5)).unwrap();
        let a = one.alloc_slot().unwrap();
        let sf: Vec<u32> = (0..5).map(|_| five.alloc_slot().unwrap()).collect();
        let me = 2;
        let mut diff = 0usize;
        for t in 0..40 {
            if t == 20 {
                one.set_graphs(false);
            }
            if t % 5 == 4 {
                let xs: Vec<Vec<f32>> = (0..5)
                    .map(|i| {
                        (0..d)
                            .map(|c| ((c * 31 + i * 7 + t) % 17) as f32 * 0.05 - 0.4)
                            .collect()
                    })
                    .collect();
                let h1 = one.step_embeddings(&[(a, xs[me].as_slice())]).unwrap();
                let pairs: Vec<(u32, &[f32])> = sf
                    .iter()
                    .zip(&xs)
                    .map(|(&s, x)| (s, x.as_slice()))
                    .collect();
                let h5 = five.step_embeddings(&pairs).unwrap();
                diff += bits_differ(&h1, &h5[me * d..(me + 1) * d]);
                continue;
            }
            one.step_tokens(&[(a, token(me, t, v))]).unwrap();
            let pairs: Vec<(u32, u32)> = (0..5).map(|i| (sf[i], token(i, t, v))).collect();
            five.step_tokens(&pairs).unwrap();
            let (l1, l5) = (one.logits().unwrap(), five.logits().unwrap());
            diff += bits_differ(&l1, &l5[me * v..(me + 1) * v]);
        }
        let (s1, s5) = (one.save_slot(a).unwrap(), five.save_slot(sf[me]).unwrap());
        diff += bits_differ(&s1, &s5);
        eprintln!(
            "rel {} batch-one-gemv {file}: alone vs in a step of 5, 40 steps: \
             {diff} logits / hidden / state values differ in any bit",
            w.name()
        );
        assert_eq!(diff, 0, "{file} {}", w.name());
    }
}

/// save -> load into another slot, copy, reset, free: states and logits agree.
#[test]
fn slot_save_load_copy_reset_round_trip() {
    let Some(gpu) = common::gpu() else { return };
    let l = Loaded::open("default-f32.gguf");
    let m = l.model();
    let v = m.config().vocab_size;
    let mut dec = GpuDecoder::new(gpu, &m, opts(DecodeWeights::AsStored, 4)).unwrap();
    let s0 = dec.alloc_slot().unwrap();
    let mut cpu = CpuStream::new(&m);
    for t in 0..25 {
        dec.step_tokens(&[(s0, token(3, t, v))]).unwrap();
        cpu.step(&m, token(3, t, v));
    }
    let saved = dec.save_slot(s0).unwrap();
    assert_eq!(saved.len(), m.config().state_len());
    let e_state = rel_max(&saved, &cpu.state);
    // A CPU state goes in; the same state comes out.
    let s1 = dec.alloc_slot().unwrap();
    dec.load_slot(s1, &cpu.state).unwrap();
    assert_eq!(dec.save_slot(s1).unwrap(), cpu.state);
    let s2 = dec.alloc_slot().unwrap();
    dec.copy_slot(s0, s2).unwrap();
    assert_eq!(dec.save_slot(s2).unwrap(), saved);
    // s0 and its copy continue identically; s1 (the CPU's state) like the CPU.
    let tok = token(3, 25, v);
    dec.step_tokens(&[(s1, tok), (s0, tok), (s2, tok)]).unwrap();
    cpu.step(&m, tok);
    let lg = dec.logits().unwrap();
    assert_eq!(lg[v..2 * v], lg[2 * v..3 * v]);
    let e_load = rel_max(&lg[..v], &cpu.logits);
    // Reset = a fresh slot.
    dec.reset_slot(s0).unwrap();
    assert!(dec.save_slot(s0).unwrap().iter().all(|&x| x == 0.0));
    dec.free_slot(s2).unwrap();
    let s3 = dec.alloc_slot().unwrap();
    assert_eq!(s3, s2, "the freed slot is reused");
    assert!(
        dec.save_slot(s3).unwrap().iter().all(|&x| x == 0.0),
        "a new slot starts at zero"
    );
    let mut fresh = CpuStream::new(&m);
    dec.step_tokens(&[(s0, 5), (s3, 5)]).unwrap();
    fresh.step(&m, 5);
    let lg = dec.logits().unwrap();
    assert_eq!(lg[..v], lg[v..2 * v]);
    let e_reset = rel_max(&lg[..v], &fresh.logits);
    eprintln!(
        "rel f32 slots: saved state {e_state:.3e}, loaded CPU state {e_load:.3e}, reset {e_reset:.3e}"
    );
    for e in [e_state, e_load, e_reset] {
        assert!(e <= 1e-4, "{e}");
    }
}

/// step_embeddings against mamba-core's step_embedding (final hidden state).
#[test]
fn continuous_inputs_match_step_embedding() {
    let Some(gpu) = common::gpu() else { return };
    let l = Loaded::open("default-f32.gguf");
    let m = l.model();
    let c = *m.config();
    let d = c.d_model;
    let mut dec = GpuDecoder::new(gpu, &m, opts(DecodeWeights::AsStored, 3)).unwrap();
    dec.poison().unwrap();
    let slots: Vec<u32> = (0..3).map(|_| dec.alloc_slot().unwrap()).collect();
    let mut states = vec![vec![0f32; c.state_len()]; 3];
    let mut scratch = vec![0f32; c.scratch_len()];
    let mut rng = common::Rng::fresh(11);
    let mut worst = 0f32;
    for t in 0..300 {
        let inputs: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(d, -1.0, 1.0)).collect();
        let n = if t % 5 == 0 { 2 } else { 3 };
        let pairs: Vec<(u32, &[f32])> = (0..n)
            .rev()
            .map(|s| (slots[s], inputs[s].as_slice()))
            .collect();
        let got = dec.step_embeddings(&pairs).unwrap();
        for (i, &(_, x)) in pairs.iter().enumerate() {
            let s = n - 1 - i;
            let mut want = vec![0f32; d];
            mamba_core::step_embedding(&m, &Scalar, &mut states[s], &mut scratch, x, &mut want)
                .unwrap();
            worst = worst.max(rel_max(&got[i * d..(i + 1) * d], &want));
        }
    }
    eprintln!("rel f32 step_embeddings 300 steps x 3 streams hidden {worst:.3e}");
    assert!(worst <= 1e-4, "{worst}");
    // After an embedding step there are no logits to read.
    assert!(dec.logits().is_err());
}

/// Weights in mapped host memory (the integrated-GPU placement) give the
/// same results as device weights.
#[test]
fn host_mapped_weights_match_device_weights() {
    let Some(gpu) = common::gpu() else { return };
    let l = Loaded::open("default-q8_0.gguf");
    let m = l.model();
    let v = m.config().vocab_size;
    let mut a = GpuDecoder::new(gpu, &m, opts(DecodeWeights::AsStored, 2)).unwrap();
    let mut o = opts(DecodeWeights::AsStored, 2);
    o.placement = WeightPlacement::HostMapped;
    let mut b = GpuDecoder::new(gpu, &m, o).unwrap();
    assert_eq!(b.placement(), WeightPlacement::HostMapped);
    eprintln!("device is integrated: {}", gpu.is_integrated());
    let (sa, sb) = (a.alloc_slot().unwrap(), b.alloc_slot().unwrap());
    for t in 0..50 {
        a.step_tokens(&[(sa, token(1, t, v))]).unwrap();
        b.step_tokens(&[(sb, token(1, t, v))]).unwrap();
    }
    assert_eq!(a.logits().unwrap(), b.logits().unwrap());
    assert_eq!(a.argmax().unwrap(), b.argmax().unwrap());
}

/// Bad arguments are errors, not panics, and leave the decoder usable.
#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = common::gpu() else { return };
    let l = Loaded::open("tiny-f32.gguf");
    let m = l.model();
    let c = *m.config();
    let mut bad = opts(DecodeWeights::AsStored, 0);
    assert!(GpuDecoder::new(gpu, &m, bad).is_err());
    bad.max_slots = 1 << 20;
    assert!(GpuDecoder::new(gpu, &m, bad).is_err());
    let mut dec = GpuDecoder::new(gpu, &m, opts(DecodeWeights::AsStored, 3)).unwrap();
    let a = dec.alloc_slot().unwrap();
    let b = dec.alloc_slot().unwrap();
    assert!(dec.logits().is_err(), "no step yet");
    assert!(dec.argmax().is_err(), "no step yet");
    assert!(dec.step_tokens(&[]).is_err(), "empty step");
    assert!(dec.step_tokens(&[(7, 1)]).is_err(), "slot out of range");
    assert!(dec.step_tokens(&[(2, 1)]).is_err(), "slot not allocated");
    assert!(
        dec.step_tokens(&[(a, 1), (b, 2), (a, 3)]).is_err(),
        "duplicate slot"
    );
    assert!(
        dec.step_tokens(&[(a, c.vocab_size as u32)]).is_err(),
        "token out of range"
    );
    let short = vec![0f32; c.d_model - 1];
    assert!(
        dec.step_embeddings(&[(a, &short)]).is_err(),
        "wrong vector length"
    );
    assert!(dec.load_slot(a, &[0.0; 3]).is_err(), "wrong state length");
    assert!(dec.save_slot(9).is_err());
    assert!(dec.copy_slot(a, 2).is_err());
    dec.free_slot(b).unwrap();
    assert!(dec.free_slot(b).is_err(), "double free");
    assert!(dec.step_tokens(&[(a, 1), (b, 2)]).is_err(), "freed slot");
    let _c = dec.alloc_slot().unwrap();
    let _d = dec.alloc_slot().unwrap();
    assert!(dec.alloc_slot().is_err(), "all slots in use");
    // Still usable.
    dec.step_tokens(&[(a, 1)]).unwrap();
    assert_eq!(dec.logits().unwrap().len(), c.vocab_size);
}
