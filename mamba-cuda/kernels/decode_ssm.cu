// Decode: dt_proj + softplus + the selective state update + D skip + z gate,
// for a batch of streams whose (E, N) SSM state lives in slots (updated in
// place).
//
// Block (SSM_CH channels, SSM_BT batch rows), 4 threads per channel: thread q
// of a channel owns states 4q .. 4q+3 (one float4 per batch row; N = 16), so
// a warp reads 8 channels' states as 512 contiguous bytes per row (coalesced;
// v3 had one thread per channel, each reading 64 bytes at a 64-byte stride,
// and 64 states in registers). First the x_proj chunk partials of the rows
// are summed (fixed order) into shared memory: dt (R), B (N), C (N). dt_proj:
// the channel's 4 threads take every 4th group of the row and combine with a
// butterfly; delta = softplus(W_dt[e] . dt + b_dt[e]); s[n] = exp(delta
// A[e,n]) s[n] + delta B[n] xc[e]; y = (sum_n s[n] C[n] (4 partials, a
// butterfly) + D[e] xc[e]) * silu(z[e]). Every row's summation order is the
// same whatever the other rows of the batch are. y is written as f32 and,
// when y16 is set, as f16 / bf16 too (the input of a cuBLAS out_proj).

#define SSM_CH 128            // channels per block (decode.rs SSM_CH)
#define SSM_THREADS (4 * SSM_CH)
#define SSM_BT 4              // batch rows per block (decode.rs SSM_BT)
#define SSM_NMAX 16           // float4 fast path for N <= 16, N % 4 == 0
#ifdef DECODE_SIMPLE  // -DDECODE_SIMPLE: the plain loops only (a reference variant)
#define SSM_FAST 0
#else
#define SSM_FAST 1
#endif

struct SsmParams {
    const float* part;         // (batch, nchunks, XD)
    const unsigned char* dtw;  // dt_proj (E, R)
    const float* dt_b;         // (E)
    const float* a;            // (E, N)
    const float* d;            // (E)
    const float* xc;           // (batch, E)
    const float* xz;           // (batch, xz_rs): z in columns E..2E
    const int* slots;          // (batch)
    float* state;              // slot s's layer SSM state at state + s * slot_stride + ssm_off
    float* y;                  // (batch, E)
    void* y16;                 // (batch, E) or null
    long long xz_rs;
    long long slot_stride;
    long long ssm_off;
    int E;
    int N;
    int R;
    int XD;
    int nchunks;
    int y16_bf16;  // y16 type: 0 f16, 1 bf16
    int vec4;      // N % 4 == 0 and every state row 16-byte aligned: float4 path
    int batch;
};

__device__ __forceinline__ float quad_sum(float v) {  // the 4 lanes of a channel; same bits in each
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
}

// The arithmetic below is shared by the fused kernel (decode_ssm_*) and the
// split pair (decode_ssm_prep_* + decode_ssm_stream, v5): the same source
// for every value, so both give the same bits and a stream's results do not
// depend on which path its batch size takes.

// Row i's column col of x_proj: the chunk partials summed in a fixed order.
__device__ __forceinline__ float ssm_part_sum(const float* part, long long i, int nchunks, int XD, int col) {
    const float* pp = part + i * nchunks * XD + col;
    float s = 0.0f;
#pragma unroll 8
    for (int c = 0; c < nchunks; ++c) s += pp[(long long)c * XD];
    return s;
}

