//! The GPU causal conv1d + SiLU against a float64 CPU reference.
//! Skips (passes) without a GPU unless MAMBA_REQUIRE_GPU=1.

mod common;

use common::{Rng, gpu, rel_err};
use half::bf16;
use mamba_cuda::{ConvInputs, ConvShape, Element, GpuContext, MatView, MatViewMut};

fn shape(batch: usize, len: usize, channels: usize, width: usize) -> ConvShape {
    ConvShape {
        batch,
        len,
        channels,
        width,
    }
}

/// float64 reference: (out (batch, L, E), final window (batch, K-1, E)).
fn reference(
    s: ConvShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    win: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let ConvShape {
        batch,
        len,
        channels: e,
        width: k,
    } = s;
    // xe[b][j + K - 1] for j in -(K-1)..L
    let xe = |b: usize, j: isize, ch: usize| -> f64 {
        if j >= 0 {
            x[(b * len + j as usize) * e + ch] as f64
        } else {
            win.map_or(0.0, |w| {
                w[(b * (k - 1) + (k as isize - 1 + j) as usize) * e + ch] as f64
            })
        }
    };
    let mut out = vec![0.0; batch * len * e];
    let mut fin = vec![0.0; batch * (k - 1) * e];
    for b in 0..batch {
        for ch in 0..e {
            for l in 0..len {
                let mut acc = bias.map_or(0.0, |v| v[ch] as f64);
                for kk in 0..k {
                    acc += w[ch * k + kk] as f64
                        * xe(b, l as isize - (k as isize - 1) + kk as isize, ch);
                }
                out[(b * len + l) * e + ch] = acc / (1.0 + (-acc).exp());
            }
            for j in 0..k - 1 {
                fin[(b * (k - 1) + j) * e + ch] =
                    xe(b, len as isize - (k as isize - 1) + j as isize, ch);
            }
        }
    }
    (out, fin)
}

fn check<T: Element>(
    gpu: &GpuContext,
    rng: &mut Rng,
    s: ConvShape,
    with_bias: bool,
    with_win: bool,
    tol: f64,
) {
    let ConvShape {
        batch,
        len,
        channels: e,
        width: k,
    } = s;
    let x: Vec<f32> = rng
        .vec(batch * len * e, -2.0, 2.0)
        .into_iter()
        .map(|v| T::from_f32(v).to_f32())
        .collect();
    let w = rng.vec(e * k, -1.0, 1.0);
    let bias = with_bias.then(|| rng.vec(e, -0.5, 0.5));
    let win = with_win.then(|| rng.vec(batch * (k - 1) * e, -2.0, 2.0));
    let (o_ref, f_ref) = reference(s, &x, &w, bias.as_deref(), win.as_deref());
    let xt: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let out = gpu
        .causal_conv1d_silu_host(s, &xt, &w, bias.as_deref(), win.as_deref())
        .expect("conv");
    let o: Vec<f32> = out.out.iter().map(|v| v.to_f32()).collect();
    let eo = rel_err(&o, &o_ref);
    let ef = rel_err(&out.final_window, &f_ref);
    eprintln!(
        "{} {s:?} bias {with_bias} window {with_win}: out {eo:.2e} window {ef:.2e}",
        T::NAME
    );
    assert!(
        eo <= tol && ef <= 1e-6,
        "{} {s:?}: out err {eo:e}, window err {ef:e}",
        T::NAME
    );
}

fn sweep<T: Element>(salt: u64, tol: f64) {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(salt);
    let mut i = 0;
    for k in [1, 2, 4, 5, 8, 13, 16] {
        for len in [1, 2, 7, 1000, 5000] {
            i += 1;
            let batch = 1 + i % 3;
            let e = [1, 33, 130, 1536][i % 4];
            let e = if len == 5000 { e.min(130) } else { e };
            check::<T>(
                gpu,
                &mut rng,
                shape(batch, len, e, k),
                i % 2 == 0,
                i % 3 != 0,
                tol,
            );
        }
    }
}

#[test]
fn conv_f32_matches_f64_reference() {
    sweep::<f32>(11, 1e-6);
}

#[test]
fn conv_bf16_matches_f64_reference() {
    sweep::<bf16>(12, 1e-2);
}

/// Two calls carrying the window equal one call; x read as the x half of an
/// (L, 2E) in_proj output.
#[test]
fn two_calls_carrying_window_equal_one() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::fresh(13);
    for (k, split) in [(4usize, 1usize), (4, 2), (4, 500), (7, 3)] {
        let (batch, len, e) = (2, 1000, 40);
        let xz = rng.vec(batch * len * 2 * e, -2.0, 2.0);
        let w = rng.vec(e * k, -1.0, 1.0);
        let bias = rng.vec(e, -0.5, 0.5);
        let x: Vec<f32> = (0..batch * len)
            .flat_map(|r| xz[r * 2 * e..r * 2 * e + e].to_vec())
            .collect();
        let (o_ref, f_ref) = reference(shape(batch, len, e, k), &x, &w, Some(&bias), None);
        let xz_d = gpu.upload(&xz).unwrap();
        let w_d = gpu.upload(&w).unwrap();
        let b_d = gpu.upload(&bias).unwrap();
        let mut out = gpu.upload(&vec![f32::NAN; batch * len * e]).unwrap();
        let mut win1 = gpu.upload(&vec![f32::NAN; batch * (k - 1) * e]).unwrap();
        let mut win2 = gpu.upload(&vec![f32::NAN; batch * (k - 1) * e]).unwrap();
        let first = ConvInputs {
            x: MatView::new(&xz_d, 0, len * 2 * e, 2 * e),
            weight: &w_d,
            bias: Some(&b_d),
            initial_window: None,
        };
        let out1 = MatViewMut::new(&mut out, 0, len * e, e);
        gpu.causal_conv1d_silu(shape(batch, split, e, k), &first, out1, &mut win1)
            .unwrap();
        let second = ConvInputs {
            x: MatView::new(&xz_d, split * 2 * e, len * 2 * e, 2 * e),
            initial_window: Some(&win1),
            ..first
        };
        let out2 = MatViewMut::new(&mut out, split * e, len * e, e);
        gpu.causal_conv1d_silu(shape(batch, len - split, e, k), &second, out2, &mut win2)
            .unwrap();
        let eo = rel_err(&gpu.download(&out).unwrap(), &o_ref);
        let ef = rel_err(&gpu.download(&win2).unwrap(), &f_ref);
        eprintln!("k {k} split {split}: out {eo:.2e} window {ef:.2e}");
        assert!(eo <= 1e-6 && ef <= 1e-6);
    }
}
