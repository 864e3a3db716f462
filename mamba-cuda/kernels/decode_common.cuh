// Shared by the decode_*.cu kernels (prepended to each by compile.rs): weight
// element types and their loads. Weights are read in the file's own layout:
// F32, IEEE f16, bf16 (raw 16 bits), ggml Q8_0 (34-byte blocks: f16 scale d,
// 32 int8 q; value d * q) and Q4_0 (18-byte blocks: f16 scale d, 16 bytes;
// byte j holds element j in its low nibble and j + 16 in its high nibble;
// value d * (nibble - 8)). Rows are contiguous; a quantized row is cols / 32
// blocks. Every block starts at an even address (34 and 18 are even), so the
// 16-bit loads below are aligned.

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_Q8_0 3
#define DT_Q4_0 4

__device__ __forceinline__ float dec_f16(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float dec_bf16(unsigned short h) { return __uint_as_float(((unsigned int)h) << 16); }
__device__ __forceinline__ unsigned short enc_f16(float v) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
    return r;
}
__device__ __forceinline__ unsigned short enc_bf16(float v) {  // round to nearest even
    unsigned int x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

template <int DT>
__device__ __forceinline__ long long w_row_bytes(int cols) {
    if (DT == DT_F32) return 4LL * cols;
    if (DT == DT_F16 || DT == DT_BF16) return 2LL * cols;
    if (DT == DT_Q8_0) return (long long)(cols / 32) * 34;
    return (long long)(cols / 32) * 18;
}

// Element c of a row.
template <int DT>
__device__ __forceinline__ float w_load1(const unsigned char* row, int c) {
    if (DT == DT_F32) return ((const float*)row)[c];
    if (DT == DT_F16) return dec_f16(((const unsigned short*)row)[c]);
    if (DT == DT_BF16) return dec_bf16(((const unsigned short*)row)[c]);
    if (DT == DT_Q8_0) {
        const unsigned char* b = row + (long long)(c >> 5) * 34;
        const float d = dec_f16(*(const unsigned short*)b);
        return d * (float)(signed char)b[2 + (c & 31)];
    }
    const unsigned char* b = row + (long long)(c >> 5) * 18;
    const int j = c & 31;
    const unsigned int q = b[2 + (j & 15)];
    const int v = j < 16 ? (int)(q & 15u) : (int)(q >> 4);
    const float d = dec_f16(*(const unsigned short*)b);
    return d * (float)(v - 8);
}

__device__ __forceinline__ void q8_unpack2(unsigned int h, float d, float* o) {
    o[0] = d * (float)(signed char)(h & 0xffu);
    o[1] = d * (float)(signed char)((h >> 8) & 0xffu);
}

// The eight f16 / bf16 weights of a raw 16-byte group (8g .. 8g+7).
template <int DT>
__device__ __forceinline__ void w_dec8_16(const uint4 v, float* o) {
    const unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const unsigned short lo = (unsigned short)(w[k] & 0xffffu), hi = (unsigned short)(w[k] >> 16);
        o[2 * k] = DT == DT_F16 ? dec_f16(lo) : dec_bf16(lo);
        o[2 * k + 1] = DT == DT_F16 ? dec_f16(hi) : dec_bf16(hi);
    }
}

// Elements 8g .. 8g+7 of a row (cols % 8 == 0; F32/F16/BF16 rows 16-byte aligned).
template <int DT>
__device__ __forceinline__ void w_load8(const unsigned char* row, int g, float* o) {
    if (DT == DT_F32) {
        const float4* p = (const float4*)row + 2 * g;
        const float4 a = p[0], b = p[1];
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
        o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    } else if (DT == DT_F16 || DT == DT_BF16) {
        w_dec8_16<DT>(((const uint4*)row)[g], o);
    } else if (DT == DT_Q8_0) {
        const unsigned char* b = row + (long long)(g >> 2) * 34;
        const float d = dec_f16(*(const unsigned short*)b);
        const unsigned short* q = (const unsigned short*)(b + 2 + (g & 3) * 8);
#pragma unroll
        for (int k = 0; k < 4; ++k) q8_unpack2(q[k], d, o + 2 * k);
    } else {
        const unsigned char* b = row + (long long)(g >> 2) * 18;
        const float d = dec_f16(*(const unsigned short*)b);
        const int sub = g & 3;  // elements 8 sub .. 8 sub + 7
        const unsigned short* q = (const unsigned short*)(b + 2 + (sub & 1) * 8);
        const int shift = sub >= 2 ? 4 : 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const unsigned int h = q[k];
            o[2 * k] = d * (float)((int)((h >> shift) & 15u) - 8);
            o[2 * k + 1] = d * (float)((int)((h >> (8 + shift)) & 15u) - 8);
        }
    }
}

// Programmatic dependent launch (sm_90+; the host sets the launch attribute
// only there). A kernel issues its loads of data no earlier kernel of the
// step writes (weights, its own layer's slot state) first, then lets the next
// kernel launch (`dec_pdl_launch`), then waits for the previous kernel's
// results to be complete and visible (`dec_pdl_wait`) before touching them.
// Without the attribute both are no-ops. Nothing may be written before the
// wait.
__device__ __forceinline__ void dec_pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void dec_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Hint: bring the 128-byte line holding p into L2 (no effect on results).
__device__ __forceinline__ void dec_prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Instantiates `extern "C"` entry points NAME_f32 .. NAME_q4_0 of a
// `template <int DT> __device__ void BODY(const P&)`.
#define DECODE_ENTRIES(NAME, BODY, P, THREADS)                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_f32(P p) { BODY<DT_F32>(p); }         \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_f16(P p) { BODY<DT_F16>(p); }         \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_bf16(P p) { BODY<DT_BF16>(p); }       \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_q8_0(P p) { BODY<DT_Q8_0>(p); }       \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME##_q4_0(P p) { BODY<DT_Q4_0>(p); }