// dt_proj partial of lane q for NB rows (dt of row j at sd + j * XD): lane q
// takes groups q, q + 4, ... of the row (R % 8 == 0) or elements q, q + 4, ...
// Every row's fmaf chain is the same whatever NB and nb are.
template <int DT, int NB>
__device__ __forceinline__ void ssm_dt_dot(const unsigned char* row, const float* sd, int XD, int R, int q, int nb,
                                           float* acc) {
#pragma unroll
    for (int j = 0; j < NB; ++j) acc[j] = 0.0f;
    if ((R & 7) == 0) {
        const int G = R >> 3;
        for (int g0 = q; g0 < G; g0 += 8) {
            float w[2][8];
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                if (g0 + 4 * u < G) {
                    w_load8<DT>(row, g0 + 4 * u, w[u]);
                } else {
#pragma unroll
                    for (int k = 0; k < 8; ++k) w[u][k] = 0.0f;
                }
            }
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const int g = g0 + 4 * u;
                if (g < G) {
#pragma unroll
                    for (int j = 0; j < NB; ++j) {
                        if (j < nb) {
                            float s = acc[j];
#pragma unroll
                            for (int k = 0; k < 8; ++k) s = fmaf(w[u][k], sd[j * XD + 8 * g + k], s);
                            acc[j] = s;
                        }
                    }
                }
            }
        }
    } else {
        for (int r = q; r < R; r += 4) {
            const float w = w_load1<DT>(row, r);
#pragma unroll
            for (int j = 0; j < NB; ++j) {
                if (j < nb) acc[j] = fmaf(w, sd[j * XD + r], acc[j]);
            }
        }
    }
}

// delta = softplus(dt_proj . dt + b_dt) (acc: the quad-summed dot).
__device__ __forceinline__ float ssm_delta(float acc, float dtb) {
    const float delta = acc + dtb;
    return delta > 20.0f ? delta : log1pf(expf(delta));
}

// States 4q .. 4q+3 of a row: s = exp(delta A) s + delta x B; returns this
// lane's part of sum_n s[n] C[n].
__device__ __forceinline__ float ssm_update4(float4& v, const float4 av, float delta, float dx, const float4 b,
                                             const float4 c) {
    v.x = expf(delta * av.x) * v.x + dx * b.x;
    v.y = expf(delta * av.y) * v.y + dx * b.y;
    v.z = expf(delta * av.z) * v.z + dx * b.z;
    v.w = expf(delta * av.w) * v.w + dx * b.w;
    float y = 0.0f;
    y = fmaf(v.x, c.x, y);
    y = fmaf(v.y, c.y, y);
    y = fmaf(v.z, c.z, y);
    y = fmaf(v.w, c.w, y);
    return y;
}

// (y + D x) * silu(z).
__device__ __forceinline__ float ssm_gate(float y, float dskip, float x, float z) {
    return (y + dskip * x) * (z / (1.0f + expf(-z)));
}

