// Adds a bias row to every row of a matrix in place: x[r, c] += bias[c]
// (the optional in_proj / out_proj biases after their GEMMs).
// x (rows, cols) with row stride rs, f32 or bf16 (raw 16 bits); bias (cols) f32.

#define BIAS_THREADS 256

struct BiasParams {
    void* x;
    const float* bias;
    long long rs;
    int rows;
    int cols;
};

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const unsigned short* p) { return __uint_as_float(((unsigned int)*p) << 16); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(unsigned short* p, float v) {
    unsigned int x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) { *p = (unsigned short)((x >> 16) | 0x40u); return; }
    x += 0x7fffu + ((x >> 16) & 1u);
    *p = (unsigned short)(x >> 16);
}

template <typename T>
__device__ __forceinline__ void bias_body(const BiasParams& p) {
    const int r = blockIdx.x;
    if (r >= p.rows) return;
    T* x = (T*)p.x + (long long)r * p.rs;
    for (int c = threadIdx.x; c < p.cols; c += BIAS_THREADS) st(x + c, ld(x + c) + p.bias[c]);
}

extern "C" __global__ void __launch_bounds__(BIAS_THREADS) add_bias_f32(BiasParams p) { bias_body<float>(p); }
extern "C" __global__ void __launch_bounds__(BIAS_THREADS) add_bias_bf16(BiasParams p) { bias_body<unsigned short>(p); }
