//! The GPU selective scan against a float64 CPU reference on fresh random
//! inputs. Skips (passes) without a GPU unless MAMBA_REQUIRE_GPU=1.

mod common;

use common::{Rng, gpu, rel_err};
use half::bf16;
use mamba_cuda::{
    Element, GpuContext, HostScanInputs, MatView, ScanInputs, ScanPath, ScanShape, ScanSplit,
};

/// Inputs as f32 (already rounded to T where they are T).
struct Case {
    shape: ScanShape,
    u: Vec<f32>,
    delta: Vec<f32>,
    z: Option<Vec<f32>>,
    b: Vec<f32>,
    c: Vec<f32>,
    a: Vec<f32>,
    d: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
    s0: Option<Vec<f32>>,
}

fn round_to<T: Element>(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| T::from_f32(x).to_f32()).collect()
}

fn make_case<T: Element>(rng: &mut Rng, shape: ScanShape, flags: u32) -> Case {
    let ScanShape {
        batch,
        len,
        channels: e,
        state: n,
    } = shape;
    let tok = batch * len * e;
    let mut delta = rng.vec(tok, -3.0, 1.0);
    // A few large values take the softplus(v) = v branch.
    for _ in 0..tok / 97 {
        let i = rng.below(tok);
        delta[i] = rng.uniform(20.0, 24.0);
    }
    let a = (0..e * n).map(|_| -rng.uniform(0.0, 2.8).exp()).collect();
    Case {
        shape,
        u: round_to::<T>(rng.vec(tok, -2.0, 2.0)),
        delta: round_to::<T>(delta),
        z: (flags & 1 != 0).then(|| round_to::<T>(rng.vec(tok, -4.0, 4.0))),
        b: round_to::<T>(rng.vec(batch * len * n, -1.5, 1.5)),
        c: round_to::<T>(rng.vec(batch * len * n, -1.5, 1.5)),
        a,
        d: (flags & 2 != 0).then(|| rng.vec(e, -1.0, 1.0)),
        bias: (flags & 4 != 0).then(|| rng.vec(e, -2.0, 0.5)),
        s0: (flags & 8 != 0).then(|| rng.vec(batch * e * n, -1.0, 1.0)),
    }
}

fn softplus(v: f64) -> f64 {
    if v > 20.0 { v } else { v.exp().ln_1p() }
}

/// float64 reference: (y (batch, L, E), final state (batch, E, N)).
fn reference(k: &Case) -> (Vec<f64>, Vec<f64>) {
    let ScanShape {
        batch,
        len,
        channels: e,
        state: n,
    } = k.shape;
    let mut y = vec![0.0f64; batch * len * e];
    let mut fin = vec![0.0f64; batch * e * n];
    for b in 0..batch {
        for ch in 0..e {
            let mut s: Vec<f64> = (0..n)
                .map(|i| {
                    k.s0.as_ref()
                        .map_or(0.0, |s0| s0[(b * e + ch) * n + i] as f64)
                })
                .collect();
            for l in 0..len {
                let t = (b * len + l) * e + ch;
                let bias = k.bias.as_ref().map_or(0.0, |v| v[ch] as f64);
                let dt = softplus(k.delta[t] as f64 + bias);
                let u = k.u[t] as f64;
                let mut acc = 0.0;
                for (i, si) in s.iter_mut().enumerate() {
                    let bc = (b * len + l) * n + i;
                    *si = (dt * k.a[ch * n + i] as f64).exp() * *si + dt * k.b[bc] as f64 * u;
                    acc += *si * k.c[bc] as f64;
                }
                acc += k.d.as_ref().map_or(0.0, |d| d[ch] as f64) * u;
                if let Some(z) = &k.z {
                    let z = z[t] as f64;
                    acc *= z / (1.0 + (-z).exp());
                }
                y[t] = acc;
            }
            fin[(b * e + ch) * n..(b * e + ch + 1) * n].copy_from_slice(&s);
        }
    }
    (y, fin)
}

fn to_t<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

