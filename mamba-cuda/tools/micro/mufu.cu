// Exp-unit throughput on this GPU: MUFU.EX2 alone, and mixed with k independent
// FP32 FMAs per exp (the scan's sweeps issue ~6-7 other instructions per MUFU
// operation). Prints exp results per clock per SM at the SM clock given on the
// command line (nvidia-smi's clocks.sm under load). Build: nvcc -O3 -arch=sm_90.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

__device__ __forceinline__ float ex2(float x) {
    float r;
    asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

template <int K>
__global__ void mix(float* out, int iters, float a) {
    float x[8], y[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) { x[i] = -0.001f * (threadIdx.x + i); y[i] = 1.0f + i; }
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
    if (s == 12345.0f) out[0] = s;
}

template <int K>
void run(int sms, double mhz, int blocks_per_sm, int threads) {
    float* out;
    cudaMalloc(&out, 4);
    const int iters = 2000;
    mix<K><<<sms * blocks_per_sm, threads>>>(out, 10, 0.999f);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a);
    mix<K><<<sms * blocks_per_sm, threads>>>(out, iters, 0.999f);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    const double exps = (double)sms * blocks_per_sm * threads * iters * 8;
    const double per_clk_sm = exps / (ms * 1e-3) / (mhz * 1e6) / sms;
    printf("K=%d FMAs per exp, %d warps/SM: %.2f ms, %.2f exp/clk/SM (%.0f%% of 16), %.1f FMA/clk/SM\n", K,
           blocks_per_sm * threads / 32, ms, per_clk_sm, 100 * per_clk_sm / 16, per_clk_sm * K);
    cudaFree(out);
}

int main(int argc, char** argv) {
    double mhz = argc > 1 ? atof(argv[1]) : 1980;
    int dev = 0, sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    for (int w : {4, 8, 20}) {
        run<0>(sms, mhz, w / 4, 128);
        run<4>(sms, mhz, w / 4, 128);
        run<6>(sms, mhz, w / 4, 128);
        run<8>(sms, mhz, w / 4, 128);
    }
    return 0;
}
