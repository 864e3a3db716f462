// Element-wise conversion of a contiguous f32 array to IEEE half (f16) or
// bf16 (raw 16 bits, round to nearest even): the inputs of the f16 GEMMs when
// the activations stay f32 (the scan and conv take f32 or bf16 only).

#define CAST_THREADS 256

struct CastParams {
    const float* x;
    unsigned short* out;
    long long n;
};

__device__ __forceinline__ unsigned short to_bf16(float v) {
    unsigned int x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

__device__ __forceinline__ unsigned short to_f16(float v) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}

extern "C" __global__ void __launch_bounds__(CAST_THREADS) cast_f32_to_f16(CastParams p) {
    const long long stride = (long long)gridDim.x * CAST_THREADS;
    for (long long i = (long long)blockIdx.x * CAST_THREADS + threadIdx.x; i < p.n; i += stride)
        p.out[i] = to_f16(p.x[i]);
}

extern "C" __global__ void __launch_bounds__(CAST_THREADS) cast_f32_to_bf16(CastParams p) {
    const long long stride = (long long)gridDim.x * CAST_THREADS;
    for (long long i = (long long)blockIdx.x * CAST_THREADS + threadIdx.x; i < p.n; i += stride)
        p.out[i] = to_bf16(p.x[i]);
}