template <int DT>
__device__ __forceinline__ void ssm_body(const SsmParams& p) {
    extern __shared__ float sd[];  // (SSM_BT, XD)
    const int i0 = blockIdx.y * SSM_BT;
    const int nb = min(SSM_BT, p.batch - i0);
    const int E = p.E, N = p.N, R = p.R, XD = p.XD;
    const int q = threadIdx.x & 3;
    const int e = blockIdx.x * SSM_CH + (threadIdx.x >> 2);
    const bool live = e < E;
    const int ec = live ? e : 0;  // a valid row for the lanes past E (never stored)
    const bool fast = SSM_FAST && p.vec4 && N <= SSM_NMAX && (N & 3) == 0;
    const bool mine = 4 * q < N;  // fast path: this lane owns states 4q .. 4q+3
    // Before the wait for the conv kernel (programmatic dependent launch):
    // the slots' states of this layer (only this kernel touches them in a
    // step) and A; an L2 prefetch of the dt_proj row. The state loads are in
    // flight while the chunk partials are summed.
    const unsigned char* row = p.dtw + w_row_bytes<DT>(R) * ec;
    if (q == 0) {
        const long long rb = w_row_bytes<DT>(R);
        for (long long o = 0; o < rb; o += 128) dec_prefetch_l2(row + o);
    }
    float4 sv[SSM_BT], av = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float* sp[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        sp[j] = nullptr;
        sv[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (fast && live && mine) {
        av = *(const float4*)(p.a + (long long)e * N + 4 * q);
#pragma unroll
        for (int j = 0; j < SSM_BT; ++j) {
            if (j < nb) {
                sp[j] = p.state + (long long)p.slots[i0 + j] * p.slot_stride + p.ssm_off + (long long)e * N + 4 * q;
                sv[j] = *(const float4*)sp[j];
            }
        }
    }
    dec_pdl_launch();
    dec_pdl_wait();
    for (int t = threadIdx.x; t < nb * XD; t += blockDim.x) {
        const int j = t / XD, col = t - j * XD;
        sd[t] = ssm_part_sum(p.part, i0 + j, p.nchunks, XD, col);
    }
    __syncthreads();
    // dt_proj: lane q takes groups q, q + 4, ... of the row (all 4 lanes run
    // the shuffles, live or not).
    float acc[SSM_BT];
    ssm_dt_dot<DT, SSM_BT>(row, sd, XD, R, q, nb, acc);
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        if (j < nb) acc[j] = quad_sum(acc[j]);  // nb is block-uniform
    }
    const float dtb = live ? p.dt_b[e] : 0.0f, dskip = live ? p.d[e] : 0.0f;
    float xv[SSM_BT], zv[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        xv[j] = 0.0f;
        zv[j] = 0.0f;
        if (live && j < nb) {
            const int i = i0 + j;
            xv[j] = p.xc[(long long)i * E + e];
            zv[j] = p.xz[(long long)i * p.xz_rs + E + e];
        }
    }
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        if (j < nb) {
            const int i = i0 + j;
            const float delta = ssm_delta(acc[j], dtb);
            const float x = xv[j], z = zv[j];
            const float* B = sd + j * XD + R;
            const float* C = B + N;
            const float dx = delta * x;
            float y = 0.0f;
            if (fast) {
                if (live && mine) {
                    const int n = 4 * q;
                    float4 v = sv[j];
                    y = ssm_update4(v, av, delta, dx, make_float4(B[n], B[n + 1], B[n + 2], B[n + 3]),
                                    make_float4(C[n], C[n + 1], C[n + 2], C[n + 3]));
                    *(float4*)sp[j] = v;
                }
            } else if (live) {
                const float* a = p.a + (long long)e * N;
                float* s = p.state + (long long)p.slots[i] * p.slot_stride + p.ssm_off + (long long)e * N;
                for (int n = q; n < N; n += 4) {
                    const float v = expf(delta * a[n]) * s[n] + dx * B[n];
                    s[n] = v;
                    y = fmaf(v, C[n], y);
                }
            }
            y = quad_sum(y);
            if (live && q == 0) {
                y = ssm_gate(y, dskip, x, z);
                p.y[(long long)i * E + e] = y;
                if (p.y16 != nullptr) {
                    unsigned short* o = (unsigned short*)p.y16 + (long long)i * E + e;
                    *o = p.y16_bf16 ? enc_bf16(y) : enc_f16(y);
                }
            }
        }
    }
}

DECODE_ENTRIES(decode_ssm, ssm_body, SsmParams, SSM_THREADS)

// ---- v5: the split pair for large batches (decode.rs picks it for batch >=
// its split threshold, N % 4 == 0, N <= 16, float4-aligned state rows).
//
// decode_ssm_prep_*: the chunk sums of x_proj (B and C to bc[i, 0..2N]) and
// dt_proj + softplus (delta[i, e]), PREP_BT rows per block, 4 threads per
// channel as in the fused kernel (the same helpers, so the same bits).
// decode_ssm_stream: the state update as a pure stream: its state loads go
// out before the wait for the prep kernel, and afterwards every load of a
// block (delta, x, z, B, C) is independent, with no barrier or shared memory.

#define PREP_BT 16  // batch rows per prep block (decode.rs PREP_BT)

struct SsmPrepParams {
    const float* part;         // (batch, nchunks, XD)
    const unsigned char* dtw;  // dt_proj (E, R)
    const float* dt_b;         // (E)
    float* delta;              // (batch, E)
    float* bc;                 // (batch, 2N): B then C
    int E;
    int N;
    int R;
    int XD;
    int nchunks;
    int batch;
};

