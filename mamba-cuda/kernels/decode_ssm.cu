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
#define SSM_PREG 4            // dt_proj groups a lane holds in registers (R <= 128)
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
    // v9: an f16 / bf16 dt_proj row (R % 8 == 0, R <= 32 SSM_PREG) is loaded
    // into registers here, packed: lane q's groups q, q + 4, ...; else an L2
    // prefetch.
    const int G = R >> 3;
    const bool pre = SSM_FAST && (DT == DT_F16 || DT == DT_BF16) && (R & 7) == 0 && G <= 4 * SSM_PREG;
    uint4 raw[SSM_PREG];
#pragma unroll
    for (int i = 0; i < SSM_PREG; ++i) {
        raw[i] = make_uint4(0u, 0u, 0u, 0u);
        if (pre && q + 4 * i < G) raw[i] = ((const uint4*)row)[q + 4 * i];
    }
    if (!pre && q == 0) {
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
    if (pre) {  // ssm_dt_dot's fmaf chains, on the registers
#pragma unroll
        for (int j = 0; j < SSM_BT; ++j) acc[j] = 0.0f;
#pragma unroll
        for (int i = 0; i < SSM_PREG; ++i) {
            const int g = q + 4 * i;
            if (g < G) {
                float w[8];
                w_dec8_16<DT>(raw[i], w);
#pragma unroll
                for (int j = 0; j < SSM_BT; ++j) {
                    if (j < nb) {
                        float s = acc[j];
#pragma unroll
                        for (int k = 0; k < 8; ++k) s = fmaf(w[k], sd[j * XD + 8 * g + k], s);
                        acc[j] = s;
                    }
                }
            }
        }
    } else {
        ssm_dt_dot<DT, SSM_BT>(row, sd, XD, R, q, nb, acc);
    }
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
// dt_proj + softplus (delta[i, e]). decode_ssm_stream: the state update as a
// pure stream: its state loads go out before the wait for the prep kernel,
// and afterwards every load of a block (delta, x, z, B, C) is independent,
// with no barrier or shared memory.
//
// v6 prep: one thread per channel for PREP_BT rows (PREP_CH channels per
// block), light blocks (at 256 streams 6 x 64 = 384 blocks of 256 threads,
// one wave on 132 SMs; v5 had 192 blocks of 512 threads doing 16 rows each,
// two waves). The thread computes the fused kernel's 4 lane partials itself
// (a[q]: the fmaf chain over groups q, q + 4, ... of the row, or elements q,
// q + 4, ... when R % 8 != 0) and combines them as (a0 + a1) + (a2 + a3),
// which is exactly what quad_sum gives each lane there, so delta has the same
// bits as on the fused path. The dt inputs are float4 broadcasts from shared
// memory; an f16 / bf16 dt_proj row (R % 8 == 0, R <= 8 * PREP_GMAX) is in
// registers, still packed, before the wait. The chunk sums (each the fixed
// order of ssm_part_sum) have all their loads issued at once (nchunks <=
// PREP_CMAX), so they cost one round of L2 latency.

#define PREP_CH 256   // channels (threads) per prep block (decode.rs PREP_CH)
#define PREP_BT 4     // batch rows per prep block (decode.rs PREP_BT)
#define PREP_GMAX 8   // dt_proj groups of 8 held in registers (R <= 64)
#define PREP_CMAX 16  // chunk partials loaded at once (E <= 2048)

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

// Chain a[j] += w[0..8] . dt[0..8] (dt 16-byte aligned in shared memory),
// the fmaf order of ssm_dt_dot.
__device__ __forceinline__ float prep_dot8(const float* w, const float* dt, float s) {
    const float4 x0 = *(const float4*)dt, x1 = *(const float4*)(dt + 4);
    s = fmaf(w[0], x0.x, s);
    s = fmaf(w[1], x0.y, s);
    s = fmaf(w[2], x0.z, s);
    s = fmaf(w[3], x0.w, s);
    s = fmaf(w[4], x1.x, s);
    s = fmaf(w[5], x1.y, s);
    s = fmaf(w[6], x1.z, s);
    s = fmaf(w[7], x1.w, s);
    return s;
}

template <int DT>
__device__ __forceinline__ void ssm_prep_body(const SsmPrepParams& p) {
    extern __shared__ __align__(16) float sdt[];  // (PREP_BT, R): the rows' dt
    const int i0 = blockIdx.y * PREP_BT;
    const int nb = min(PREP_BT, p.batch - i0);
    const int E = p.E, R = p.R, XD = p.XD, nchunks = p.nchunks;
    const int e = blockIdx.x * PREP_CH + threadIdx.x;
    const bool live = e < E;
    const unsigned char* row = p.dtw + w_row_bytes<DT>(R) * (live ? e : 0);
    const int G = R >> 3;
    // Before the wait (nothing earlier in the step writes them): the packed
    // dt_proj row (f16 / bf16, R % 8 == 0, G <= PREP_GMAX), else an L2
    // prefetch of it; b_dt.
    const bool pre = (DT == DT_F16 || DT == DT_BF16) && (R & 7) == 0 && G <= PREP_GMAX;
    uint4 raw[PREP_GMAX];
#pragma unroll
    for (int g = 0; g < PREP_GMAX; ++g) {
        raw[g] = make_uint4(0u, 0u, 0u, 0u);
        if (pre && g < G) raw[g] = ((const uint4*)row)[g];
    }
    if (!pre) {
        const long long rb = w_row_bytes<DT>(R);
        for (long long o = 0; o < rb; o += 128) dec_prefetch_l2(row + o);
    }
    const float dtb = live ? p.dt_b[e] : 0.0f;
    dec_pdl_launch();
    dec_pdl_wait();
    // The chunk sums: every block sums its rows' dt columns (to shared
    // memory); the rows' B and C columns (to bc) are shared out over the
    // channel blocks (at 130m: 192 + 21 or 22 sums for 256 threads, one
    // pass). Each sum is ssm_part_sum's: from 0, chunk 0 first.
    const int ndt = nb * R, nbc = nb * 2 * p.N;
    const int lo = (int)((long long)blockIdx.x * nbc / gridDim.x);
    const int hi = (int)((long long)(blockIdx.x + 1) * nbc / gridDim.x);
    const int total = ndt + hi - lo;
    for (int t = threadIdx.x; t < total; t += PREP_CH) {
        int j, col;
        if (t < ndt) {
            j = t / R;
            col = t - j * R;
        } else {
            const int u = lo + t - ndt;
            j = u / (2 * p.N);
            col = R + (u - j * 2 * p.N);
        }
        const float* pp = p.part + (long long)(i0 + j) * nchunks * XD + col;
        float sum = 0.0f;
        if (nchunks <= PREP_CMAX) {
            float v[PREP_CMAX];
#pragma unroll
            for (int c = 0; c < PREP_CMAX; ++c) v[c] = c < nchunks ? pp[(long long)c * XD] : 0.0f;
#pragma unroll
            for (int c = 0; c < PREP_CMAX; ++c) {
                if (c < nchunks) sum += v[c];
            }
        } else {
#pragma unroll 8
            for (int c = 0; c < nchunks; ++c) sum += pp[(long long)c * XD];
        }
        if (t < ndt) {
            sdt[t] = sum;
        } else {
            p.bc[(long long)(i0 + j) * (2 * p.N) + (col - R)] = sum;
        }
    }
    __syncthreads();
    // dt_proj: the 4 lane partials of the fused kernel, per row.
    float a[PREP_BT][4];
#pragma unroll
    for (int j = 0; j < PREP_BT; ++j) {
#pragma unroll
        for (int q = 0; q < 4; ++q) a[j][q] = 0.0f;
    }
    if (pre) {
#pragma unroll
        for (int g = 0; g < PREP_GMAX; ++g) {
            if (g < G) {
                float w[8];
                w_dec8_16<DT>(raw[g], w);
#pragma unroll
                for (int j = 0; j < PREP_BT; ++j) {
                    if (j < nb) a[j][g & 3] = prep_dot8(w, sdt + j * R + 8 * g, a[j][g & 3]);
                }
            }
        }
    } else if ((R & 7) == 0) {
        for (int g0 = 0; g0 < G; g0 += 4) {
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int g = g0 + u;
                if (g < G) {
                    float w[8];
                    w_load8<DT>(row, g, w);
#pragma unroll
                    for (int j = 0; j < PREP_BT; ++j) {
                        if (j < nb) {
                            float s = a[j][u];
#pragma unroll
                            for (int k = 0; k < 8; ++k) s = fmaf(w[k], sdt[j * R + 8 * g + k], s);
                            a[j][u] = s;
                        }
                    }
                }
            }
        }
    } else {
        for (int r0 = 0; r0 < R; r0 += 4) {
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int r = r0 + u;
                if (r < R) {
                    const float w = w_load1<DT>(row, r);
#pragma unroll
                    for (int j = 0; j < PREP_BT; ++j) {
                        if (j < nb) a[j][u] = fmaf(w, sdt[j * R + r], a[j][u]);
                    }
                }
            }
        }
    }
    if (live) {
#pragma unroll
        for (int j = 0; j < PREP_BT; ++j) {
            if (j < nb) {
                // quad_sum's order: lane 0 adds lane 1, then lanes 2 + 3.
                const float acc = (a[j][0] + a[j][1]) + (a[j][2] + a[j][3]);
                p.delta[(long long)(i0 + j) * E + e] = ssm_delta(acc, dtb);
            }
        }
    }
}

// 3 blocks of 256 threads per SM (<= 85 registers): 384 blocks at 256
// streams are one wave on an H200.
#ifndef PREP_MINB  // -DPREP_MINB=n: an A/B aid (MAMBA_CUDA_NVRTC_OPTIONS)
#define PREP_MINB 3
#endif
extern "C" __global__ void __launch_bounds__(PREP_CH, PREP_MINB) decode_ssm_prep_f32(SsmPrepParams p) {
    ssm_prep_body<DT_F32>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_CH, PREP_MINB) decode_ssm_prep_f16(SsmPrepParams p) {
    ssm_prep_body<DT_F16>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_CH, PREP_MINB) decode_ssm_prep_bf16(SsmPrepParams p) {
    ssm_prep_body<DT_BF16>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_CH, PREP_MINB) decode_ssm_prep_q8_0(SsmPrepParams p) {
    ssm_prep_body<DT_Q8_0>(p);
}
extern "C" __global__ void __launch_bounds__(PREP_CH, PREP_MINB) decode_ssm_prep_q4_0(SsmPrepParams p) {
    ssm_prep_body<DT_Q4_0>(p);
}

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
