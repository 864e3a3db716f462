// Decode: the token embedding gather, reading the table in its stored type:
// out[b, :] = table[tokens[b], :] as f32 (the residual stream). One block per
// batch row.

struct DecEmbParams {
    const unsigned char* table;  // (V, D)
    const unsigned int* tokens;  // (batch)
    float* out;                  // (batch, D)
    int D;
    int batch;
};

template <int DT>
__device__ __forceinline__ void embed_body(const DecEmbParams& p) {
    // The step's first kernel (launched plainly): let in_proj launch now, so
    // its weight loads overlap this gather (it waits for it to finish).
    dec_pdl_launch();
    const int b = blockIdx.x;
    if (b >= p.batch) return;
    const unsigned char* row = p.table + w_row_bytes<DT>(p.D) * p.tokens[b];
    float* out = p.out + (long long)b * p.D;
    for (int c = threadIdx.x; c < p.D; c += blockDim.x) out[c] = w_load1<DT>(row, c);
}

DECODE_ENTRIES(decode_embed, embed_body, DecEmbParams, 256)
