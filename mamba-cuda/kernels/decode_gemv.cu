// Decode GEMV / small GEMM: y[b, r] (+)= scale_b * sum_c W[r, c] * nw[c] * x[b, c] (+ bias[r])
// for a few batch rows b, with W read in its stored type (decode_common.cuh).
//
// One warp per output row r, GEMV_WARPS rows per block (grid.x); each block
// takes GEMV_BT batch rows (grid.y), so a weight row is loaded once for up to
// 8 inputs (registers) and the other batch groups hit it in L1/L2. Each lane
// reads 8 consecutive weights (16 bytes of f16) per group; the first
// GEMV_U groups of every lane are loaded at once, before the wait for the
// previous kernel (programmatic dependent launch: the weight loads overlap
// the previous kernel's tail), the inputs (f32, in L1/L2) are read as
// float4 after it. No shared memory, no barrier: with the RMSNorm the lane
// sums the squares of the same x values it multiplies, and the scale is
// applied after the dot. Partial sums are combined with a butterfly, so every
// batch row's result has the same summation order whatever the other rows of
// the batch are (results do not depend on the batch's composition).
//
// v9: one stream takes the decode_gemv1_* entries (BT = 1, U = GEMV1_U): the
// same arithmetic with a third of the registers, so more warps (bytes) in
// flight: the head at batch 1 went from 97 to 42 us (H200, 130m, f16).
//
// flags & 1: RMSNorm: x is the f32 residual stream, scale_b =
//   1 / sqrt(mean(x[b]^2) + eps), nw the norm weight (null: 1); cols = D.
// flags & 2: accumulate: y += result (out_proj into the residual stream).

#define GEMV_THREADS 128
#define GEMV_WARPS (GEMV_THREADS / 32)
#define GEMV_BT 8
#define GEMV_U 8  // groups of 8 weights per lane loaded at once (cols <= 2048 at once)

struct GemvParams {
    const unsigned char* w;  // (rows, cols)
    const float* x;          // (batch, x_rs)
    const float* norm_w;     // (cols) or null
    const float* bias;       // (rows) or null
    float* y;                // (batch, y_rs)
    long long x_rs;
    long long y_rs;
    int rows;
    int cols;
    int batch;
    int flags;
    float eps;
    int pad;
};

// Loads groups g0 + 32 u (u < U, g < groups) of a row, times the norm
// weights when nw is set; zeros past the end.
template <int DT, int U>
__device__ __forceinline__ void gemv_load(const unsigned char* row, const float* nw, int g0, int groups,
                                          float (&w)[U][8]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int g = g0 + 32 * u;
        if (g < groups) {
            w_load8<DT>(row, g, w[u]);
        } else {
#pragma unroll
            for (int q = 0; q < 8; ++q) w[u][q] = 0.0f;
        }
    }
    if (nw != nullptr) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int g = g0 + 32 * u;
            if (g < groups) {
                const float4 a = ((const float4*)nw)[2 * g], b = ((const float4*)nw)[2 * g + 1];
                w[u][0] *= a.x; w[u][1] *= a.y; w[u][2] *= a.z; w[u][3] *= a.w;
                w[u][4] *= b.x; w[u][5] *= b.y; w[u][6] *= b.z; w[u][7] *= b.w;
            }
        }
    }
}

