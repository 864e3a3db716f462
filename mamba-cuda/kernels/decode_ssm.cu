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
        const float* pp = p.part + (long long)(i0 + j) * p.nchunks * XD + col;
        float s = 0.0f;
#pragma unroll 8
        for (int c = 0; c < p.nchunks; ++c) s += pp[(long long)c * XD];
        sd[t] = s;
    }
    __syncthreads();
    // dt_proj: lane q takes groups q, q + 4, ... of the row (all 4 lanes run
    // the shuffles, live or not).
    float acc[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) acc[j] = 0.0f;
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
                    for (int j = 0; j < SSM_BT; ++j) {
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
            for (int j = 0; j < SSM_BT; ++j) {
                if (j < nb) acc[j] = fmaf(w, sd[j * XD + r], acc[j]);
            }
        }
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
            float delta = acc[j] + dtb;
            delta = delta > 20.0f ? delta : log1pf(expf(delta));
            const float x = xv[j], z = zv[j];
            const float* B = sd + j * XD + R;
            const float* C = B + N;
            const float dx = delta * x;
            float y = 0.0f;
            if (fast) {
                if (live && mine) {
                    const int n = 4 * q;
                    float4 v = sv[j];
                    v.x = expf(delta * av.x) * v.x + dx * B[n];
                    v.y = expf(delta * av.y) * v.y + dx * B[n + 1];
                    v.z = expf(delta * av.z) * v.z + dx * B[n + 2];
                    v.w = expf(delta * av.w) * v.w + dx * B[n + 3];
                    *(float4*)sp[j] = v;
                    y = fmaf(v.x, C[n], y);
                    y = fmaf(v.y, C[n + 1], y);
                    y = fmaf(v.z, C[n + 2], y);
                    y = fmaf(v.w, C[n + 3], y);
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
                y = (y + dskip * x) * (z / (1.0f + expf(-z)));
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
