// Decode: the causal conv update + SiLU fused with x_proj, for a batch of
// streams whose state lives in slots.
//
// Block (chunk, batch group): CONV_CH channels of up to CONV_BT batch rows.
// Step 1, one thread per channel and batch row: xc = silu(bias + sum_k
// window[k] w[k] + x w[K-1]) with the slot's (K-1, E) window (oldest first)
// shifted in place; xc goes to global memory (for the SSM kernel) and to
// shared memory. Step 2: this chunk's part of x_proj (XD = R + 2N rows, one
// thread per row, the weight segment read once for the batch group) goes to
// part[b, chunk, :]; decode_ssm.cu sums the chunks in a fixed order, so the
// result does not depend on the batch's composition.

#define CONV_CH 128
#define CONV_BT 4  // batch rows per block (decode.rs CONV_BT)

struct ConvParams {
    const float* xz;          // (batch, xz_rs): x in columns 0..E
    const int* slots;         // (batch)
    float* state;             // slot s's layer window at state + s * slot_stride + layer_off
    const float* conv_w;      // (E, K)
    const float* conv_b;      // (E) or null
    const unsigned char* xw;  // x_proj (XD, E)
    float* xc;                // (batch, E)
    float* part;              // (batch, nchunks, XD)
    long long xz_rs;
    long long slot_stride;
    long long layer_off;
    int E;
    int K;
    int XD;
    int batch;
    int nchunks;
    int pad;
};

// x_proj groups of 8 per unrolled step (their weight loads in flight at
// once); -DCONV_XUNROLL=n is an A/B aid (MAMBA_CUDA_NVRTC_OPTIONS).
#ifndef CONV_XUNROLL
#define CONV_XUNROLL 4
#endif
#define CONV_KMAX 4  // register fast path for K <= 4 (every released model)
#ifdef DECODE_SIMPLE  // -DDECODE_SIMPLE: the plain loops only (a reference variant)
#define CONV_FAST 0
#else
#define CONV_FAST 1
#endif