#define PREP_K 3  // partial sums per thread at once (their loads interleaved)

template <int DT>
__device__ __forceinline__ void ssm_prep_body(const SsmPrepParams& p) {
    extern __shared__ float sd[];  // (PREP_BT, XD)
    const int i0 = blockIdx.y * PREP_BT;
    const int nb = min(PREP_BT, p.batch - i0);
    const int E = p.E, R = p.R, XD = p.XD, nchunks = p.nchunks;
    const int q = threadIdx.x & 3;
    const int e = blockIdx.x * SSM_CH + (threadIdx.x >> 2);
    const bool live = e < E;
    const unsigned char* row = p.dtw + w_row_bytes<DT>(R) * (live ? e : 0);
    // Before the wait (nothing earlier in the step writes them): the dt_proj
    // row in registers when lane q's groups are just q and q + 4 (R % 8 == 0,
    // R <= 64: every released model), else an L2 prefetch; b_dt.
    const int G = R >> 3;
    const bool pre = (R & 7) == 0 && G <= 8;
    float w[2][8];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
#pragma unroll
        for (int k = 0; k < 8; ++k) w[u][k] = 0.0f;
    }
    if (pre) {
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            if (q + 4 * u < G) w_load8<DT>(row, q + 4 * u, w[u]);
        }
    } else if (q == 0) {
        const long long rb = w_row_bytes<DT>(R);
        for (long long o = 0; o < rb; o += 128) dec_prefetch_l2(row + o);
    }
    const float dtb = live ? p.dt_b[e] : 0.0f;
    dec_pdl_launch();
    dec_pdl_wait();
    // The chunk sums of all XD columns of the block's rows (each the same
    // fixed-order sum as ssm_part_sum: from 0, chunk 0 first), PREP_K of
    // them per thread with their loads interleaved; block 0 stores B and C.
    const bool first = blockIdx.x == 0;
    const int total = nb * XD;
    for (int t0 = threadIdx.x; t0 < total; t0 += PREP_K * blockDim.x) {
        const float* pp[PREP_K];
        float sum[PREP_K];
#pragma unroll
        for (int k = 0; k < PREP_K; ++k) {
            const int t = t0 + k * blockDim.x;
            const int j = t / XD, col = t - j * XD;
            pp[k] = t < total ? p.part + (long long)(i0 + j) * nchunks * XD + col : p.part;
            sum[k] = 0.0f;
        }
#pragma unroll 4
        for (int c = 0; c < nchunks; ++c) {
#pragma unroll
            for (int k = 0; k < PREP_K; ++k) sum[k] += pp[k][(long long)c * XD];
        }
#pragma unroll
        for (int k = 0; k < PREP_K; ++k) {
            const int t = t0 + k * blockDim.x;
            if (t < total) {
                const int j = t / XD, col = t - j * XD;
                sd[t] = sum[k];
                if (first && col >= R) p.bc[(long long)(i0 + j) * (2 * p.N) + (col - R)] = sum[k];
            }
        }
    }
    __syncthreads();
    float acc[PREP_BT];
    if (pre) {
        // ssm_dt_dot's single pass (groups q, then q + 4) on the preloaded row.
#pragma unroll
        for (int j = 0; j < PREP_BT; ++j) acc[j] = 0.0f;
#pragma unroll
        for (int u = 0; u < 2; ++u) {
            const int g = q + 4 * u;
            if (g < G) {
#pragma unroll
                for (int j = 0; j < PREP_BT; ++j) {
                    if (j < nb) {
                        float s = acc[j];
#pragma unroll
                        for (int k = 0; k < 8; ++k) s = fmaf(w[u][k], sd[j * XD + 8 * g + k], s);
                        acc[j] = s;
                    }
                }
            }
        }
    } else {
        ssm_dt_dot<DT, PREP_BT>(row, sd, XD, R, q, nb, acc);
    }
