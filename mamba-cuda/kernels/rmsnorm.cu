// RMSNorm over rows: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w
// (w may be null: no weight). One block per row; the sum of squares is
// reduced with warp shuffles then across warps in shared memory.
//
// Layouts: x (rows, D) f32 with row stride x_rs; out (rows, D) with row stride
// out_rs, as f32, IEEE half (f16) or bf16 (both as raw 16 bits): the f16/bf16
// outputs feed the reduced-precision GEMMs directly. w (D) f32.

#define NORM_THREADS 256

struct NormParams {
    const float* x;
    const float* w;  // may be null
    void* out;
    long long x_rs;
    long long out_rs;
    int rows;
    int D;
    float eps;
};

__device__ __forceinline__ void store_o(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_o(unsigned short* p, float v) {  // bf16, round to nearest even
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
struct f16_t { unsigned short bits; };
__device__ __forceinline__ void store_o(f16_t* p, float v) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    p->bits = r;
}

template <typename O>
__device__ __forceinline__ void norm_body(const NormParams& p) {
    const int r = blockIdx.x;
    if (r >= p.rows) return;
    const float* x = p.x + (long long)r * p.x_rs;
    O* out = (O*)p.out + (long long)r * p.out_rs;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < p.D; i += NORM_THREADS) {
        const float v = x[i];
        ss = fmaf(v, v, ss);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    __shared__ float part[NORM_THREADS / 32];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
#pragma unroll
    for (int i = 0; i < NORM_THREADS / 32; ++i) tot += part[i];
    const float scale = rsqrtf(tot / (float)p.D + p.eps);
    for (int i = threadIdx.x; i < p.D; i += NORM_THREADS) {
        const float w = p.w != nullptr ? p.w[i] : 1.0f;
        store_o(out + i, x[i] * scale * w);
    }
}

extern "C" __global__ void __launch_bounds__(NORM_THREADS) rmsnorm_f32(NormParams p) { norm_body<float>(p); }
extern "C" __global__ void __launch_bounds__(NORM_THREADS) rmsnorm_bf16(NormParams p) { norm_body<unsigned short>(p); }
extern "C" __global__ void __launch_bounds__(NORM_THREADS) rmsnorm_f16(NormParams p) { norm_body<f16_t>(p); }
