// Shared by the decode_*.cu kernels (prepended to each by compile.rs): weight
// element types and their loads. F32, IEEE f16 and bf16 (raw 16 bits) are
// read in the file's own layout. Q8_0 and Q4_0 (ggml blocks of 32: an f16
// scale d and 32 int8 q, value d * q; or 16 bytes whose byte j holds element
// j in its low nibble and j + 16 in its high one, value d * (nibble - 8))
// are repacked by decode.rs (v10, `repack`): a row (cols % 32 == 0) is
// superblocks of 4 blocks (128 elements), each the 4 scales (8 bytes; a
// last partial superblock keeps all 8) then the blocks' quants unchanged
// (4 x 32 or 4 x 16 bytes). Every superblock, so every row, is a multiple
// of 8 bytes: 8 consecutive quants load as one aligned 8-byte word.

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
    const int rem = cols & 127;
    if (DT == DT_Q8_0) return (long long)(cols >> 7) * 136 + (rem ? 8 + rem : 0);
    return (long long)(cols >> 7) * 72 + (rem ? 8 + rem / 2 : 0);
}

// Element c of a row.
template <int DT>
__device__ __forceinline__ float w_load1(const unsigned char* row, int c) {
    if (DT == DT_F32) return ((const float*)row)[c];
    if (DT == DT_F16) return dec_f16(((const unsigned short*)row)[c]);
    if (DT == DT_BF16) return dec_bf16(((const unsigned short*)row)[c]);
    const int blk = (c >> 5) & 3;
    if (DT == DT_Q8_0) {
        const unsigned char* sb = row + (long long)(c >> 7) * 136;
        const float d = dec_f16(((const unsigned short*)sb)[blk]);
        return d * (float)(signed char)sb[8 + (c & 127)];
    }
    const unsigned char* sb = row + (long long)(c >> 7) * 72;
    const int j = c & 31;
    const unsigned int q = sb[8 + 16 * blk + (j & 15)];
    const int v = j < 16 ? (int)(q & 15u) : (int)(q >> 4);
    const float d = dec_f16(((const unsigned short*)sb)[blk]);
    return d * (float)(v - 8);
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
        const unsigned char* sb = row + (long long)(g >> 4) * 136;
        const float d = dec_f16(((const unsigned short*)sb)[(g >> 2) & 3]);
        const uint2 q = *(const uint2*)(sb + 8 + 8 * (g & 15));
        // q + 128 as the low mantissa byte of 2^23 (one PRMT), minus
        // 2^23 + 128 (one FADD): the exact integer, without the
        // quarter-rate I2F conversion.
        const unsigned int w[2] = {q.x ^ 0x80808080u, q.y ^ 0x80808080u};
#pragma unroll
        for (int k = 0; k < 8; ++k)
            o[k] = d * (__uint_as_float(__byte_perm(w[k >> 2], 0x4B000000u, 0x7540u + (k & 3))) - 8388736.0f);
    } else {
        // Elements 8 sub .. 8 sub + 7 of block (g >> 2) & 3: the low (sub < 2)
        // or high nibbles of its bytes 8 (sub & 1) .. 8 (sub & 1) + 7.
        const unsigned char* sb = row + (long long)(g >> 4) * 72;
        const int blk = (g >> 2) & 3, sub = g & 3;
        const float d = dec_f16(((const unsigned short*)sb)[blk]);
        const uint2 q = *(const uint2*)(sb + 8 + 16 * blk + 8 * (sub & 1));
        const int shift = sub >= 2 ? 4 : 0;
        // The nibbles n as the low mantissa bits of 2^23, minus 2^23 + 8: the
        // exact n - 8 (no I2F).
        const unsigned int w[2] = {(q.x >> shift) & 0x0f0f0f0fu, (q.y >> shift) & 0x0f0f0f0fu};
#pragma unroll
        for (int k = 0; k < 8; ++k)
            o[k] = d * (__uint_as_float(__byte_perm(w[k >> 2], 0x4B000000u, 0x7540u + (k & 3))) - 8388616.0f);
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