#pragma unroll
    for (int j = 0; j < PREP_BT; ++j) {
        if (j < nb) {
            const float a = quad_sum(acc[j]);  // nb is block-uniform
            if (live && q == 0) p.delta[(long long)(i0 + j) * E + e] = ssm_delta(a, dtb);
        }
    }
}

DECODE_ENTRIES(decode_ssm_prep, ssm_prep_body, SsmPrepParams, SSM_THREADS)

struct SsmStreamParams {
    const float* delta;  // (batch, E)
    const float* bc;     // (batch, 2N)
    const float* a;      // (E, N)
    const float* d;      // (E)
    const float* xc;     // (batch, E)
    const float* xz;     // (batch, xz_rs): z in columns E..2E
    const int* slots;    // (batch)
    float* state;        // slot s's layer SSM state at state + s * slot_stride + ssm_off
    float* y;            // (batch, E)
    void* y16;           // (batch, E) or null
    long long xz_rs;
    long long slot_stride;
    long long ssm_off;
    int E;
    int N;  // N % 4 == 0, N <= 16
    int y16_bf16;
    int batch;
};

// 2 blocks of 512 threads per SM at least (<= 64 registers): the state
// loads in flight are what this kernel's speed is made of.
extern "C" __global__ void __launch_bounds__(SSM_THREADS, 2) decode_ssm_stream(SsmStreamParams p) {
    const int i0 = blockIdx.y * SSM_BT;
    const int nb = min(SSM_BT, p.batch - i0);
    const int E = p.E, N = p.N;
    const int q = threadIdx.x & 3;
    const int e = blockIdx.x * SSM_CH + (threadIdx.x >> 2);
    const bool live = e < E;
    const bool mine = live && 4 * q < N;  // this lane owns states 4q .. 4q+3
    // Every load before any store (a state store could alias a later load
    // as far as the compiler knows): the states and A before the wait,
    // delta, x and z of all rows right after it; B and C (the same 32 floats
    // for the whole block, L1 hits) row by row.
    float4 sv[SSM_BT], av = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float* sp[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        sp[j] = nullptr;
        sv[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (mine) {
        av = *(const float4*)(p.a + (long long)e * N + 4 * q);
#pragma unroll
        for (int j = 0; j < SSM_BT; ++j) {
            if (j < nb) {
                sp[j] = p.state + (long long)p.slots[i0 + j] * p.slot_stride + p.ssm_off + (long long)e * N + 4 * q;
                sv[j] = *(const float4*)sp[j];
            }
        }
    }
    const float dskip = live ? p.d[e] : 0.0f;
    dec_pdl_launch();
    dec_pdl_wait();
    float dl[SSM_BT], xv[SSM_BT], zv[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        dl[j] = 0.0f;
        xv[j] = 0.0f;
        zv[j] = 0.0f;
        if (live && j < nb) {
            const int i = i0 + j;
            dl[j] = p.delta[(long long)i * E + e];
            xv[j] = p.xc[(long long)i * E + e];
            zv[j] = p.xz[(long long)i * p.xz_rs + E + e];
        }
    }
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) {
        if (j < nb) {
            const int i = i0 + j;
            const float delta = dl[j], x = xv[j], z = zv[j];
            const float dx = delta * x;
            float y = 0.0f;
            if (mine) {
                const float* bc = p.bc + (long long)i * (2 * N) + 4 * q;
                float4 v = sv[j];
                y = ssm_update4(v, av, delta, dx, *(const float4*)bc, *(const float4*)(bc + N));
                *(float4*)sp[j] = v;
            }
            y = quad_sum(y);
            if (live && q == 0) {
                y = ssm_gate(y, dskip, x, z);
                p.y[(long long)i * E + e] = y;
                if (p.y16 != nullptr) {
                    unsigned short* o = (unsigned short*)p.y16 + (long long)i * E + e;
                    *o = p.y16_bf16 ? enc_bf16(y) : enc_f16(y);
                }
            }
        }
    }
}
