// Decode: dt_proj + softplus + the selective state update + D skip + z gate,
// for a batch of streams whose (E, N) SSM state lives in slots (updated in
// place).
//
// Block (channel chunk, SSM_BT batch rows): the x_proj chunk partials of the
// rows are summed (fixed order) into shared memory: dt (R), B (N), C (N).
// Then one thread per channel e, the dt_proj row read once for the rows: delta = softplus(W_dt[e] . dt + b_dt[e]);
// s[n] = exp(delta A[e,n]) s[n] + delta B[n] xc[e]; y = (sum_n s[n] C[n] +
// D[e] xc[e]) * silu(z[e]). y is written as f32 and, when y16 is set, as
// f16 / bf16 too (the input of a cuBLAS out_proj).

#define SSM_CH 128
#define SSM_BT 4
#define SSM_NMAX 16  // register fast path for N <= 16, N % 4 == 0
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

template <int DT>
__device__ __forceinline__ void ssm_body(const SsmParams& p) {
    extern __shared__ float sd[];  // (SSM_BT, XD)
    const int i0 = blockIdx.y * SSM_BT;
    const int nb = min(SSM_BT, p.batch - i0);
    for (int q = threadIdx.x; q < nb * p.XD; q += blockDim.x) {
        const int j = q / p.XD, col = q - j * p.XD;
        const float* pp = p.part + (long long)(i0 + j) * p.nchunks * p.XD + col;
        float s = 0.0f;
#pragma unroll 4
        for (int c = 0; c < p.nchunks; ++c) s += pp[(long long)c * p.XD];
        sd[q] = s;
    }
    __syncthreads();
    const int e = blockIdx.x * SSM_CH + threadIdx.x;
    if (e >= p.E) return;
    const int E = p.E, N = p.N, R = p.R, XD = p.XD;
    // dt_proj for the SSM_BT rows at once: the weight row is read once.
    const unsigned char* row = p.dtw + w_row_bytes<DT>(R) * e;
    float acc[SSM_BT];
#pragma unroll
    for (int j = 0; j < SSM_BT; ++j) acc[j] = 0.0f;
    if ((R & 7) == 0) {
        for (int g = 0; g < (R >> 3); ++g) {
            float w[8];
            w_load8<DT>(row, g, w);
#pragma unroll
            for (int j = 0; j < SSM_BT; ++j) {
                if (j < nb) {
                    float s = acc[j];
#pragma unroll
                    for (int q = 0; q < 8; ++q) s = fmaf(w[q], sd[j * XD + 8 * g + q], s);
                    acc[j] = s;
                }
            }
        }
    } else {
        for (int r = 0; r < R; ++r) {
            const float w = w_load1<DT>(row, r);
#pragma unroll
            for (int j = 0; j < SSM_BT; ++j) {
                if (j < nb) acc[j] = fmaf(w, sd[j * XD + r], acc[j]);
            }
        }
    }
    const float* a = p.a + (long long)e * N;
    const float dtb = p.dt_b[e], dskip = p.d[e];
    if (SSM_FAST && p.vec4 && N <= SSM_NMAX) {
        // Every load of every batch row first (states in registers), then the
        // arithmetic and the stores: a store to one slot's state could alias
        // the next row's loads as far as the compiler knows.
        float4 sv[SSM_BT][SSM_NMAX / 4], av[SSM_NMAX / 4];
        float xv[SSM_BT], zv[SSM_BT];
        float* sp[SSM_BT];
#pragma unroll
        for (int q = 0; q < SSM_NMAX / 4; ++q) {
            av[q] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (4 * q < N) av[q] = *(const float4*)(a + 4 * q);
        }
#pragma unroll
        for (int j = 0; j < SSM_BT; ++j) {
            sp[j] = nullptr;
            xv[j] = 0.0f;
            zv[j] = 0.0f;
#pragma unroll
            for (int q = 0; q < SSM_NMAX / 4; ++q) sv[j][q] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (j < nb) {
                const int i = i0 + j;
                sp[j] = p.state + (long long)p.slots[i] * p.slot_stride + p.ssm_off + (long long)e * N;
                xv[j] = p.xc[(long long)i * E + e];
                zv[j] = p.xz[(long long)i * p.xz_rs + E + e];
#pragma unroll
                for (int q = 0; q < SSM_NMAX / 4; ++q) {
                    if (4 * q < N) sv[j][q] = *(const float4*)(sp[j] + 4 * q);
                }
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
#pragma unroll
                for (int q = 0; q < SSM_NMAX / 4; ++q) {
                    if (4 * q < N) {
                        const int n = 4 * q;
                        float4 v = sv[j][q];
                        v.x = expf(delta * av[q].x) * v.x + dx * B[n];
                        v.y = expf(delta * av[q].y) * v.y + dx * B[n + 1];
                        v.z = expf(delta * av[q].z) * v.z + dx * B[n + 2];
                        v.w = expf(delta * av[q].w) * v.w + dx * B[n + 3];
                        *(float4*)(sp[j] + n) = v;
                        y = fmaf(v.x, C[n], y);
                        y = fmaf(v.y, C[n + 1], y);
                        y = fmaf(v.z, C[n + 2], y);
                        y = fmaf(v.w, C[n + 3], y);
                    }
                }
                y = (y + dskip * x) * (z / (1.0f + expf(-z)));
                p.y[(long long)i * E + e] = y;
                if (p.y16 != nullptr) {
                    unsigned short* o = (unsigned short*)p.y16 + (long long)i * E + e;
                    *o = p.y16_bf16 ? enc_bf16(y) : enc_f16(y);
                }
            }
        }
        return;
    }
    for (int j = 0; j < nb; ++j) {
        const int i = i0 + j;
        float delta = acc[j] + dtb;
        delta = delta > 20.0f ? delta : log1pf(expf(delta));
        const float x = p.xc[(long long)i * E + e];
        const float z = p.xz[(long long)i * p.xz_rs + E + e];
        float* s = p.state + (long long)p.slots[i] * p.slot_stride + p.ssm_off + (long long)e * N;
        const float* B = sd + j * XD + R;
        const float* C = B + N;
        const float dx = delta * x;
        float y = 0.0f;
        for (int n = 0; n < N; ++n) {
            const float sv = expf(delta * a[n]) * s[n] + dx * B[n];
            s[n] = sv;
            y = fmaf(sv, C[n], y);
        }
        y = (y + dskip * x) * (z / (1.0f + expf(-z)));
        p.y[(long long)i * E + e] = y;
        if (p.y16 != nullptr) {
            unsigned short* o = (unsigned short*)p.y16 + (long long)i * E + e;
            *o = p.y16_bf16 ? enc_bf16(y) : enc_f16(y);
        }
    }
}

DECODE_ENTRIES(decode_ssm, ssm_body, SsmParams, SSM_CH)
