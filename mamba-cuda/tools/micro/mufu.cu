// Exp-unit throughput on this GPU: ex2.approx alone and mixed with other FP32
// instructions. Each thread runs 8 independent chains; per exp it issues K
// independent FMAs and one FMUL (so K + 1 other instructions per exp, plus a
// little loop overhead). Prints exp results per clock per SM: the events' time
// of a long run (launch latency is noise) at the SM clock the kernel itself
// measured (clock64 against globaltimer in block 0). Build: nvcc -O3 -arch=sm_90.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(x)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (x);                                                           \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

__device__ __forceinline__ float ex2(float x) {
    float r;
    asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ unsigned long long gtimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// t[0..3]: block 0's clock64 and globaltimer at its start and end.
template <int K>
__global__ void mix(float* out, long long* t, int iters, float a) {
    long long c0 = clock64();
    unsigned long long g0 = gtimer();
    float x[8], y[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        x[i] = -0.001f * (threadIdx.x + i);
        y[i] = 1.0f + i;
    }
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float e = ex2(x[i]);
#pragma unroll
            for (int k = 0; k < K; ++k) y[(i + k) & 7] = fmaf(y[(i + k) & 7], a, e);
            x[i] = e * -0.5f;
        }
    }
    float s = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) s += x[i] + y[i];
    if (s == 12345.0f) out[0] = s;  // never true; keeps the work
    __syncthreads();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        t[0] = c0;
        t[1] = (long long)g0;
        t[2] = clock64();
        t[3] = (long long)gtimer();
    }
}

template <int K>
void run(int sms, int blocks_per_sm, int threads) {
    float* out;
    long long* t;
    CHECK(cudaMalloc(&out, 4));
    CHECK(cudaMalloc(&t, 4 * sizeof(long long)));
    const int iters = 20000;
    mix<K><<<sms * blocks_per_sm, threads>>>(out, t, 100, 0.999f);  // warm-up
    CHECK(cudaGetLastError());
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    CHECK(cudaEventRecord(a));
    mix<K><<<sms * blocks_per_sm, threads>>>(out, t, iters, 0.999f);
    CHECK(cudaGetLastError());
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    long long h[4];
    CHECK(cudaMemcpy(h, t, sizeof h, cudaMemcpyDeviceToHost));
    const double mhz = (double)(h[2] - h[0]) / (double)(h[3] - h[1]) * 1e3;
    // The events' time (20000 rounds: launch latency is noise) at block 0's
    // measured clock; block 0 itself may end early (an SM favours its oldest
    // blocks), so its duration is not used.
    const double exps_per_sm = (double)blocks_per_sm * threads * iters * 8;
    const double per_clk_sm = exps_per_sm / (ms * 1e-3 * mhz * 1e6);
    printf("%d other instructions per exp, %2d warps/SM: %.2f ms (block 0 %.3f ms at %.0f MHz), %.2f exp/clk/SM (%.0f%% of 16)\n",
           K + 1, blocks_per_sm * threads / 32, ms, (h[3] - h[1]) * 1e-6, mhz, per_clk_sm, 100 * per_clk_sm / 16);
    CHECK(cudaFree(out));
    CHECK(cudaFree(t));
}

int main() {
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (int w : {4, 8, 20}) {
        run<0>(sms, w / 4, 128);
        run<4>(sms, w / 4, 128);
        run<6>(sms, w / 4, 128);
        run<8>(sms, w / 4, 128);
    }
    return 0;
}
