//! Micro-benchmarks of the CPU kernels on mamba-130m's shapes, every available path.
//! `cargo bench --bench kernels [-- FILTER]`. A plain std::time harness (no criterion,
//! to keep CI builds fast): each case runs for about 0.3 s and reports the fastest and
//! the median time per call, the fastest being the least disturbed on a shared machine.

use mamba_core::kernels::{Kernels, SsmStep};
use mamba_core::{DType, Isa, WeightMatrix};
use mamba_rt::cpu::{CpuKernels, isa_available};
use mamba_rt::gguf_write::encode;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn time(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut v = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) || v.len() < 5 {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |name: &str| filter.as_ref().is_none_or(|f| name.contains(f.as_str()));
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|&i| isa_available(i)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        "case", "min", "median", "rate(min)"
    );
    for &isa in &isas {
        for th in [1, threads] {
            let k = CpuKernels::with_isa(th, isa).unwrap();
            for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
                // in_proj (2E x D) and out_proj (D x E) of mamba-130m.
                for (rows, cols) in [(3072usize, 768usize), (768, 1536)] {
                    let name =
                        format!("matvec {}/{} x{th} {rows}x{cols}", isa.name(), dtype.name());
                    if !want(&name) || (isa == Isa::Scalar && th > 1) {
                        continue;
                    }
                    let data = encode(&vals(rows * cols, 1), dtype);
                    let w = WeightMatrix {
                        dtype,
                        rows,
                        cols,
                        data: &data,
                    };
                    let x = vals(cols, 2);
                    let mut y = vec![0f32; rows];
                    let (mn, md) = time(|| k.matvec(black_box(&w), black_box(&x), &mut y));
                    println!(
                        "{name:<44} {:>8.1}us {:>8.1}us {:>8.1} GB/s",
                        mn * 1e6,
                        md * 1e6,
                        data.len() as f64 / mn / 1e9
                    );
                }
                let (rows, cols, t) = (3072usize, 768usize, 64usize);
                let name = format!(
                    "matmat {}/{} x{th} {rows}x{cols} t{t}",
                    isa.name(),
                    dtype.name()
                );
                if want(&name) && isa != Isa::Scalar {
                    let data = encode(&vals(rows * cols, 1), dtype);
                    let w = WeightMatrix {
                        dtype,
                        rows,
                        cols,
                        data: &data,
                    };
                    let x = vals(cols * t, 3);
                    let mut y = vec![0f32; rows * t];
                    let (mn, md) = time(|| k.matmat(black_box(&w), black_box(&x), t, &mut y));
                    println!(
                        "{name:<44} {:>8.1}us {:>8.1}us {:>8.1} GMAC/s",
                        mn * 1e6,
                        md * 1e6,
                        (rows * cols * t) as f64 / mn / 1e9
                    );
                    // The single-threaded no_std product (f32 on dequantized 8-row
                    // panels, dot-product tiles): the baseline of the tiles above.
                    if th == 1 {
                        let simd = k.simd();
                        let (mn, md) =
                            time(|| simd.matmat(black_box(&w), black_box(&x), t, &mut y));
                        println!(
                            "{:<44} {:>8.1}us {:>8.1}us {:>8.1} GMAC/s",
                            name.replace("matmat", "matmat-panel"),
                            mn * 1e6,
                            md * 1e6,
                            (rows * cols * t) as f64 / mn / 1e9
                        );
                    }
                }
            }
            // DRAM-resident: a set of in_proj-shaped matrices (about 128 MB) read in
            // turn, as decode reads the layers (the cache-resident cases above say
            // nothing about streaming).
            for dtype in [DType::F16, DType::Q8_0, DType::Q4_0] {
                let (rows, cols) = (3072usize, 768usize);
                let name = format!("stream {}/{} x{th} {rows}x{cols}", isa.name(), dtype.name());
                if !want(&name) || isa == Isa::Scalar {
                    continue;
                }
                let one = encode(&vals(rows * cols, 1), dtype);
                let copies = (128 << 20) / one.len();
                let all: Vec<Vec<u8>> = (0..copies).map(|_| one.clone()).collect();
                let x = vals(cols, 2);
                let mut y = vec![0f32; rows];
                let (mn, md) = time(|| {
                    for data in &all {
                        let w = WeightMatrix {
                            dtype,
                            rows,
                            cols,
                            data,
                        };
                        k.matvec(black_box(&w), black_box(&x), &mut y);
                    }
                });
                let bytes = (one.len() * copies) as f64;
                println!(
                    "{name:<44} {:>8.1}us {:>8.1}us {:>8.1} GB/s",
                    mn * 1e6,
                    md * 1e6,
                    bytes / mn / 1e9
                );
            }
            let (e, n) = (1536usize, 16usize);
            let name = format!("ssm_step {} x{th} E{e} N{n}", isa.name());
            if want(&name) {
                let a: Vec<f32> = (0..e * n).map(|i| -((i % n) as f32 + 1.0)).collect();
                let (d, delta, xc, z) = (vals(e, 1), vals(e, 2), vals(e, 3), vals(e, 4));
                let (b, c) = (vals(n, 5), vals(n, 6));
                let delta: Vec<f32> = delta.iter().map(|v| v.abs() * 0.1).collect();
                let p = SsmStep {
                    a: &a,
                    d: &d,
                    delta: &delta,
                    b: &b,
                    c: &c,
                    xc: &xc,
                    z: &z,
                };
                let mut s = vec![0f32; e * n];
                let mut y = vec![0f32; e];
                let (mn, md) = time(|| k.ssm_step(black_box(&p), &mut s, &mut y));
                println!(
                    "{name:<44} {:>8.1}us {:>8.1}us {:>8.1} Gelem/s",
                    mn * 1e6,
                    md * 1e6,
                    (e * n) as f64 / mn / 1e9
                );
            }
            let name = format!("softplus_bias {} E1536", isa.name());
            if want(&name) && th == 1 {
                let bias = vals(1536, 7);
                let mut dl = vals(1536, 8);
                let (mn, md) = time(|| {
                    dl.copy_from_slice(&bias);
                    k.softplus_bias(black_box(&mut dl), &bias)
                });
                println!("{name:<44} {:>8.2}us {:>8.2}us", mn * 1e6, md * 1e6);
            }
        }
    }
}
