//! Times the fused selective scan alone at the shapes of MAMBA_SPEC.md's
//! mamba_ssm table (N = 16; z, D, delta bias and softplus on), f32 and bf16
//! inputs, with CUDA events: the median of many runs after a warm-up, rotating
//! several input sets so the L2 cache does not hold them.
//!
//! Three times per shape and type:
//! - `ms` (the table's, and the speed-up's): as `triton.testing.do_bench`
//!   times a function, the way such reference tables are measured: a 256 MiB
//!   fill flushes the L2 before each call, then the events and the call are
//!   queued behind it, so the events time the GPU's work (kernels and the
//!   gaps between them), not the host's time to queue the first launch.
//! - `from idle`: the events around a call queued on an idle GPU, so the
//!   host's work before its first launch is included (what one call costs
//!   an application that waits for each).
//! - `back to back`: the mean of 10 calls queued at once.
//!
//! `cargo bench -p mamba-cuda --bench scan [-- --chunk TOKENS] [-- --runs N]`

use half::bf16;
use mamba_cuda::{Element, GpuBuffer, GpuContext, GpuError, ScanInputs, ScanPath, ScanShape};

/// (batch, E, L, mamba_ssm f32 ms, mamba_ssm bf16 ms), measured on the H200.
const TABLE: [(usize, usize, usize, f64, f64); 7] = [
    (1, 1536, 2048, 0.142, 0.075),
    (1, 1536, 16384, 1.016, 0.593),
    (1, 1536, 131072, 7.819, 4.465),
    (8, 1536, 2048, 0.909, 0.471),
    (1, 5120, 8192, 1.657, 0.943),
    (16, 5120, 2048, 5.745, 2.938),
    (64, 1536, 1024, 3.405, 1.705),
];
const N: usize = 16;

/// Bytes the whole L2 could hold several times over.
const ROTATE_BYTES: usize = 256 << 20;

struct Set<T: Element> {
    u: GpuBuffer<T>,
    delta: GpuBuffer<T>,
    z: GpuBuffer<T>,
    b: GpuBuffer<T>,
    c: GpuBuffer<T>,
    y: GpuBuffer<T>,
    fin: GpuBuffer<f32>,
}

