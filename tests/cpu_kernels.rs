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
                    w.row_to_f32(i, &mut deq);
                    let mag: f32 = deq.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                    let tol = if dtype.block_len() > 1 { 1e-2 } else { 1e-5 } * mag + 1e-6;
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
                for tt in 0..t {
                    let xt = &xs[tt * cols..(tt + 1) * cols];
                    let mut yw = vec![0f32; rows];
                    Scalar.matvec(&w, xt, &mut yw);
                    for i in 0..rows {
                        w.row_to_f32(i, &mut deq);
                        let mag: f32 = deq.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
                        let tol = if dtype.block_len() > 1 { 1e-2 } else { 1e-5 } * mag + 1e-6;
                        let g = ym[tt * rows + i];
                        assert!(
                            (g - yw[i]).abs() <= tol,
                            "{name} matmat {dtype:?} {rows}x{cols} t{tt} row {i}: {g} vs {}",
                            yw[i]
                        );
                    }
                }
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
