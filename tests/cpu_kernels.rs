//! Every SIMD kernel path against the scalar reference, on odd shapes.
//!
//! Tolerances: f32 arithmetic in another order (SIMD lanes, FMA, the vectorized exp/log)
//! is held to 1e-5 relative of the magnitude sum (sum |w x|) (the scan output, a sum
//! that cancels, to 1e-4); the Q8_0/Q4_0 mat-vec of
//! the SIMD paths quantizes the activations to int8 per block of 32 as ggml does, so it
//! is held to 1e-2 relative of the magnitude sum (half a step of 1/127 per element).

use mamba_core::kernels::{Kernels, Scalar, SsmStep};
use mamba_core::{DType, Isa, Simd, WeightMatrix};
use mamba_rt::cpu::{CpuKernels, isa_available, simd_for};
use mamba_rt::gguf_write::encode;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn v(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * s).collect()
    }
}

fn paths() -> Vec<Simd> {
    Isa::ALL
        .into_iter()
        .filter(|&i| isa_available(i))
        .map(|i| simd_for(i).unwrap())
        .collect()
}

/// The tolerance for row `i` of `w` times `x` (see the module doc): 1e-2 (quantized) or
/// 1e-5 (float) of the magnitude sum, plus 1e-6. `deq` is scratch of `w.cols` floats.
fn row_tolerance(w: &WeightMatrix<'_>, i: usize, x: &[f32], deq: &mut [f32]) -> f32 {
    w.row_to_f32(i, deq);
    let mag: f32 = deq.iter().zip(x).map(|(a, b)| (a * b).abs()).sum();
    let rel = if w.dtype.block_len() > 1 { 1e-2 } else { 1e-5 };
    rel * mag + 1e-6
}

/// `ym` (t x rows), a `matmat` of `w` by the t rows of `xs`, against per-token scalar
/// mat-vecs, row by row within [`row_tolerance`].
fn assert_matmat_matches_scalar(
    name: &str,
    w: &WeightMatrix<'_>,
    xs: &[f32],
    t: usize,
    ym: &[f32],
) {
    let (dtype, rows, cols) = (w.dtype, w.rows, w.cols);
    let mut deq = vec![0f32; cols];
    for tt in 0..t {
        let xt = &xs[tt * cols..(tt + 1) * cols];
        let mut yw = vec![0f32; rows];
        Scalar.matvec(w, xt, &mut yw);
        for i in 0..rows {
            let tol = row_tolerance(w, i, xt, &mut deq);
            let g = ym[tt * rows + i];
            assert!(
                (g - yw[i]).abs() <= tol,
                "{name} matmat {dtype:?} {rows}x{cols} t{t} tok {tt} row {i}: {g} vs {}",
                yw[i]
            );
        }
    }
}

fn check_matvec<K: Kernels>(k: &K, name: &str) {
    let mut r = Rng(0x1234_5678);
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
    ] {
        let col_set: &[usize] = if dtype.block_len() > 1 {
            &[32, 64, 96, 768, 1536, 8192 + 64]
        } else {
            &[1, 7, 16, 48, 51, 769, 1536]
        };
        for &cols in col_set {
            for rows in [1usize, 5, 33, 200] {
                let wv = r.v(rows * cols, 0.5);
                let data = encode(&wv, dtype);
                let w = WeightMatrix {
                    dtype,
                    rows,
                    cols,
                    data: &data,
                };
                let x = r.v(cols, 2.0);
                let mut want = vec![0f32; rows];
                Scalar.matvec(&w, &x, &mut want);
                let mut got = vec![0f32; rows];
                k.matvec(&w, &x, &mut got);
                let mut deq = vec![0f32; cols];
                for i in 0..rows {
                    let tol = row_tolerance(&w, i, &x, &mut deq);
                    assert!(
                        (got[i] - want[i]).abs() <= tol,
                        "{name} {dtype:?} {rows}x{cols} row {i}: {} vs {} (tol {tol})",
                        got[i],
                        want[i]
                    );
                }
                // The prefill product against per-token scalar mat-vecs.
                let t = 7;
                let xs = r.v(t * cols, 1.0);
                let mut ym = vec![0f32; t * rows];
                k.matmat(&w, &xs, t, &mut ym);
                assert_matmat_matches_scalar(name, &w, &xs, t, &ym);
            }
        }
    }
}

#[test]
fn matvec_and_matmat_match_scalar_on_every_path() {
    for s in paths() {
        check_matvec(&s, s.isa().name());
    }
}

