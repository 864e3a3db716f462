// Embedding gather: out[t, :] = table[tokens[t], :], f32 rows of D.
// Token ids are checked against the vocabulary on the host before the launch.
// One block per token; consecutive threads copy consecutive columns.

#define EMB_THREADS 256

struct EmbParams {
    const unsigned int* tokens;  // (T)
    const float* table;          // (V, D)
    float* out;                  // (T, D)
    int T;
    int D;
};

extern "C" __global__ void __launch_bounds__(EMB_THREADS) embedding_gather_f32(EmbParams p) {
    const int t = blockIdx.x;
    if (t >= p.T) return;
    const float* src = p.table + (long long)p.tokens[t] * p.D;
    float* dst = p.out + (long long)t * p.D;
    for (int i = threadIdx.x; i < p.D; i += EMB_THREADS) dst[i] = src[i];
}