template <int DT>
__device__ __forceinline__ void conv_body(const ConvParams& p) {
    __shared__ __align__(16) float sx[CONV_BT][CONV_CH];
    const int chunk = blockIdx.x;
    const int b0 = blockIdx.y * CONV_BT;
    const int nb = min(CONV_BT, p.batch - b0);
    const int t = threadIdx.x;
    const int e = chunk * CONV_CH + t;
    const int E = p.E, K = p.K;
    // Before the wait for in_proj (programmatic dependent launch): the
    // layer's conv windows, the conv weights, and an L2 prefetch of this
    // chunk's x_proj weights (nothing earlier in the step writes them).
    {
        const int c0 = chunk * CONV_CH;
        const int nbytes = (int)(w_row_bytes<DT>(min(CONV_CH, E - c0)));
        const long long off = w_row_bytes<DT>(c0);
        for (int r = t; r < p.XD; r += CONV_CH) {
            const unsigned char* seg = p.xw + w_row_bytes<DT>(E) * r + off;
            for (int o = 0; o < nbytes; o += 128) dec_prefetch_l2(seg + o);
        }
    }
    if (CONV_FAST && K <= CONV_KMAX) {
        // Every load of every batch row first, then the arithmetic and the
        // stores: a store to one slot's window could alias the next row's
        // loads as far as the compiler knows, which would serialise the rows.
        float xv[CONV_BT], wv[CONV_BT][CONV_KMAX - 1];
        float* winp[CONV_BT];
        float cw[CONV_KMAX - 1], wlast = 0.0f, cb = 0.0f;
#pragma unroll
        for (int j = 0; j < CONV_BT; ++j) {
            winp[j] = nullptr;
            xv[j] = 0.0f;
#pragma unroll
            for (int k = 0; k < CONV_KMAX - 1; ++k) wv[j][k] = 0.0f;
            if (j < nb && e < E) {
                const int slot = p.slots[b0 + j];
                winp[j] = p.state + (long long)slot * p.slot_stride + p.layer_off;
#pragma unroll
                for (int k = 0; k < CONV_KMAX - 1; ++k) {
                    if (k < K - 1) wv[j][k] = winp[j][(long long)k * E + e];
                }
            }
        }
#pragma unroll
        for (int k = 0; k < CONV_KMAX - 1; ++k) cw[k] = 0.0f;
        if (e < E) {
            const float* w = p.conv_w + (long long)e * K;
#pragma unroll
            for (int k = 0; k < CONV_KMAX - 1; ++k) {
                if (k < K - 1) cw[k] = w[k];
            }
            wlast = w[K - 1];
            cb = p.conv_b != nullptr ? p.conv_b[e] : 0.0f;
        }
        dec_pdl_launch();
        dec_pdl_wait();
#pragma unroll
        for (int j = 0; j < CONV_BT; ++j) {
            if (j < nb && e < E) xv[j] = p.xz[(long long)(b0 + j) * p.xz_rs + e];
        }
#pragma unroll
        for (int j = 0; j < CONV_BT; ++j) {
            float v = 0.0f;
            if (j < nb && e < E) {
                float acc = cb;
#pragma unroll
                for (int k = 0; k < CONV_KMAX - 1; ++k) {
                    if (k < K - 1) acc += wv[j][k] * cw[k];
                }
                acc += xv[j] * wlast;
#pragma unroll
                for (int k = 0; k < CONV_KMAX - 2; ++k) {
                    if (k + 2 < K) winp[j][(long long)k * E + e] = wv[j][k + 1];
                }
                if (K > 1) winp[j][(long long)(K - 2) * E + e] = xv[j];
                v = acc / (1.0f + expf(-acc));
                p.xc[(long long)(b0 + j) * E + e] = v;
            }
            sx[j][t] = v;
        }
    } else {
        dec_pdl_launch();
        dec_pdl_wait();
        for (int j = 0; j < CONV_BT; ++j) {
            float v = 0.0f;
            if (j < nb && e < E) {
                const int slot = p.slots[b0 + j];
                float* win = p.state + (long long)slot * p.slot_stride + p.layer_off;
                const float x = p.xz[(long long)(b0 + j) * p.xz_rs + e];
                const float* w = p.conv_w + (long long)e * K;
                float acc = p.conv_b != nullptr ? p.conv_b[e] : 0.0f;
                for (int k = 0; k < K - 1; ++k) acc += win[(long long)k * E + e] * w[k];
                acc += x * w[K - 1];
                for (int k = 0; k + 2 < K; ++k) win[(long long)k * E + e] = win[(long long)(k + 1) * E + e];
                if (K > 1) win[(long long)(K - 2) * E + e] = x;
                v = acc / (1.0f + expf(-acc));
                p.xc[(long long)(b0 + j) * E + e] = v;
            }
            sx[j][t] = v;
        }
    }
    __syncthreads();
    // x_proj partials: one thread per output row (no shuffles), the inputs
    // broadcast from shared memory, the weight row segment read 8 at a time.
    const int c0 = chunk * CONV_CH;
    const int ncols = min(CONV_CH, E - c0);
    const long long rb = w_row_bytes<DT>(E);
    const bool vec = (E & 7) == 0;  // then c0 and ncols are multiples of 8 too
    for (int r = t; r < p.XD; r += CONV_CH) {
        const unsigned char* row = p.xw + rb * r;
        float acc[CONV_BT];
#pragma unroll
        for (int j = 0; j < CONV_BT; ++j) acc[j] = 0.0f;
        if (vec) {
#pragma unroll CONV_XUNROLL
            for (int g = 0; g < (ncols >> 3); ++g) {
                float w[8];
                w_load8<DT>(row, (c0 >> 3) + g, w);
#pragma unroll
                for (int j = 0; j < CONV_BT; ++j) {
                    if (j < nb) {
                        const float4* s4 = (const float4*)&sx[j][8 * g];
                        const float4 a = s4[0], b = s4[1];
                        float s = acc[j];
                        s = fmaf(w[0], a.x, s); s = fmaf(w[1], a.y, s);
                        s = fmaf(w[2], a.z, s); s = fmaf(w[3], a.w, s);
                        s = fmaf(w[4], b.x, s); s = fmaf(w[5], b.y, s);
                        s = fmaf(w[6], b.z, s); s = fmaf(w[7], b.w, s);
                        acc[j] = s;
                    }
                }
            }
        } else {
            for (int c = 0; c < ncols; ++c) {
                const float w = w_load1<DT>(row, c0 + c);
#pragma unroll
                for (int j = 0; j < CONV_BT; ++j) {
                    if (j < nb) acc[j] = fmaf(w, sx[j][c], acc[j]);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < CONV_BT; ++j) {
            if (j < nb) p.part[((long long)(b0 + j) * p.nchunks + chunk) * p.XD + r] = acc[j];
        }
    }
}

DECODE_ENTRIES(decode_conv, conv_body, ConvParams, CONV_CH)