#[test]
fn threaded_kernels_match_scalar() {
    for s in paths() {
        for threads in [2, 3] {
            let k = CpuKernels::with_isa(threads, s.isa()).unwrap();
            check_matvec(&k, &format!("{} x{threads}", s.isa().name()));
        }
    }
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

#[test]
fn scan_conv_softplus_match_scalar_on_every_path() {
    let mut r = Rng(99);
    for s in paths() {
        let name = s.isa().name();
        for (e, n) in [(1536usize, 16usize), (37, 16), (40, 5), (19, 24), (8, 1)] {
            let a: Vec<f32> = (0..e * n).map(|i| -((i % n) as f32 + 1.0) * 0.7).collect();
            let d = r.v(e, 1.0);
            let mut delta = r.v(e, 8.0);
            delta.push(30.0); // the v > 20 branch
            delta.push(-30.0);
            let bias = r.v(delta.len(), 1.0);
            let mut want_d = delta.clone();
            Scalar.softplus_bias(&mut want_d, &bias);
            s.softplus_bias(&mut delta, &bias);
            close(&delta, &want_d, 1e-5, &format!("{name} softplus"));
            let delta = &delta[..e];
            let b = r.v(n, 1.0);
            let c = r.v(n, 1.0);
            let xc = r.v(e, 2.0);
            let z = r.v(e, 12.0);
            let p = SsmStep {
                a: &a,
                d: &d,
                delta,
                b: &b,
                c: &c,
                xc: &xc,
                z: &z,
            };
            let st0 = r.v(e * n, 1.0);
            let (mut s1, mut s2) = (st0.clone(), st0);
            let (mut y1, mut y2) = (vec![0f32; e], vec![0f32; e]);
            for _ in 0..3 {
                Scalar.ssm_step(&p, &mut s1, &mut y1);
                s.ssm_step(&p, &mut s2, &mut y2);
            }
            close(&s2, &s1, 1e-5, &format!("{name} ssm state e{e} n{n}"));
            close(&y2, &y1, 1e-4, &format!("{name} ssm y e{e} n{n}"));
            for k in [1usize, 2, 4, 5] {
                let w = r.v(e * k, 1.0);
                let cb = if k == 2 { Vec::new() } else { r.v(e, 1.0) };
                let win0 = r.v((k - 1) * e, 1.0);
                let (mut w1, mut w2) = (win0.clone(), win0);
                let (mut o1, mut o2) = (vec![0f32; e], vec![0f32; e]);
                for _ in 0..3 {
                    let x = r.v(e, 3.0);
                    Scalar.conv_step(&mut w1, &x, &w, &cb, k, &mut o1);
                    s.conv_step(&mut w2, &x, &w, &cb, k, &mut o2);
                    close(&o2, &o1, 1e-5, &format!("{name} conv k{k}"));
                    assert_eq!(w1, w2, "{name} conv window k{k}");
                }
            }
        }
    }
}

#[test]
fn mamba_kernels_names_parse() {
    for i in Isa::ALL {
        assert_eq!(Isa::from_name(i.name()), Some(i));
    }
    assert!(CpuKernels::with_isa(1, Isa::Scalar).is_ok());
}

/// The prefill product on block-sized token counts (int8 tiles of 6 tokens x 32 rows,
/// f32 tiles of 6 x 4 and their tails), single and threaded, against scalar mat-vecs.
#[test]
fn matmat_tiles_and_tails_match_scalar() {
    let mut r = Rng(0x51ab);
    for s in paths() {
        let ks: Vec<(String, Box<dyn Kernels>)> = vec![
            (s.isa().name().to_string(), Box::new(s)),
            (
                format!("{} x2", s.isa().name()),
                Box::new(CpuKernels::with_isa(2, s.isa()).unwrap()),
            ),
        ];
        for (name, k) in &ks {
            for dtype in [
                DType::F32,
                DType::F16,
                DType::BF16,
                DType::Q8_0,
                DType::Q4_0,
            ] {
                let shapes: &[(usize, usize)] = if dtype.block_len() > 1 {
                    &[(70, 96), (33, 2080 + 32), (96, 64)]
                } else {
                    &[(70, 48), (33, 1031), (9, 16)]
                };
                for &(rows, cols) in shapes {
                    let data = encode(&r.v(rows * cols, 0.5), dtype);
                    let w = WeightMatrix {
                        dtype,
                        rows,
                        cols,
                        data: &data,
                    };
                    for t in [3usize, 6, 13, 40] {
                        let xs = r.v(t * cols, 1.0);
                        let mut ym = vec![0f32; t * rows];
                        k.matmat(&w, &xs, t, &mut ym);
                        assert_matmat_matches_scalar(name, &w, &xs, t, &ym);
                    }
                }
            }
        }
    }
}

/// The block scan (channel-vectorized on AVX-512 for N = 16) against the scalar
/// per-token steps, single and threaded, with channel tails.
#[test]
fn ssm_scan_matches_scalar_steps() {
    use mamba_core::kernels::SsmScan;
    let mut r = Rng(0x5ca7);
    for s in paths() {
        let ks: Vec<(String, Box<dyn Kernels>)> = vec![
            (s.isa().name().to_string(), Box::new(s)),
            (
                format!("{} x2", s.isa().name()),
                Box::new(CpuKernels::with_isa(2, s.isa()).unwrap()),
            ),
        ];
        for (name, k) in &ks {
            for (e, n, rk, t, ds) in [
                (1536usize, 16usize, 48usize, 9usize, 0.5f32),
                (37, 16, 3, 5, 0.5),
                (300, 16, 2, 4, 12.0),
                (40, 5, 2, 3, 0.5),
            ] {
                let a: Vec<f32> = (0..e * n).map(|i| -((i % n) as f32 + 1.0) * 0.7).collect();
                let d = r.v(e, 1.0);
                let delta: Vec<f32> = r.v(t * e, 1.0).iter().map(|v| v.abs() * ds).collect();
                let xdbc = r.v(t * (rk + 2 * n), 1.0);
                let xc = r.v(t * e, 2.0);
                let xz = r.v(t * 2 * e, 6.0);
                let p = SsmScan {
                    a: &a,
                    d: &d,
                    delta: &delta,
                    xdbc: &xdbc,
                    dt_rank: rk,
                    xc: &xc,
                    xz: &xz,
                    t,
                };
                let st0 = r.v(e * n, 1.0);
                let (mut s1, mut s2) = (st0.clone(), st0);
                let (mut y1, mut y2) = (vec![0f32; t * e], vec![0f32; t * e]);
                Scalar.ssm_scan(&p, &mut s1, &mut y1);
                k.ssm_scan(&p, &mut s2, &mut y2);
                close(&s2, &s1, 1e-5, &format!("{name} scan state e{e} n{n} t{t}"));
                close(&y2, &y1, 1e-4, &format!("{name} scan y e{e} n{n} t{t}"));
            }
        }
    }
}

/// The block conv (channels split across threads, taps transposed) and the block
/// softplus against the per-token scalar steps.
#[test]
fn conv_block_and_softplus_block_match_scalar() {
    let mut r = Rng(0xc0f);
    for s in paths() {
        let ks: Vec<(String, Box<dyn Kernels>)> = vec![
            (s.isa().name().to_string(), Box::new(s)),
            (
                format!("{} x2", s.isa().name()),
                Box::new(CpuKernels::with_isa(2, s.isa()).unwrap()),
            ),
        ];
        for (name, k) in &ks {
            for (e, kk, t) in [
                (1536usize, 4usize, 9usize),
                (37, 4, 2),
                (300, 1, 3),
                (40, 2, 5),
                (19, 5, 1),
            ] {
                let w = r.v(e * kk, 1.0);
                let cb = if kk == 2 { Vec::new() } else { r.v(e, 1.0) };
                let win0 = r.v((kk - 1) * e, 1.0);
                let ldx = 2 * e + 3;
                let x = r.v(t * ldx, 3.0);
                let (mut w1, mut w2) = (win0.clone(), win0);
                let (mut o1, mut o2) = (vec![0f32; t * e], vec![0f32; t * e]);
                for tt in 0..t {
                    Scalar.conv_step(
                        &mut w1,
                        &x[tt * ldx..tt * ldx + e],
                        &w,
                        &cb,
                        kk,
                        &mut o1[tt * e..(tt + 1) * e],
                    );
                }
                k.conv_block(&mut w2, &x, ldx, t, &w, &cb, kk, &mut o2);
                close(
                    &o2,
                    &o1,
                    1e-5,
                    &format!("{name} conv_block e{e} k{kk} t{t}"),
                );
                assert_eq!(w1, w2, "{name} conv_block window e{e} k{kk} t{t}");
                let bias = r.v(e, 1.0);
                let mut d1 = r.v(t * e, 8.0);
                let mut d2 = d1.clone();
                for row in d1.chunks_exact_mut(e) {
                    Scalar.softplus_bias(row, &bias);
                }
                k.softplus_bias_block(&mut d2, &bias);
                close(&d2, &d1, 1e-5, &format!("{name} softplus_block e{e} t{t}"));
            }
        }
    }
}