// BT batch rows per block (grid.y), U groups per lane loaded at once. Every
// output's arithmetic (the lane's fmaf chain over groups lane, lane + 32,
// ..., then the butterfly) is the same for every BT and U, so the batch-1
// entries (BT 1, U 4: a third of the registers, so three times the warps,
// and bytes, in flight) give the same bits as the batched ones.
template <int DT, int BT, int U>
__device__ __forceinline__ void gemv_body(const GemvParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int b0 = blockIdx.y * BT;
    const int nb = min(BT, p.batch - b0);
    const bool norm = (p.flags & 1) != 0;
    const int r = blockIdx.x * GEMV_WARPS + warp;
    const bool live = r < p.rows && nb > 0;
    const unsigned char* row = p.w + w_row_bytes<DT>(p.cols) * (live ? r : 0);
    const float* nw = norm ? p.norm_w : nullptr;
    const bool vec = (p.cols & 7) == 0 && (p.x_rs & 3) == 0;
    const int groups = p.cols >> 3;
    float w[U][8];
    if (vec && live) gemv_load<DT, U>(row, nw, lane, groups, w);
    dec_pdl_launch();
    dec_pdl_wait();
    if (!live) return;
    const float* xb = p.x + (long long)b0 * p.x_rs;
    float acc[BT], ss[BT];
#pragma unroll
    for (int j = 0; j < BT; ++j) {
        acc[j] = 0.0f;
        ss[j] = 0.0f;
    }
    if (vec) {
        for (int g0 = lane; g0 < groups; g0 += 32 * U) {
            if (g0 != lane) gemv_load<DT, U>(row, nw, g0, groups, w);
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int g = g0 + 32 * u;
                if (g < groups) {
#pragma unroll
                    for (int j = 0; j < BT; ++j) {
                        if (j < nb) {
                            const float4* xv = (const float4*)(xb + (long long)j * p.x_rs) + 2 * g;
                            const float4 a = xv[0], b = xv[1];
                            float s = acc[j];
                            s = fmaf(w[u][0], a.x, s); s = fmaf(w[u][1], a.y, s);
                            s = fmaf(w[u][2], a.z, s); s = fmaf(w[u][3], a.w, s);
                            s = fmaf(w[u][4], b.x, s); s = fmaf(w[u][5], b.y, s);
                            s = fmaf(w[u][6], b.z, s); s = fmaf(w[u][7], b.w, s);
                            acc[j] = s;
                            if (norm) {
                                float q = ss[j];
                                q = fmaf(a.x, a.x, q); q = fmaf(a.y, a.y, q);
                                q = fmaf(a.z, a.z, q); q = fmaf(a.w, a.w, q);
                                q = fmaf(b.x, b.x, q); q = fmaf(b.y, b.y, q);
                                q = fmaf(b.z, b.z, q); q = fmaf(b.w, b.w, q);
                                ss[j] = q;
                            }
                        }
                    }
                }
            }
        }
    } else {
        for (int c = lane; c < p.cols; c += 32) {
            float wv = w_load1<DT>(row, c);
            if (nw != nullptr) wv *= nw[c];
#pragma unroll
            for (int j = 0; j < BT; ++j) {
                if (j < nb) {
                    const float xv = xb[(long long)j * p.x_rs + c];
                    acc[j] = fmaf(wv, xv, acc[j]);
                    if (norm) ss[j] = fmaf(xv, xv, ss[j]);
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < BT; ++j) {
        if (j < nb) {  // nb is warp-uniform
            acc[j] = warp_sum(acc[j]);
            if (norm) ss[j] = warp_sum(ss[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < BT; ++j) {
        if (j < nb && lane == j) {
            float v = acc[j];
            if (norm) v *= 1.0f / sqrtf(ss[j] / (float)p.cols + p.eps);
            if (p.bias != nullptr) v += p.bias[r];
            float* out = p.y + (long long)(b0 + j) * p.y_rs + r;
            if (p.flags & 2) {
                *out += v;
            } else {
                *out = v;
            }
        }
    }
}

template <int DT>
__device__ __forceinline__ void gemv_body_bt(const GemvParams& p) {
    gemv_body<DT, GEMV_BT, GEMV_U>(p);
}
#ifndef GEMV1_U  // -DGEMV1_U=n: an A/B aid (MAMBA_CUDA_NVRTC_OPTIONS)
#define GEMV1_U 4
#endif
template <int DT>
__device__ __forceinline__ void gemv_body_1(const GemvParams& p) {
    gemv_body<DT, 1, GEMV1_U>(p);
}

DECODE_ENTRIES(decode_gemv, gemv_body_bt, GemvParams, GEMV_THREADS)
DECODE_ENTRIES(decode_gemv1, gemv_body_1, GemvParams, GEMV_THREADS)
