// Decode: greedy token choice, the index of the largest logit of each row
// (the first one on ties; NaN never wins; 0 when no value beats -inf), the
// same rule as mamba-core's `sample::argmax`. One block per row.

#define ARGMAX_THREADS 512

struct ArgmaxParams {
    const float* logits;  // (batch, V)
    unsigned int* out;    // (batch)
    int V;
    int batch;
};

__device__ __forceinline__ void better(float& bv, int& bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS) decode_argmax(ArgmaxParams p) {
    const int b = blockIdx.x;
    if (b >= p.batch) return;
    const float* x = p.logits + (long long)b * p.V;
    float bv = __int_as_float(0xff800000);  // -inf
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < p.V; i += ARGMAX_THREADS) {
        const float v = x[i];
        if (v > bv) {  // strided: indices grow, so '>' keeps the first
            bv = v;
            bi = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        better(bv, bi, ov, oi);
    }
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    if ((threadIdx.x & 31) == 0) {
        sv[threadIdx.x >> 5] = bv;
        si[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / 32; ++w) better(bv, bi, sv[w], si[w]);
        p.out[b] = bi == 0x7fffffff ? 0u : (unsigned int)bi;
    }
}
