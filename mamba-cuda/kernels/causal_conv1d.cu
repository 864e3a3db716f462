// Fused causal depthwise conv1d + SiLU (the Mamba-1 block's short convolution).
//
//   out[b, l, e] = silu(bias[e] + sum_{k<K} w[e, k] * xe[b, l - (K-1) + k, e])
// where xe[b, j, e] = x[b, j, e] for j >= 0, and for -(K-1) <= j < 0 the initial
// window win_in[b, (K-1) + j, e] (zeros when there is none). w's last column
// multiplies the current token. The final window, the last K-1 inputs (oldest
// first, reaching into win_in when L < K-1), goes to win_out.
//
// One thread per (b, e, tile of tokens); consecutive threads take consecutive
// channels, so every load and store of a token row is coalesced. Each thread
// keeps the last KMAX inputs in registers, right-aligned with the weights (the
// KMAX - K leftmost weights are zero), so all register indices are constants.
//
// Layouts: x, out (batch, L, E) with element strides (x can be the x half of an
// (L, 2E) in_proj output); w (E, K), bias (E), win_in / win_out (batch, K-1, E),
// all f32. win_out must not alias win_in. bf16 travels as raw 16 bits.

#define CONV_THREADS 128

struct ConvParams {
    const void* x;
    const float* w;
    const float* bias;    // may be null
    const float* win_in;  // may be null: zeros
    void* out;
    float* win_out;       // may be null
    long long x_bs, x_rs;
    long long out_bs, out_rs;
    int batch;
    int L;
    int E;
    int K;
    int tile_len;
};

__device__ __forceinline__ float load_f(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_f(const unsigned short* p) {
    return __uint_as_float(((unsigned int)__ldg(p)) << 16);
}
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(unsigned short* p, float v) {
    unsigned int x = __float_as_uint(v);
    unsigned short r;
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        r = (unsigned short)((x >> 16) | 0x40u);
    } else {
        x += 0x7fffu + ((x >> 16) & 1u);
        r = (unsigned short)(x >> 16);
    }
    *p = r;
}

template <typename T, int KMAX>
__device__ __forceinline__ void conv_body(const ConvParams& p) {
    const int e = blockIdx.x * CONV_THREADS + threadIdx.x;
    if (e >= p.E) return;
    const int b = blockIdx.z;
    const int K = p.K;
    const int t0 = blockIdx.y * p.tile_len;
    const int t1 = min(p.L, t0 + p.tile_len);

    float wr[KMAX];
#pragma unroll
    for (int i = 0; i < KMAX; ++i) {
        const int k = i - (KMAX - K);
        wr[i] = k >= 0 ? p.w[(long long)e * K + k] : 0.0f;
    }
    const float bias = p.bias != nullptr ? p.bias[e] : 0.0f;
    const T* x = (const T*)p.x + (long long)b * p.x_bs + e;
    T* out = (T*)p.out + (long long)b * p.out_bs + e;

    // win[i] = xe[t - (KMAX-1) + i] when token t is being computed.
    float win[KMAX];
#pragma unroll
    for (int i = 0; i < KMAX - 1; ++i) {
        // Becomes win[i] once the first token is shifted in.
        const int j = t0 - (KMAX - 1) + i;
        float v = 0.0f;
        if (j >= 0) {
            v = j < p.L ? load_f(x + (long long)j * p.x_rs) : 0.0f;
        } else if (j >= -(K - 1) && p.win_in != nullptr) {
            v = p.win_in[((long long)b * (K - 1) + (K - 1) + j) * p.E + e];
        }
        win[i + 1] = v;
    }
    win[0] = 0.0f;

#pragma unroll 4
    for (int t = t0; t < t1; ++t) {
#pragma unroll
        for (int i = 0; i < KMAX - 1; ++i) win[i] = win[i + 1];
        win[KMAX - 1] = load_f(x + (long long)t * p.x_rs);
        float acc = bias;
#pragma unroll
        for (int i = 0; i < KMAX; ++i) acc = fmaf(wr[i], win[i], acc);
        store_f(out + (long long)t * p.out_rs, acc / (1.0f + expf(-acc)));
    }

    if (t1 == p.L && p.win_out != nullptr) {
        // win[KMAX-1] = xe[L-1]; the final window j = 0..K-2 is xe[L-(K-1)+j].
#pragma unroll
        for (int i = 0; i < KMAX; ++i) {
            const int j = i - (KMAX - K + 1);
            if (j >= 0 && j < K - 1) p.win_out[((long long)b * (K - 1) + j) * p.E + e] = win[i];
        }
    }
}

#define CONV_INSTANTIATE(T, TN, KMAX)                                                \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                       \
        causal_conv1d_silu_##TN##_k##KMAX(ConvParams p) { conv_body<T, KMAX>(p); }

CONV_INSTANTIATE(float, f32, 4)
CONV_INSTANTIATE(float, f32, 8)
CONV_INSTANTIATE(float, f32, 16)
CONV_INSTANTIATE(unsigned short, bf16, 4)
CONV_INSTANTIATE(unsigned short, bf16, 16)
CONV_INSTANTIATE(unsigned short, bf16, 8)