fn splitmix(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

fn random<T: Element>(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<T> {
    let mut s = seed;
    (0..n)
        .map(|_| T::from_f32(lo + (hi - lo) * splitmix(&mut s)))
        .collect()
}

struct Row {
    /// Median, each call queued behind an L2 flush (do_bench's method), ms.
    ms: f64,
    /// Median, each call queued on an idle GPU, ms.
    idle_ms: f64,
    gbs: f64,
    /// Mean of 10 calls queued back to back (host gaps between a call's
    /// launches hidden behind the previous call), ms.
    b2b_ms: f64,
    /// Host time to queue one call (no synchronization), microseconds.
    host_us: f64,
    /// How the calls ran.
    path: Option<ScanPath>,
}

fn bench<T: Element>(
    gpu: &GpuContext,
    (batch, e, l): (usize, usize, usize),
    chunk: Option<usize>,
    runs: usize,
) -> Result<Row, GpuError> {
    let tok = batch * l * e;
    let bc = batch * l * N;
    let t = std::mem::size_of::<T>();
    let set_bytes = (4 * tok + 2 * bc) * t;
    let nsets = ROTATE_BYTES.div_ceil(set_bytes).clamp(1, 8);
    let u_h = random::<T>(tok, -2.0, 2.0, 1);
    let d_h = random::<T>(tok, -3.0, 1.0, 2);
    let z_h = random::<T>(tok, -4.0, 4.0, 3);
    let b_h = random::<T>(bc, -1.5, 1.5, 4);
    let c_h = random::<T>(bc, -1.5, 1.5, 5);
    let a: Vec<f32> = random::<f32>(e * N, 0.0, 2.8, 6)
        .iter()
        .map(|v| -v.exp())
        .collect();
    let a = gpu.upload(&a)?;
    let dd = gpu.upload(&random::<f32>(e, -1.0, 1.0, 7))?;
    let bias = gpu.upload(&random::<f32>(e, -2.0, 0.5, 8))?;
    let mut sets = Vec::new();
    for _ in 0..nsets {
        sets.push(Set {
            u: gpu.upload(&u_h)?,
            delta: gpu.upload(&d_h)?,
            z: gpu.upload(&z_h)?,
            b: gpu.upload(&b_h)?,
            c: gpu.upload(&c_h)?,
            y: gpu.alloc::<T>(tok)?,
            fin: gpu.alloc::<f32>(batch * e * N)?,
        });
    }
    let shape = ScanShape {
        batch,
        len: l,
        channels: e,
        state: N,
    };
    let mut path = None;
    let mut run = |s: &mut Set<T>| -> Result<(), GpuError> {
        let inputs = ScanInputs {
            u: s.u.as_mat(l, e),
            delta: s.delta.as_mat(l, e),
            z: Some(s.z.as_mat(l, e)),
            b: s.b.as_mat(l, N),
            c: s.c.as_mat(l, N),
            a: &a,
            d: Some(&dd),
            delta_bias: Some(&bias),
            initial_state: None,
            chunk_len: chunk,
            split: Default::default(),
        };
        path = Some(gpu.selective_scan(shape, &inputs, s.y.as_mat_mut(l, e), &mut s.fin)?);
        Ok(())
    };
    for i in 0..3.max(nsets) {
        run(&mut sets[i % nsets])?;
    }
    gpu.synchronize()?;
    let mut idle = Vec::with_capacity(runs);
    for i in 0..runs {
        let s = &mut sets[i % nsets];
        idle.push(gpu.time_ms(|| run(s))? as f64);
    }
    let mut flush = gpu.alloc::<f32>(ROTATE_BYTES / 4)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let s = &mut sets[i % nsets];
        gpu.fill(&mut flush, (i & 0xff) as u8)?;
        times.push(gpu.time_ms(|| run(s))? as f64);
    }
    // A NaN or an unwritten output would make the timing meaningless.
    let y = gpu.download(&sets[0].y)?;
    let bad = y.iter().filter(|v| !v.to_f32().is_finite()).count();
    if bad > 0 {
        return Err(GpuError::InvalidArgument(format!(
            "{bad} non-finite outputs"
        )));
    }
    times.sort_by(f64::total_cmp);
    idle.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    let mut b2b = Vec::new();
    let mut host = Vec::new();
    for _ in 0..5 {
        gpu.synchronize()?;
        let mut i = 0;
        b2b.push(
            gpu.time_ms(|| {
                for _ in 0..10 {
                    let t0 = std::time::Instant::now();
                    run(&mut sets[i % nsets])?;
                    host.push(t0.elapsed().as_secs_f64() * 1e6);
                    i += 1;
                }
                Ok(())
            })? as f64
                / 10.0,
        );
    }
    b2b.sort_by(f64::total_cmp);
    host.sort_by(f64::total_cmp);
    let bytes = (4 * tok + 2 * bc) * t + (2 * e + e * N) * 4 + batch * e * N * 4;
    Ok(Row {
        ms,
        idle_ms: idle[idle.len() / 2],
        gbs: bytes as f64 / (ms * 1e-3) / 1e9,
        b2b_ms: b2b[b2b.len() / 2],
        host_us: host[host.len() / 2],
        path,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<usize> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    let chunk = arg("--chunk");
    let runs = arg("--runs").unwrap_or(25).max(1);
    // `--only I`: row I of the table alone; `--f32` / `--bf16`: one type alone.
    let only = arg("--only");
    let want32 = !args.iter().any(|a| a == "--bf16");
    let want16 = !args.iter().any(|a| a == "--f32");
    if let Err(why) = GpuContext::is_available() {
        eprintln!("skipping: no GPU ({})", why.reason());
        return;
    }
    let gpu = match GpuContext::new(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cannot open the GPU: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "selective scan, N = {N}, z/D/delta bias/softplus on; {} ({} SMs, cc {:?}); chunk {}; median of {runs}, each call after an L2 flush (do_bench's method; see the file's header)",
        gpu.device_name(),
        gpu.sm_count(),
        gpu.compute_capability(),
        chunk.map_or("auto".to_string(), |c| c.to_string())
    );
    println!(
        "{:>3} {:>5} {:>7} | {:>8} {:>7} {:>9} {:>6} | {:>8} {:>7} {:>9} {:>6}",
        "B", "E", "L", "f32 ms", "GB/s", "mamba_ssm", "x", "bf16 ms", "GB/s", "mamba_ssm", "x"
    );
    let mut worst = f64::INFINITY;
    for (i, &(batch, e, l, ref32, ref16)) in TABLE.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let skipped = || {
            Ok(Row {
                ms: f64::NAN,
                idle_ms: f64::NAN,
                gbs: f64::NAN,
                b2b_ms: f64::NAN,
                host_us: f64::NAN,
                path: None,
            })
        };
        let r32 = if want32 {
            bench::<f32>(&gpu, (batch, e, l), chunk, runs)
        } else {
            skipped()
        };
        let r16 = if want16 {
            bench::<bf16>(&gpu, (batch, e, l), chunk, runs)
        } else {
            skipped()
        };
        match (r32, r16) {
            (Ok(a), Ok(b)) => {
                let (x32, x16) = (ref32 / a.ms, ref16 / b.ms);
                for x in [x32, x16] {
                    if x.is_finite() {
                        worst = worst.min(x);
                    }
                }
                println!(
                    "{batch:>3} {e:>5} {l:>7} | {:>8.3} {:>7.0} {ref32:>9.3} {x32:>6.2} | {:>8.3} {:>7.0} {ref16:>9.3} {x16:>6.2}",
                    a.ms, a.gbs, b.ms, b.gbs
                );
                println!(
                    "    from idle ms f32 {:.3} bf16 {:.3}; back to back ms f32 {:.3} bf16 {:.3}; host queueing us f32 {:.1} bf16 {:.1}; path f32 {:?} bf16 {:?}",
                    a.idle_ms, b.idle_ms, a.b2b_ms, b.b2b_ms, a.host_us, b.host_us, a.path, b.path
                );
            }
            (a, b) => {
                println!(
                    "{batch:>3} {e:>5} {l:>7} | failed: {:?} {:?}",
                    a.err(),
                    b.err()
                );
                worst = 0.0;
            }
        }
    }
    println!("slowest speed-up over mamba_ssm: {worst:.2}x (target 1.5x)");
}
