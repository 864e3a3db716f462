//! Soak test: decode a long stream on one session and check that the runtime does not
//! drift. Every step's logits must be finite; every `--every` steps the resident memory
//! (VmRSS from /proc/self/status) and the largest |state| value are sampled and the
//! state is saved and restored. Exits nonzero if a logit is not finite, the state goes
//! past `--state-limit` (or is not finite), the state blob does not round-trip, or the
//! resident memory after warm-up grows by more than `--rss-growth-kb`.
//!
//! ```text
//! cargo run --release --example soak -- --steps 1000000 --model models/default-q8_0.gguf
//! ```
//!
//! Tokens are drawn from the model's own distribution (temperature 1, seeded), with one
//! step in 16 fed a uniformly random token, so the stream covers both likely text and
//! the odd corrupted byte a device sees.

use mamba_core::sample::Rng;
use mamba_core::{Sampler, SamplingParams};
use mamba_rt::cpu::CpuKernels;
use mamba_rt::{LoadedModel, Session};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    model: PathBuf,
    steps: u64,
    threads: usize,
    every: u64,
    seed: u64,
    state_limit: f32,
    rss_growth_kb: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak [--model PATH] [--steps N] [--threads N] [--every N] [--seed N] \
         [--state-limit X] [--rss-growth-kb N]"
    );
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("soak: bad value '{v}' for {flag}");
        usage()
    })
}

fn parse_args() -> Args {
    let mut a = Args {
        model: PathBuf::from("models/default-q8_0.gguf"),
        steps: 1_000_000,
        threads: 1,
        every: 0,
        seed: 1,
        state_limit: 1.0e6,
        rss_growth_kb: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else { usage() };
        match flag.as_str() {
            "--model" => a.model = PathBuf::from(&v),
            "--steps" => a.steps = num(&flag, &v),
            "--threads" => a.threads = num(&flag, &v),
            "--every" => a.every = num(&flag, &v),
            "--seed" => a.seed = num(&flag, &v),
            "--state-limit" => a.state_limit = num(&flag, &v),
            "--rss-growth-kb" => a.rss_growth_kb = num(&flag, &v),
            _ => usage(),
        }
    }
    if a.every == 0 {
        // About 200 samples over the run, at least every 100 steps.
        a.every = (a.steps / 200).max(100);
    }
    a
}

/// Resident set size in KiB (Linux); `None` elsewhere.
fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Largest |value| of the state, or `None` if a value is not finite.
fn max_abs(state: &[f32]) -> Option<f32> {
    state
        .iter()
        .try_fold(0.0f32, |m, &v| v.is_finite().then(|| m.max(v.abs())))
}

fn main() -> ExitCode {
    let a = parse_args();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let model = LoadedModel::open(&a.model).map_err(|e| e.to_string())?;
    let k =
        CpuKernels::with_isa(a.threads, mamba_rt::cpu::detect_isa()).map_err(|e| e.to_string())?;
    let cfg = *model.config();
    let v = cfg.vocab_size;
    println!(
        "soak: {} (vocab {}, {} layers, d_model {}), {} steps, {} thread(s), {} kernels, \
         sampling every {} steps",
        a.model.display(),
        v,
        cfg.n_layer,
        cfg.d_model,
        a.steps,
        k.threads(),
        k.isa().name(),
        a.every
    );
    let mut session = Session::new(&model);
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repeat_penalty: 1.0,
        repeat_last_n: 0,
        seed: a.seed,
    })
    .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(a.seed ^ 0x5eed);
    let mut logits = vec![0.0f32; v];
    let mut work = vec![0u32; v];
    let mut token: u32 = 0;

    // RSS is taken as the baseline after warm-up (the first 2% of the run, at least
    // one sample), when every buffer and the page cache of the mapped model are in.
    let warmup = (a.steps / 50).max(a.every);
    let (mut rss_base, mut rss_min, mut rss_max, mut rss_last) = (None, u64::MAX, 0u64, 0u64);
    let mut state_max = 0.0f32;
    let (mut logit_min, mut logit_max) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut samples = 0u64;
    let t0 = Instant::now();

    for step in 1..=a.steps {
        session
            .step_token(&k, token, &mut logits)
            .map_err(|e| format!("step {step}: {e}"))?;
        for (i, &l) in logits.iter().enumerate() {
            if !l.is_finite() {
                return Err(format!("step {step}: logit {i} is {l} (token in: {token})"));
            }
            logit_min = logit_min.min(l);
            logit_max = logit_max.max(l);
        }
        token = if rng.next_u64() % 16 == 0 {
            (rng.next_u64() % v as u64) as u32
        } else {
            sampler
                .sample(&mut logits, &[], &mut work)
                .map_err(|e| format!("step {step}: sampling: {e}"))?
        };

        if step % a.every == 0 || step == a.steps {
            samples += 1;
            let m = max_abs(session.state())
                .ok_or_else(|| format!("step {step}: state holds a NaN or infinity"))?;
            state_max = state_max.max(m);
            if m > a.state_limit {
                return Err(format!(
                    "step {step}: max |state| = {m} is past the limit {}",
                    a.state_limit
                ));
            }
            // Save/restore must give back the same bytes.
            let blob = session.save_state();
            session
                .load_state(&blob)
                .map_err(|e| format!("step {step}: state reload: {e}"))?;
            if session.save_state() != blob {
                return Err(format!("step {step}: state blob did not round-trip"));
            }
            if let Some(r) = rss_kb() {
                rss_last = r;
                if step >= warmup {
                    let base = *rss_base.get_or_insert(r);
                    rss_min = rss_min.min(r);
                    rss_max = rss_max.max(r);
                    if r > base + a.rss_growth_kb {
                        return Err(format!(
                            "step {step}: VmRSS {r} KiB grew past the baseline {base} KiB \
                             + {} KiB",
                            a.rss_growth_kb
                        ));
                    }
                }
            }
            if step % (a.every * 20) == 0 {
                let el = t0.elapsed().as_secs_f64();
                println!(
                    "  step {step:>9}: {:.1} steps/s, max|state| {m:.3}, VmRSS {rss_last} KiB",
                    step as f64 / el
                );
            }
        }
    }

    let el = t0.elapsed().as_secs_f64();
    println!("soak: PASS");
    println!("  steps            {}", a.steps);
    println!(
        "  time             {el:.1} s ({:.3} ms/step, {:.0} steps/s)",
        el * 1e3 / a.steps as f64,
        a.steps as f64 / el
    );
    println!("  samples          {samples} (every {} steps)", a.every);
    println!("  logits           all finite, range [{logit_min:.3}, {logit_max:.3}]");
    println!(
        "  max |state|      {state_max:.4} (limit {})",
        a.state_limit
    );
    match rss_base {
        Some(base) => println!(
            "  VmRSS            baseline {base} KiB, min {rss_min} KiB, max {rss_max} KiB, \
             final {rss_last} KiB (growth {:+} KiB, limit +{} KiB)",
            rss_last as i64 - base as i64,
            a.rss_growth_kb
        ),
        None => println!("  VmRSS            not sampled (no /proc/self/status or run too short)"),
    }
    Ok(())
}