fn run_host<T: Element>(
    gpu: &GpuContext,
    k: &Case,
    chunk_len: Option<usize>,
    split: ScanSplit,
) -> (Vec<f32>, Vec<f32>, ScanPath) {
    let (u, delta, b, c) = (
        to_t::<T>(&k.u),
        to_t::<T>(&k.delta),
        to_t::<T>(&k.b),
        to_t::<T>(&k.c),
    );
    let z = k.z.as_ref().map(|z| to_t::<T>(z));
    let out = gpu
        .selective_scan_host(
            k.shape,
            &HostScanInputs {
                u: &u,
                delta: &delta,
                z: z.as_deref(),
                b: &b,
                c: &c,
                a: &k.a,
                d: k.d.as_deref(),
                delta_bias: k.bias.as_deref(),
                initial_state: k.s0.as_deref(),
                chunk_len,
                split,
            },
        )
        .expect("scan");
    (
        out.y.iter().map(|v| v.to_f32()).collect(),
        out.final_state,
        out.path,
    )
}

fn check<T: Element>(
    gpu: &GpuContext,
    rng: &mut Rng,
    shape: ScanShape,
    flags: u32,
    chunk: Option<usize>,
    split: ScanSplit,
    tol: f64,
) -> ScanPath {
    let k = make_case::<T>(rng, shape, flags);
    let (y_ref, s_ref) = reference(&k);
    let (y, s, path) = run_host::<T>(gpu, &k, chunk, split);
    let (ey, es) = (rel_err(&y, &y_ref), rel_err(&s, &s_ref));
    eprintln!(
        "{} {shape:?} flags {flags:04b} chunk {chunk:?} {split:?}: y {ey:.2e} state {es:.2e}",
        T::NAME
    );
    assert!(
        ey <= tol && es <= tol,
        "{} {shape:?} flags {flags:b} chunk {chunk:?} {split:?}: y err {ey:e}, state err {es:e}",
        T::NAME
    );
    if split == ScanSplit::ThreeKernels {
        assert_ne!(path, ScanPath::OneLaunch);
    }
    path
}

fn shape(batch: usize, len: usize, channels: usize, state: usize) -> ScanShape {
    ScanShape {
        batch,
        len,
        channels,
        state,
    }
}

fn sweep<T: Element>(salt: u64, tol: f64) {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(salt);
    let mut i = 0u32;
    for n in [1, 16, 64, 256, 3, 100] {
        for l in [1, 7, 1000, 5000] {
            i += 1;
            let batch = 1 + (i as usize % 3);
            // Fewer channels where the work is large, so the sweep stays quick.
            let e = match (n, l) {
                (_, 5000) if n >= 64 => 3,
                (256, _) => 5,
                // 40 and 136 take the staged body (N <= 16, rows 16-byte
                // aligned; 136 ends in a partial block), 33 and 130 the plain one.
                _ => [40, 136, 33, 130][i as usize % 4],
            };
            let flags = ((i * 7 + 3) % 16) | 1; // z mostly on
            // Split calls run as one launch or three kernels by turns.
            let split = [
                ScanSplit::Auto,
                ScanSplit::OneLaunch,
                ScanSplit::ThreeKernels,
            ][i as usize % 3];
            check::<T>(
                gpu,
                &mut rng,
                shape(batch, l, e, n),
                flags,
                None,
                split,
                tol,
            );
        }
    }
    // Every flag combination, and the single-pass and many-chunk paths.
    for flags in 0..16 {
        let split = [ScanSplit::OneLaunch, ScanSplit::ThreeKernels][flags as usize % 2];
        check::<T>(
            gpu,
            &mut rng,
            shape(2, 300, 40, 16),
            flags,
            None,
            split,
            tol,
        );
    }
    for chunk in [Some(1), Some(37), Some(64), Some(1000), Some(5000)] {
        check::<T>(
            gpu,
            &mut rng,
            shape(2, 1000, 70, 16),
            15,
            chunk,
            ScanSplit::Auto,
            tol,
        );
        // The staged body: tiles of 8 (f32) or 16 (bf16) tokens, chunks
        // not a multiple of them; one launch (where it fits: not at 1000
        // chunks of 1 token) and three kernels.
        for split in [ScanSplit::OneLaunch, ScanSplit::ThreeKernels] {
            let path = check::<T>(
                gpu,
                &mut rng,
                shape(2, 1000, 136, 16),
                15,
                chunk,
                split,
                tol,
            );
            // 16 chunks x 2 channel blocks x 2 sequences = 64 blocks fit
            // any GPU with 13 SMs at 5 blocks each (an H200 has 132).
            if split == ScanSplit::OneLaunch && chunk == Some(64) {
                assert_eq!(path, ScanPath::OneLaunch, "{}", T::NAME);
            }
        }
    }
}

#[test]
fn scan_f32_matches_f64_reference() {
    sweep::<f32>(1, 1e-5);
}

#[test]
fn scan_bf16_matches_f64_reference() {
    sweep::<bf16>(2, 1e-2);
}

#[test]
fn large_batch_one_pass_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(3);
    // Enough channels that the planner does not split the sequence.
    check::<f32>(
        gpu,
        &mut rng,
        shape(3, 64, 40000, 16),
        15,
        None,
        ScanSplit::Auto,
        1e-5,
    );
}

/// Two calls carrying the state equal one call (prefill in pieces).
#[test]
fn two_calls_carrying_state_equal_one() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(4);
    for (n, split) in [(16usize, 413usize), (64, 1), (5, 999)] {
        let (batch, len, e) = (2, 1000, 24);
        let k = make_case::<f32>(&mut rng, shape(batch, len, e, n), 15);
        let (y_ref, s_ref) = reference(&k);
        let (y_one, s_one, _) = run_host::<f32>(gpu, &k, None, ScanSplit::Auto);
        let part = |v: &[f32], w: usize, from: usize, to: usize| -> Vec<f32> {
            (0..batch)
                .flat_map(|b| v[(b * len + from) * w..(b * len + to) * w].to_vec())
                .collect()
        };
        let first = Case {
            shape: shape(batch, split, e, n),
            u: part(&k.u, e, 0, split),
            delta: part(&k.delta, e, 0, split),
            z: k.z.as_ref().map(|z| part(z, e, 0, split)),
            b: part(&k.b, n, 0, split),
            c: part(&k.c, n, 0, split),
            a: k.a.clone(),
            d: k.d.clone(),
            bias: k.bias.clone(),
            s0: k.s0.clone(),
        };
        let (y1, s1, _) = run_host::<f32>(gpu, &first, None, ScanSplit::OneLaunch);
        let second = Case {
            shape: shape(batch, len - split, e, n),
            u: part(&k.u, e, split, len),
            delta: part(&k.delta, e, split, len),
            z: k.z.as_ref().map(|z| part(z, e, split, len)),
            b: part(&k.b, n, split, len),
            c: part(&k.c, n, split, len),
            s0: Some(s1),
            ..first
        };
        let (y2, s2, _) = run_host::<f32>(gpu, &second, None, ScanSplit::OneLaunch);
        let mut y_two = vec![0.0f32; y_one.len()];
        for b in 0..batch {
            y_two[b * len * e..(b * len + split) * e]
                .copy_from_slice(&y1[b * split * e..(b + 1) * split * e]);
            y_two[(b * len + split) * e..(b + 1) * len * e]
                .copy_from_slice(&y2[b * (len - split) * e..(b + 1) * (len - split) * e]);
        }
        let one: Vec<f64> = y_one.iter().map(|&v| v as f64).collect();
        let e_two = rel_err(&y_two, &one);
        let e_state = rel_err(&s2, &s_one.iter().map(|&v| v as f64).collect::<Vec<_>>());
        eprintln!("n {n} split {split}: two vs one y {e_two:.2e} state {e_state:.2e}");
        assert!(e_two <= 1e-5 && e_state <= 1e-5);
        assert!(rel_err(&y_two, &y_ref) <= 1e-5 && rel_err(&s2, &s_ref) <= 1e-5);
    }
}

/// u and z as the halves of one (batch, L, 2E) in_proj output; B and C as
/// slices of one (batch, L, R + 2N) x_proj output; y into a wider buffer.
#[test]
fn strided_views_of_projection_outputs() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(5);
    let (batch, len, e, n, r) = (2, 333, 48, 16, 3);
    let k = make_case::<f32>(&mut rng, shape(batch, len, e, n), 15);
    let (y_ref, s_ref) = reference(&k);
    let rows = batch * len;
    let mut xz = vec![0.0f32; rows * 2 * e];
    let mut xdbc = vec![0.0f32; rows * (r + 2 * n)];
    let z = k.z.as_ref().expect("z on");
    for row in 0..rows {
        xz[row * 2 * e..row * 2 * e + e].copy_from_slice(&k.u[row * e..(row + 1) * e]);
        xz[row * 2 * e + e..(row + 1) * 2 * e].copy_from_slice(&z[row * e..(row + 1) * e]);
        let w = r + 2 * n;
        xdbc[row * w + r..row * w + r + n].copy_from_slice(&k.b[row * n..(row + 1) * n]);
        xdbc[row * w + r + n..(row + 1) * w].copy_from_slice(&k.c[row * n..(row + 1) * n]);
    }
    let xz_d = gpu.upload(&xz).unwrap();
    let xdbc_d = gpu.upload(&xdbc).unwrap();
    let delta_d = gpu.upload(&k.delta).unwrap();
    let a_d = gpu.upload(&k.a).unwrap();
    let d_d = gpu.upload(k.d.as_ref().unwrap()).unwrap();
    let bias_d = gpu.upload(k.bias.as_ref().unwrap()).unwrap();
    let s0_d = gpu.upload(k.s0.as_ref().unwrap()).unwrap();
    // y lands in the second half of an (L, 2E) buffer; the first half must stay untouched.
    let mut y_d = gpu.upload(&vec![f32::NAN; rows * 2 * e]).unwrap();
    let mut fin = gpu.upload(&vec![f32::NAN; batch * e * n]).unwrap();
    let w = r + 2 * n;
    let inputs = ScanInputs {
        u: MatView::new(&xz_d, 0, len * 2 * e, 2 * e),
        delta: delta_d.as_mat(len, e),
        z: Some(MatView::new(&xz_d, e, len * 2 * e, 2 * e)),
        b: MatView::new(&xdbc_d, r, len * w, w),
        c: MatView::new(&xdbc_d, r + n, len * w, w),
        a: &a_d,
        d: Some(&d_d),
        delta_bias: Some(&bias_d),
        initial_state: Some(&s0_d),
        chunk_len: None,
        split: ScanSplit::Auto,
    };
    let y_view = mamba_cuda::MatViewMut::new(&mut y_d, e, len * 2 * e, 2 * e);
    gpu.selective_scan(shape(batch, len, e, n), &inputs, y_view, &mut fin)
        .unwrap();
    let y_all = gpu.download(&y_d).unwrap();
    let y: Vec<f32> = (0..rows)
        .flat_map(|row| y_all[row * 2 * e + e..(row + 1) * 2 * e].to_vec())
        .collect();
    assert!((0..rows).all(|row| {
        y_all[row * 2 * e..row * 2 * e + e]
            .iter()
            .all(|v| v.is_nan())
    }));
    let (ey, es) = (
        rel_err(&y, &y_ref),
        rel_err(&gpu.download(&fin).unwrap(), &s_ref),
    );
    eprintln!("strided: y {ey:.2e} state {es:.2e}");
    assert!(ey <= 1e-5 && es <= 1e-5);
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(gpu) = gpu() else { return };
    let x = vec![0.5f32; 10];
    let inputs = |a: &'static [f32]| HostScanInputs {
        u: &x,
        delta: &x,
        z: None,
        b: &x,
        c: &x,
        a,
        d: None,
        delta_bias: None,
        initial_state: None,
        chunk_len: None,
        split: ScanSplit::Auto,
    };
    // u too short for (1, 10, 2).
    assert!(
        gpu.selective_scan_host(shape(1, 10, 2, 1), &inputs(&[-1.0, -1.0]))
            .is_err()
    );
    // N = 0.
    assert!(
        gpu.selective_scan_host(shape(1, 10, 1, 0), &inputs(&[]))
            .is_err()
    );
    // A of the wrong length.
    assert!(
        gpu.selective_scan_host(shape(1, 10, 1, 1), &inputs(&[-1.0, -1.0]))
            .is_err()
    );
}
