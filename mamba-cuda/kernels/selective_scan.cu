// Fused Mamba-1 selective scan, parallel over the sequence as well as channels.
//
// Per batch b, token l, channel e and state n (A already negative, -exp(A_log)):
//   dt     = softplus(delta[b,l,e] + delta_bias[e])      (softplus(v) = v for v > 20)
//   s[n]   = exp(dt * A[e,n]) * s[n] + dt * B[b,l,n] * u[b,l,e]
//   y      = (sum_n s[n] * C[b,l,n] + D[e] * u[b,l,e]) * silu(z[b,l,e])
// The expanded (b, e, l, n) tensors never reach device memory: each thread keeps
// NT states of one channel in registers, and G = NPAD / NT neighbouring lanes
// share one channel when N is larger than NT (their partial y are summed with
// warp shuffles).
//
// The sequence is cut into `nchunks` chunks so that a batch-1 input with few
// channels still fills the GPU. The recurrence is affine in s, so a chunk is
// summarised by (sum of dt over the chunk, end state from a zero start):
//   1. scan_chunk_state_*: every chunk but the last, from a zero start (chunk 0
//      from the initial state), writes its end state and its sum of dt.
//   2. scan_combine: per (b, e, n), walks the chunks in order and turns the
//      summaries into each chunk's true start state (in place).
//   3. scan_output_*: every chunk again, from its true start, writes y; the last
//      chunk writes the final state.
// With nchunks == 1 only pass 3 runs.
//
// Layouts (element strides, so u and z can be halves of one (L, 2E) in_proj
// output and B, C slices of one (L, R + 2N) x_proj output):
//   u, delta, z, y : (batch, L, E)  element [b, l, e] at b * bs + l * rs + e
//   B, C           : (batch, L, N)  element [b, l, n] at b * bs + l * rs + n
//   A              : (E, N) f32;  D, delta_bias: (E) f32
//   s0, s_final    : (batch, E, N) f32, contiguous
//   chunk_state    : (batch, nchunks, E, NPAD) f32 workspace
//   chunk_dsum     : (batch, E, nchunks) f32 workspace
// bf16 values travel as their raw 16 bits (unsigned short); all arithmetic is f32.

#define SCAN_THREADS 128
#define COMBINE_THREADS 256  // scan_combine's block (the host's COMBINE_THREADS)
#ifndef SCAN_COMBINE_REMAP
// 1: scan_combine's lanes of one segment are neighbours (a warp loads and
// stores whole 128-byte lines of chunk states, one L1 wavefront each) and
// the segments meet in shared memory; 0: a chain's W lanes are neighbours
// and meet by shuffles (a warp touches W lines of 32 bytes per load). On the
// H200, 1 is 1-2% faster at 1 x 1536 x 2048 (bf16 0.049 against 0.050 ms
// in four alternating rounds; the chain step 2.8-3.9 us against 3.1-4.6)
// and the same at 8 x 1536 x 2048 (NOTES.md, v13).
#define SCAN_COMBINE_REMAP 1
#endif
// Tokens loaded together before they are used; the host's tiles are multiples
// of it (GROUP in selective_scan.rs).
#define SCAN_GROUP 4
// k > 0: every k-th state's exp2 runs on the FMA pipe (poly_exp2), the rest
// on the MUFU. The chunk-state sweep issues ~93 instructions a token against
// 18 MUFU operations (144 cycles of the MUFU pipe a warp), the output sweep
// ~146 against 20 (160): both wait on the MUFU more than on issue (those are
// v8's counts without the polynomials; NOTES.md v15 has today's). Measured
// on the H200 (NOTES.md, v8): 3 of 16 states in the chunk-state sweep (k = 5)
// and 2 in the output sweep (k = 8) run the split shapes 2-4% faster than
// none, the unsplit ones ~1% slower. -DSCAN_POLY_EVERY=0: MUFU only.
#ifndef SCAN_POLY_EVERY
#define SCAN_POLY_EVERY 8
#endif
// The same per sweep.
#ifndef SCAN_POLY_EVERY_CS
#define SCAN_POLY_EVERY_CS (SCAN_POLY_EVERY == 8 ? 5 : SCAN_POLY_EVERY)
#endif
#ifndef SCAN_POLY_EVERY_OUT
#define SCAN_POLY_EVERY_OUT SCAN_POLY_EVERY
#endif
#ifndef SCAN_PREFETCH_GROUP
#define SCAN_PREFETCH_GROUP 0  // load the next token group's u, delta, z ahead: 1 in the chunk-state kernel, 2 in both (variants to measure)
#endif
#ifndef SCAN_MIN_BLOCKS
// __launch_bounds__ minimum resident blocks per SM of the bf16 kernels. 6
// capped registers at 80 (from 126): 24 warps per SM instead of 16, the
// largest single gain on the H200 (NOTES.md, v3). 5 (96 registers, no spills
// in the staged kernels) measured 2-8% faster again once the planner's
// split and the combine changed (NOTES.md, v9).
#define SCAN_MIN_BLOCKS 5
#endif
#ifndef SCAN_MIN_BLOCKS_F32
// The f32 kernels: 5 (96 registers) measured 4-8% faster than 6 at every
// shape of the table on the H200 (NOTES.md, v8); bf16 followed in v9.
#define SCAN_MIN_BLOCKS_F32 5
#endif

struct ScanParams {
    const void* u;
    const void* delta;
    const void* z;            // may be null: no gate
    const void* B;
    const void* C;
    const float* A;
    const float* D;           // may be null
    const float* delta_bias;  // may be null
    const float* s0;          // may be null: zero initial state
    void* y;
    float* s_final;
    float* chunk_state;
    float* chunk_dsum;
    unsigned long long* tl;   // -DSCAN_TIMELINE=1 only: first/last times of each phase (ns)
    unsigned int* bar;        // scan_fused_*: one arrival counter per (batch, channel block), zero between calls
    long long u_bs, u_rs;
    long long delta_bs, delta_rs;
    long long z_bs, z_rs;
    long long B_bs, B_rs;
    long long C_bs, C_rs;
    long long y_bs, y_rs;
    int batch;
    int L;
    int E;
    int N;
    int G;          // lanes per channel (a power of two)
    int npad;       // N rounded up to G * NT (a power of two)
    int chunk_len;  // tokens of the longest chunk (chunk c: chunk_begin(c) .. chunk_begin(c + 1))
    int nchunks;
    int tile_len;   // tokens of B and C staged in shared memory at once (a power of two)
    int staged;     // 1: scan_body_staged (G == 1, u/delta/z rows 16-byte aligned; see there)
    int comb_w;     // lanes per chain in scan_combine / scan_fused_* (a power of two, at most 32)
};

// Loads in program order (asm volatile): the prefetch below must not be sunk
// to the end of the loop by the compiler, which it does with plain loads.
__device__ __forceinline__ float ldg_early(const float* p) {
    float r;
    asm volatile("ld.global.nc.f32 %0, [%1];" : "=f"(r) : "l"(p) : "memory");
    return r;
}
__device__ __forceinline__ unsigned short ldg_early(const unsigned short* p) {
    unsigned short r;
    asm volatile("ld.global.nc.u16 %0, [%1];" : "=h"(r) : "l"(p) : "memory");
    return r;
}
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(unsigned short v) { return __uint_as_float(((unsigned int)v) << 16); }
__device__ __forceinline__ float load_f(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_f(const unsigned short* p) { return to_f(__ldg(p)); }
// y stores: the value is converted unconditionally and only the store is
// predicated on `w`, so no branch surrounds each token's store (a branch and
// its convergence cost ~3 instructions a token in the unrolled tiles). No
// memory clobber: nothing in the kernel reads y.
__device__ __forceinline__ void store_f(float* p, float v, bool w) {
    asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %2, 0;\n @q st.global.f32 [%0], %1;\n}" ::"l"(p), "f"(v),
                 "r"((unsigned)w));
}
#ifndef SCAN_CVT_BF16
// 1: round y to bf16 with one cvt.rn.bf16.f32 (sm_80+); 0: the same rounding
// (to nearest even, NaN stays NaN) in 7 integer instructions (NOTES.md, v8).
#define SCAN_CVT_BF16 1
#endif
__device__ __forceinline__ void store_f(unsigned short* p, float v, bool w) {
    unsigned short r;
#if SCAN_CVT_BF16 && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
#else
    unsigned int x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        r = (unsigned short)((x >> 16) | 0x40u);
    } else {
        x += 0x7fffu + ((x >> 16) & 1u);
        r = (unsigned short)(x >> 16);
    }
#endif
    asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %2, 0;\n @q st.global.b16 [%0], %1;\n}" ::"l"(p), "h"(r),
                 "r"((unsigned)w));
}

// One MUFU instruction each (the .ftz forms need no range fix-up code, unlike
// __expf / __logf without -ftz).
__device__ __forceinline__ float fast_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ float fast_lg2(float x) {
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ float fast_rcp(float x) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// 2^x for x <= 0 on the FMA pipe (relative error 2.3e-7, like ex2.approx):
// round x to r with the 1.5 * 2^23 trick, a degree-5 fit of 2^f on
// [-0.5, 0.5], then add r to the exponent bits. Results below 2^-125 flush
// to about 2^-125. Relieves the MUFU unit when it is the bound.
__device__ __forceinline__ float poly_exp2(float x) {
    x = fmaxf(x, -125.0f);
    const float t = x + 12582912.0f;
    const float r = t - 12582912.0f;
    const float f = x - r;
    float q = 0.001326698f;
    q = fmaf(q, f, 0.009675469f);
    q = fmaf(q, f, 0.05550742f);
    q = fmaf(q, f, 0.24022122f);
    q = fmaf(q, f, 0.69314694f);
    q = fmaf(q, f, 1.0000001f);
    return __int_as_float(__float_as_int(q) + (__float_as_int(t) << 23));
}

// The exp2 of state j (j is a constant once the loops are unrolled).
template <bool OUTPUT>
__device__ __forceinline__ float state_exp2(int j, float x) {
    constexpr int k = OUTPUT ? SCAN_POLY_EVERY_OUT : SCAN_POLY_EVERY_CS;
    if (k > 0 && j % (k > 0 ? k : 1) == k - 1)
        return poly_exp2(x);
    return fast_exp2(x);
}

// Programmatic dependent launch (sm_90+; the host sets the attribute on the
// combine and output launches of a split call). A kernel lets the next one
// launch early (scan_pdl_launch), and waits for the previous one's results
// (scan_pdl_wait) before reading them. No-ops without the attribute.
__device__ __forceinline__ void scan_pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void scan_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// A block's chunk and sequence: grid (channel blocks, chunks, batch), or
// (channel blocks, batch, chunks) for scan_fused_* (p.bar set), so that the
// last chunk's blocks, idle in the first sweep, are the last launched and
// take the fifth block slots of the SMs that get five: every SM then sweeps
// at most four chunks at once when the grid has fewer than five blocks an SM.
__device__ __forceinline__ int blk_chunk(const ScanParams& p) { return p.bar != nullptr ? blockIdx.z : blockIdx.y; }
__device__ __forceinline__ int blk_batch(const ScanParams& p) { return p.bar != nullptr ? blockIdx.y : blockIdx.z; }

#ifndef SCAN_TIMELINE
#define SCAN_TIMELINE 0
#endif
// A diagnostic (-DSCAN_TIMELINE=1 and MAMBA_CUDA_SCAN_TIMELINE=1 on the
// host): thread 0 of each block records when its block reaches phase `slot`,
// keeping the first and the last time over all blocks (globaltimer, ns).
__device__ __forceinline__ void tl_mark(const ScanParams& p, int slot) {
#if SCAN_TIMELINE
    unsigned long long* tl = p.tl;
    if (tl != nullptr && threadIdx.x == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        atomicMin(tl + 2 * slot, t);
        atomicMax(tl + 2 * slot + 1, t);
        // Per block, after the 10 phases: (SM, chunk-state start, chunk-state
        // end, SM, output start, output end), blocks in (b, chunk, x) order.
        const int k = slot == 0 ? 1 : slot == 2 ? 2 : slot == 5 ? 4 : slot == 8 ? 5 : -1;
        if (k >= 0) {
            unsigned int sm;
            asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
            unsigned long long* row =
                tl + 20 + 6 * (((long long)blk_batch(p) * p.nchunks + blk_chunk(p)) * gridDim.x + blockIdx.x);
            row[k] = t;
            if (k == 1 || k == 4) row[k - 1] = sm;
        }
    }
#endif
}

// The single-launch split (scan_fused_*): the blocks of one (batch, channel
// block) are all resident at once (a cooperative launch), and meet at an
// arrival counter instead of at kernel boundaries. A block arrives three
// times (after its chunk summary, after its share of the chains, at its
// end); the last arrival puts the counter back to zero for the next call.
// The arrival orders the block's earlier global writes before the count
// (a barrier, then one thread's release add, as a grid sync does with a
// fence and an add).
// Counters sit SCAN_BAR_STRIDE u32 (128 bytes) apart: the pollers of one
// channel block do not share a line with another's.
#define SCAN_BAR_STRIDE 32
#ifndef SCAN_SPIN_SLEEP
#define SCAN_SPIN_SLEEP 32  // ns between polls of a waiting block
#endif
__device__ __forceinline__ unsigned int* group_counter(const ScanParams& p) {
    return p.bar + ((long long)blockIdx.y * gridDim.x + blockIdx.x) * SCAN_BAR_STRIDE;
}
__device__ __forceinline__ void group_arrive(unsigned int* cnt) {
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt) : "memory");
}
// Waits until `target` arrivals are counted; the other blocks' writes before
// them are then visible to every thread of the block (the acquire fence also
// drops the SM's L1 lines, so plain loads do not see stale copies). Polls
// with relaxed loads and acquires once: an acquiring load invalidates the
// SM's L1 each time (CCTL.IVALL), which slowed the blocks still sweeping
// beside a poller (NOTES.md, v10).
__device__ __forceinline__ void group_wait(unsigned int* cnt, unsigned int target) {
    if (threadIdx.x == 0) {
        while (true) {
            unsigned int v;
            asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt) : "memory");
            if (v >= target) break;
#if SCAN_SPIN_SLEEP > 0
            __nanosleep(SCAN_SPIN_SLEEP);
#endif
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
    __syncthreads();
}
__device__ __forceinline__ void group_leave(unsigned int* cnt, unsigned int nb) {
    if (threadIdx.x == 0 && atomicAdd(cnt, 1u) == 3u * nb - 1u) atomicExch(cnt, 0u);
}

// The chunks' dt sums are stored (batch, E, nchunks): a channel's chunks
// side by side, so a chain lane of scan_combine reads its segment's sums
// from one or two sectors instead of one sector a chunk ((batch, nchunks, E)
// measured 0.7% slower at 1 x 1536 x 2048 on the H200; NOTES.md, v12).
// Index of chunk c's sum of channel e, sequence b.
__device__ __forceinline__ long long dsum_at(const ScanParams& p, int b, int c, int e) {
    return ((long long)b * p.E + e) * p.nchunks + c;
}

// Chunk c of a split sequence is tokens [c L / n, (c + 1) L / n): even
// chunks, none longer than p.chunk_len (the host's `plan` cuts the same way).
__device__ __forceinline__ int chunk_begin(const ScanParams& p, int c) {
    return (int)(((long long)c * p.L) / p.nchunks);
}

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

#ifndef SCAN_PRECISE_MATH
// MUFU-based and branch-free: absolute error about 1e-7 (relative error large
// only where the result is below about 1e-7, which no output can notice).
// exp2 overflows to inf for large v and the select returns v; for very
// negative z, rcp(inf) = 0 gives silu = -0.
__device__ __forceinline__ float softplus(float v) {
    const float sp = fast_lg2(1.0f + fast_exp2(v * LOG2E)) * LN2;
    return v > 20.0f ? v : sp;
}
__device__ __forceinline__ float silu(float z) { return z * fast_rcp(1.0f + fast_exp2(-z * LOG2E)); }
#else
#undef SCAN_TANH_SILU
#define SCAN_TANH_SILU 0
__device__ __forceinline__ float softplus(float v) {
    return v > 20.0f ? v : log1pf(expf(v));
}
__device__ __forceinline__ float silu(float z) { return z / (1.0f + expf(-z)); }
#endif

#ifndef SCAN_TANH_SILU
// 1: the bf16 kernels gate with silu(z) = z (1 + tanh(z / 2)) / 2, one MUFU
// operation (tanh.approx, sm_75+, relative error about 2^-11, far below
// bf16's rounding of y) instead of two (ex2 and rcp). f32 keeps silu above.
#define SCAN_TANH_SILU 1
#endif
template <typename T>
__device__ __forceinline__ float gate(float z) {
#if SCAN_TANH_SILU && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
    if constexpr (sizeof(T) == 2) {
        const float h = 0.5f * z;
        float t;
        asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(h));
        return fmaf(h, t, h);
    }
#endif
    return silu(z);
}

// NT consecutive floats of a row in shared or global memory; 16-byte loads
// when NT allows (the caller guarantees the row is then 16-byte aligned: shared
// rows start at multiples of NPAD = G * NT floats).
template <int NT>
__device__ __forceinline__ void load_row(const float* row, float (&v)[NT]) {
    if constexpr (NT % 4 == 0) {
#pragma unroll
        for (int k = 0; k < NT / 4; ++k) {
            const float4 w = reinterpret_cast<const float4*>(row)[k];
            v[4 * k] = w.x;
            v[4 * k + 1] = w.y;
            v[4 * k + 2] = w.z;
            v[4 * k + 3] = w.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < NT; ++k) v[k] = row[k];
    }
}

// One token of one channel, shared by both bodies: dt = softplus(delta +
// bias), the NT state updates, and (OUTPUT) y = (C . s [summed over the G
// lanes of the channel] + D u) * silu(z), stored by `writer`; yp advances a row.
template <typename T, int NT, bool OUTPUT>
__device__ __forceinline__ void scan_token_dt(float (&s)[NT], const float (&A2)[NT], float& dsum, T*& yp,
                                              long long y_rs, float Dv, bool has_z, int G, bool writer, float dt,
                                              float uu, float zz, const float* brow, const float* crow) {
    dsum += dt;
    const float du = dt * uu;
    float bv[NT];
    load_row<NT>(brow, bv);
    if (OUTPUT) {
        float cv[NT];
        load_row<NT>(crow, cv);
        // Four partial sums: shorter dependency chains than one.
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            s[j] = fmaf(state_exp2<OUTPUT>(j, dt * A2[j]), s[j], du * bv[j]);
            acc[j & 3] = fmaf(s[j], cv[j], acc[j & 3]);
        }
        float a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        if (G > 1) {
            for (int off = G >> 1; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
        }
        float out = fmaf(Dv, uu, a);
        if (has_z) out *= gate<T>(zz);
        store_f(yp, out, writer);
        yp += y_rs;
    } else {
#pragma unroll
        for (int j = 0; j < NT; ++j) s[j] = fmaf(state_exp2<OUTPUT>(j, dt * A2[j]), s[j], du * bv[j]);
    }
}
template <typename T, int NT, bool OUTPUT>
__device__ __forceinline__ void scan_token(float (&s)[NT], const float (&A2)[NT], float& dsum, T*& yp,
                                           long long y_rs, float bias, float Dv, bool has_z, int G, bool writer,
                                           float uu, float dd, float zz, const float* brow, const float* crow) {
    scan_token_dt<T, NT, OUTPUT>(s, A2, dsum, yp, y_rs, Dv, has_z, G, writer, softplus(dd + bias), uu, zz, brow,
                                 crow);
}

// One (batch, chunk, block of channels) per thread block.
//
// Per token the work outside the NT state updates is kept small (NOTES.md,
// v4): pointers advance by their row strides instead of recomputing 64-bit
// offsets, softplus/silu are a few MUFU instructions with no branches, full
// groups of SCAN_GROUP tokens load without bounds checks, and the B/C tile is
// staged with shifts (NPAD and the tile length are powers of two).
template <typename T, int NT, bool OUTPUT>
__device__ __forceinline__ void scan_body(const ScanParams& p) {
    extern __shared__ float smem[];  // sB[tile_len][NPAD], then sC[tile_len][NPAD]
    const int G = p.G;
    const int NPAD = p.npad;  // == G * NT, a power of two
    const int npad_shift = __ffs(NPAD) - 1;
    const int tid = threadIdx.x;
    const int g = tid & (G - 1);
    const int e_raw = blockIdx.x * (SCAN_THREADS / G) + tid / G;
    const bool e_ok = e_raw < p.E;
    const int e = e_ok ? e_raw : p.E - 1;  // out-of-range lanes compute, never write
    const int c = blockIdx.y;
    const int b = blockIdx.z;
    const int n0 = g * NT;

    float* sB = smem;
    float* sC = smem + p.tile_len * NPAD;

    float A2[NT];
    float s[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int n = n0 + j;
        A2[j] = n < p.N ? p.A[(long long)e * p.N + n] * LOG2E : 0.0f;
        s[j] = 0.0f;
    }
    if (c == 0) {
        if (p.s0 != nullptr) {
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const int n = n0 + j;
                if (n < p.N) s[j] = p.s0[((long long)b * p.E + e) * p.N + n];
            }
        }
    } else if (OUTPUT) {
        scan_pdl_wait();  // the combine pass wrote the start states
        const float* st = p.chunk_state + (((long long)b * p.nchunks + c) * p.E + e) * NPAD + n0;
#pragma unroll
        for (int j = 0; j < NT; ++j) s[j] = st[j];
    }
    const float bias = p.delta_bias != nullptr ? p.delta_bias[e] : 0.0f;
    const float Dv = (OUTPUT && p.D != nullptr) ? p.D[e] : 0.0f;
    const bool has_z = OUTPUT && p.z != nullptr;
    const bool writer = e_ok && g == 0;

    if (!OUTPUT) scan_pdl_launch();  // the combine pass may launch and wait
    const int t_begin = chunk_begin(p, c);
    const int t_end = chunk_begin(p, c + 1);
    // Per-thread pointers at the chunk's first token, advanced token by token.
    const T* up = (const T*)p.u + (long long)b * p.u_bs + (long long)t_begin * p.u_rs + e;
    const T* dp = (const T*)p.delta + (long long)b * p.delta_bs + (long long)t_begin * p.delta_rs + e;
    const T* zp = has_z ? (const T*)p.z + (long long)b * p.z_bs + (long long)t_begin * p.z_rs + e : nullptr;
    T* yp = OUTPUT ? (T*)p.y + (long long)b * p.y_bs + (long long)t_begin * p.y_rs + e : nullptr;
    const long long u_rs = p.u_rs, d_rs = p.delta_rs, z_rs = p.z_rs, y_rs = p.y_rs;
    const T* Bp = (const T*)p.B + (long long)b * p.B_bs;
    const T* Cp = (const T*)p.C + (long long)b * p.C_bs;
    float dsum = 0.0f;

    // One token: dt, the NT state updates and (OUTPUT) y, written by lane 0 of the channel.
    auto token = [&](float uu, float dd, float zz, const float* brow, const float* crow) {
        scan_token<T, NT, OUTPUT>(s, A2, dsum, yp, y_rs, bias, Dv, has_z, G, writer, uu, dd, zz, brow, crow);
    };

    for (int t0 = t_begin; t0 < t_end; t0 += p.tile_len) {
        const int nt = min(p.tile_len, t_end - t0);
        __syncthreads();  // the previous tile is consumed
        // Stage rows t0 .. t0 + nt of B (and C); columns n >= N hold 0, so
        // padded states keep s = 0.
        for (int i = tid; i < (nt << npad_shift); i += SCAN_THREADS) {
            const int tt = i >> npad_shift;
            const int n = i & (NPAD - 1);
            float bval = 0.0f, cval = 0.0f;
            if (n < p.N) {
                bval = load_f(Bp + (long long)(t0 + tt) * p.B_rs + n);
                if (OUTPUT) cval = load_f(Cp + (long long)(t0 + tt) * p.C_rs + n);
            }
            sB[i] = bval;
            if (OUTPUT) sC[i] = cval;
        }
        __syncthreads();

        const float* brow = sB + n0;
        const float* crow = sC + n0;
        const int full = nt & ~(SCAN_GROUP - 1);
        if constexpr (SCAN_PREFETCH_GROUP == 2 || (SCAN_PREFETCH_GROUP == 1 && !OUTPUT)) {
            // The next group's raw values are loaded before this group's tokens
            // run, so a warp does not wait on global memory every SCAN_GROUP tokens.
            T pu[SCAN_GROUP], pd[SCAN_GROUP], pz[SCAN_GROUP];
            auto fetch = [&]() {
#pragma unroll
                for (int q = 0; q < SCAN_GROUP; ++q) {
                    pu[q] = ldg_early(up);
                    pd[q] = ldg_early(dp);
                    pz[q] = has_z ? ldg_early(zp) : (T)0;
                    up += u_rs;
                    dp += d_rs;
                    if (has_z) zp += z_rs;
                }
            };
            auto run_group = [&]() {
                float uu[SCAN_GROUP], dd[SCAN_GROUP], zz[SCAN_GROUP];
#pragma unroll
                for (int q = 0; q < SCAN_GROUP; ++q) {
                    uu[q] = to_f(pu[q]);
                    dd[q] = to_f(pd[q]);
                    zz[q] = to_f(pz[q]);
                }
                return [&, uu, dd, zz]() {
#pragma unroll
                    for (int q = 0; q < SCAN_GROUP; ++q) {
                        token(uu[q], dd[q], zz[q], brow, crow);
                        brow += NPAD;
                        crow += NPAD;
                    }
                };
            };
            if (full > 0) {
                fetch();
                // Every group but the last fetches the next one before its
                // tokens run (no branch between, so the loads stay ahead).
                for (int tt = SCAN_GROUP; tt < full; tt += SCAN_GROUP) {
                    auto tokens = run_group();
                    fetch();
                    tokens();
                }
                run_group()();
            }
        } else {
            for (int tt = 0; tt < full; tt += SCAN_GROUP) {
                float uu[SCAN_GROUP], dd[SCAN_GROUP], zz[SCAN_GROUP];
#pragma unroll
                for (int q = 0; q < SCAN_GROUP; ++q) {
                    uu[q] = load_f(up);
                    dd[q] = load_f(dp);
                    zz[q] = has_z ? load_f(zp) : 0.0f;
                    up += u_rs;
                    dp += d_rs;
                    if (has_z) zp += z_rs;
                }
#pragma unroll
                for (int q = 0; q < SCAN_GROUP; ++q) {
                    token(uu[q], dd[q], zz[q], brow, crow);
                    brow += NPAD;
                    crow += NPAD;
                }
            }
        }
        for (int tt = full; tt < nt; ++tt) {
            const float uu = load_f(up);
            const float dd = load_f(dp);
            const float zz = has_z ? load_f(zp) : 0.0f;
            up += u_rs;
            dp += d_rs;
            if (has_z) zp += z_rs;
            token(uu, dd, zz, brow, crow);
            brow += NPAD;
            crow += NPAD;
        }
    }

    if (!e_ok) return;
    if (OUTPUT) {
        if (c == p.nchunks - 1) {
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const int n = n0 + j;
                if (n < p.N) p.s_final[((long long)b * p.E + e) * p.N + n] = s[j];
            }
        }
    } else {
        float* st = p.chunk_state + (((long long)b * p.nchunks + c) * p.E + e) * NPAD + n0;
#pragma unroll
        for (int j = 0; j < NT; ++j) st[j] = s[j];
        if (g == 0) p.chunk_dsum[dsum_at(p, b, c, e)] = dsum;
    }
}

// ---------------------------------------------------------------------------
// The staged variant (G == 1, so one thread per channel and a block of
// SCAN_THREADS channels; the host picks it when u, delta and z rows are
// 16-byte aligned and E is a multiple of 16 / sizeof(T)).
//
// The plain body loads each group of SCAN_GROUP tokens' u, delta and z from
// global memory right before it uses them, so every warp waits a full memory
// round trip every 4 tokens, and all warps of an SM wait together (NOTES.md,
// v6: 33% of the loop's stall samples). Here the block copies tiles of
// STAGE_TT tokens (32 bytes of each array per channel: 16 bf16 or 8 f32
// tokens) into shared memory with cp.async (sm_80+; plain 16-byte loads on
// older parts), double-buffered: tile k + 1 is in flight while tile k runs.
// B and C of tile k + 1 are loaded into registers at the same time and
// stored to shared memory (as f32, zero-padded to NPAD) after tile k.
// The output kernel issues its first tile before waiting for the combine pass
// (programmatic dependent launch): only the start state depends on it.
// A chunk's partial tile (len % TT tokens, run as a loop rather than
// unrolled) is its first (SCAN_PARTIAL_FIRST; 0: its last), and that loop
// computes dt a token ahead (SCAN_TAIL_PIPE). Together: 1 x 1536 x 2048 bf16
// 0.048 against 0.049 ms, 1.57x against 1.52x (NOTES.md, v15). Both at 0 is
// the code before; SCAN_PARTIAL_FIRST=0 alone keeps the look-ahead loop.
#ifndef SCAN_TAIL_PIPE
#define SCAN_TAIL_PIPE 1
#endif
#ifndef SCAN_PARTIAL_FIRST
#define SCAN_PARTIAL_FIRST 1
#endif
#ifndef SCAN_FIRST_TILE
// With SCAN_PARTIAL_FIRST=0 only: tokens of a staged sweep's first tile (at
// most TT, the tile). Every block of a sweep starts at once and waits for its
// first tile; a short one (4) let the H200's first sweep start computing ~1 us
// sooner, but the call was no faster (NOTES.md, v12), so the default keeps
// whole tiles.
#define SCAN_FIRST_TILE 64
#endif
static_assert(SCAN_FIRST_TILE >= 1, "SCAN_FIRST_TILE: at least one token");
template <typename T>
struct Stage {
    static constexpr int TT = 32 / sizeof(T);               // tokens per tile
    static constexpr int ROW = SCAN_THREADS * sizeof(T);     // bytes of one token's channels
    static constexpr int VEC = 16 / sizeof(T);               // channels per 16-byte copy
    static constexpr int CHUNKS = SCAN_THREADS / VEC;        // 16-byte copies per row
    static constexpr int BC_PER = (TT * 16 + SCAN_THREADS - 1) / SCAN_THREADS;  // B (and C) elements per thread (NPAD <= 16)
};

__device__ __forceinline__ void stage_copy16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(src) : "memory");
#else
    *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
#endif
}
__device__ __forceinline__ void stage_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// Waits until at most `pending` (0 or 1) of this thread's groups are in flight.
template <int PENDING>
__device__ __forceinline__ void stage_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(PENDING) : "memory");
#endif
}

// NT floats into a global row: float4 stores when NT is a multiple of 4 (the
// caller guarantees the row is then 16-byte aligned); load_row reads them.
template <int NT>
__device__ __forceinline__ void gst_row(float* row, const float (&v)[NT]) {
    if constexpr (NT % 4 == 0) {
#pragma unroll
        for (int k = 0; k < NT / 4; ++k)
            reinterpret_cast<float4*>(row)[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
    } else {
#pragma unroll
        for (int k = 0; k < NT; ++k) row[k] = v[k];
    }
}

// 16-byte copies of one staged array with elements of ES bytes: a row (one
// token's SCAN_THREADS channels) is CHUNKS copies, so one pass of the block
// covers STEP rows and a tile of TT rows takes NCOPY copies per thread
// (2 for u, delta and z, bf16 or f32).
template <int ES, int TT>
struct StageArr {
    static constexpr int CHUNKS = SCAN_THREADS * ES / 16;
    static constexpr int VEC = 16 / ES;
    static constexpr int STEP = SCAN_THREADS / CHUNKS;
    static constexpr int NCOPY = TT / STEP;
    static_assert(NCOPY * STEP == TT, "whole copies per tile");
};

// One array's copy stream for one thread: set up once per chunk, advanced a
// tile per issue (NOTES.md, v7: computing addresses per copy cost ~350
// instructions a tile).
template <int ES, int TT>
struct StageSrc {
    using A = StageArr<ES, TT>;
    const char* src;  // row row0 of the chunk, column col
    long long rs;     // bytes between rows
    int row0;         // first row of this thread's copies (then + STEP each)
    int dst;          // byte offset in the array's tile: row0 * ROW + col * ES
    bool ok;          // the column is inside E
    __device__ __forceinline__ void init(const void* base, long long row_stride_elems, int t_begin, int e0, int E,
                                         bool live) {
        const int tid = threadIdx.x;
        const int col = (tid % A::CHUNKS) * A::VEC;
        row0 = tid / A::CHUNKS;
        rs = row_stride_elems * ES;
        src = (const char*)base + ((long long)(t_begin + row0) * row_stride_elems + e0 + col) * ES;
        dst = (row0 * SCAN_THREADS + col) * ES;
        ok = live && e0 + col < E;
    }
    // Queues this thread's copies of a tile of nt rows into `tile` (bytes),
    // then moves on `adv` rows (the tile's length, TT but for a short first tile).
    __device__ __forceinline__ void issue(char* tile, int nt, int adv) {
#pragma unroll
        for (int h = 0; h < A::NCOPY; ++h) {
            if (row0 + h * A::STEP < nt && ok)
                stage_copy16(tile + dst + h * A::STEP * SCAN_THREADS * ES, src + h * A::STEP * rs);
        }
        src += adv * rs;
    }
};

template <typename T, int NT, bool OUTPUT, bool FUSED = false>
__device__ __forceinline__ void scan_body_staged(const ScanParams& p) {
    using S = Stage<T>;
    constexpr int TT = S::TT;
    constexpr int TSZ = (int)sizeof(T);
    constexpr int ROW = TT * SCAN_THREADS * TSZ;  // bytes of one array's tile
    // One buffer: u, (z,) delta; two buffers, then sB[TT][NPAD], sC[TT][NPAD] (f32).
    constexpr int BUF = ROW * (OUTPUT ? 3 : 2);
    constexpr int OFF_Z = ROW;
    constexpr int OFF_D = ROW * (OUTPUT ? 2 : 1);
    extern __shared__ float smem[];
    char* raw = reinterpret_cast<char*>(smem);
    float* sB = smem + (2 * BUF) / 4;
    float* sC = sB + TT * NT;
    const int NPAD = NT;  // G == 1
    const int npad_shift = __ffs(NPAD) - 1;
    const int tid = threadIdx.x;
    const int e0 = blockIdx.x * SCAN_THREADS;
    const int e_raw = e0 + tid;
    const bool e_ok = e_raw < p.E;
    const int e = e_ok ? e_raw : p.E - 1;
    const int c = FUSED ? blockIdx.z : blockIdx.y;
    const int b = FUSED ? blockIdx.y : blockIdx.z;
    const bool has_z = OUTPUT && p.z != nullptr;

    const int t_begin = chunk_begin(p, c);
    const int t_end = chunk_begin(p, c + 1);
    // Tile 0 is ft tokens, the rest TT (with SCAN_PARTIAL_FIRST=0 the last may
    // be shorter): every block of a sweep starts at once and waits for its
    // first tile, so a short one lets compute start before the whole burst of
    // first tiles has come in.
    constexpr int FT = SCAN_FIRST_TILE < TT ? SCAN_FIRST_TILE : TT;
    const int len = t_end - t_begin;
#if SCAN_PARTIAL_FIRST
    // The chunk's partial tile (len % TT tokens) goes first: a short first
    // tile, and the loop runs while every block of the SM is still sweeping,
    // not at the end, when fewer are left to hide its latency. Every later
    // tile is whole.
    const int ft = len % TT != 0 ? len % TT : TT;
#else
    const int ft = FT;
#endif
    const int ntiles = len <= ft ? (len > 0 ? 1 : 0) : 1 + (len - ft + TT - 1) / TT;
    // First token of tile k, relative to t_begin.
    auto tile_at = [&](int k) { return k == 0 ? 0 : ft + (k - 1) * TT; };
    const T* Bp = (const T*)p.B + (long long)b * p.B_bs;
    const T* Cp = (const T*)p.C + (long long)b * p.C_bs;

    StageSrc<TSZ, TT> cu, cz, cd;
    cu.init((const T*)p.u + (long long)b * p.u_bs, p.u_rs, t_begin, e0, p.E, true);
    if (OUTPUT) cz.init(has_z ? (const T*)p.z + (long long)b * p.z_bs : (const T*)p.u, p.z_rs, t_begin, e0, p.E, has_z);
    cd.init((const T*)p.delta + (long long)b * p.delta_bs, p.delta_rs, t_begin, e0, p.E, true);

    T bcv[2 * S::BC_PER];  // raw B and C of the next tile, in flight during this one
    // B and C: element tid + j * SCAN_THREADS of a tile (row-major TT x NPAD;
    // SCAN_THREADS is a multiple of NPAD), so column bc_n and rows bc_row + j * BC_STEP.
    const int bc_n = tid & (NPAD - 1);
    const int bc_row = tid >> npad_shift;
    const int bc_step = SCAN_THREADS >> npad_shift;
    const bool bc_ok = bc_n < p.N;
    const T* bsrc = Bp + (long long)(t_begin + bc_row) * p.B_rs + bc_n;
    const T* csrc = Cp + (long long)(t_begin + bc_row) * p.C_rs + bc_n;
    // Queues tile k's u (z) copies into buffer k & 1 and loads its B and C
    // into bcv (asm volatile loads: issued here, not sunk to their use after
    // the tile). Rows past the chunk's end are not copied (only the partial
    // tile's look-ahead reads one, and discards what it reads).
    auto issue = [&](int k) {
        const int adv = k == 0 ? ft : TT;
        const int nt = min(adv, len - tile_at(k));
        char* buf = raw + (k & 1) * BUF;
        cu.issue(buf, nt, adv);
        if (OUTPUT) cz.issue(buf + OFF_Z, nt, adv);
        cd.issue(buf + OFF_D, nt, adv);
#pragma unroll
        for (int j = 0; j < S::BC_PER; ++j) {
            const int tt = bc_row + j * bc_step;
            bcv[2 * j] = (T)0;
            bcv[2 * j + 1] = (T)0;
            if (tt < nt && bc_ok) {
                bcv[2 * j] = ldg_early(bsrc + (long long)(j * bc_step) * p.B_rs);
                if (OUTPUT) bcv[2 * j + 1] = ldg_early(csrc + (long long)(j * bc_step) * p.C_rs);
            }
        }
        bsrc += adv * p.B_rs;
        if (OUTPUT) csrc += adv * p.C_rs;
    };
    auto store_bc = [&]() {
#pragma unroll
        for (int j = 0; j < S::BC_PER; ++j) {
            const int i = tid + j * SCAN_THREADS;
            if (i < TT * NPAD) {
                sB[i] = to_f(bcv[2 * j]);
                if (OUTPUT) sC[i] = to_f(bcv[2 * j + 1]);
            }
        }
    };

    tl_mark(p, OUTPUT ? 5 : 0);
    if (!OUTPUT) scan_pdl_launch();  // the combine pass may launch and wait
    if (ntiles > 0) {
        issue(0);
        stage_commit();
    }

    float A2[NT];
    float s[NT];
    // Rows of A, s0 and s_final are 16-byte aligned when N == NT (a multiple
    // of 4), chunk_state rows always (NPAD floats): float4 loads and stores.
    const bool vec_n = NT % 4 == 0 && p.N == NT;
    if (vec_n) {
        load_row<NT>(p.A + (long long)e * NT, A2);
    } else {
#pragma unroll
        for (int j = 0; j < NT; ++j) A2[j] = j < p.N ? p.A[(long long)e * p.N + j] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        A2[j] *= LOG2E;
        s[j] = 0.0f;
    }
    const float bias = p.delta_bias != nullptr ? p.delta_bias[e] : 0.0f;
    const float Dv = (OUTPUT && p.D != nullptr) ? p.D[e] : 0.0f;
    if (c == 0) {
        if (p.s0 != nullptr) {
            if (vec_n) {
                load_row<NT>(p.s0 + ((long long)b * p.E + e) * NT, s);
            } else {
#pragma unroll
                for (int j = 0; j < NT; ++j)
                    if (j < p.N) s[j] = p.s0[((long long)b * p.E + e) * p.N + j];
            }
        }
    } else if (OUTPUT) {
        // The chain step wrote the start states: the combine kernel, or in
        // scan_fused_* the channel block's lanes (plain loads are safe after
        // group_wait: its acquire fence drops the SM's L1 lines).
        if (FUSED)
            group_wait(group_counter(p), 2u * gridDim.z);
        else
            scan_pdl_wait();
        tl_mark(p, 6);
        load_row<NT>(p.chunk_state + (((long long)b * p.nchunks + c) * p.E + e) * NPAD, s);
    }
    T* yp = OUTPUT ? (T*)p.y + (long long)b * p.y_bs + (long long)t_begin * p.y_rs + e : nullptr;
    const long long y_rs = p.y_rs;
    float dsum = 0.0f;

    auto token = [&](float uu, float dd, float zz, const float* brow, const float* crow) {
        scan_token<T, NT, OUTPUT>(s, A2, dsum, yp, y_rs, bias, Dv, has_z, 1, e_ok, uu, dd, zz, brow, crow);
    };

    for (int k = 0; k < ntiles; ++k) {
        const int nt = min(k == 0 ? ft : TT, len - tile_at(k));
        __syncthreads();  // tile k - 1 is consumed: sB / sC and buffer (k + 1) & 1 are free
        store_bc();
        if (k + 1 < ntiles) {
            issue(k + 1);
            stage_commit();
            stage_wait<1>();  // tile k's copies (this thread's) have landed
        } else {
            stage_wait<0>();
        }
        __syncthreads();  // ... and everyone's
        if (k == 0) tl_mark(p, OUTPUT ? 7 : 1);
        const char* buf = raw + (k & 1) * BUF;
        const T* su = reinterpret_cast<const T*>(buf) + tid;
        const T* sd = reinterpret_cast<const T*>(buf + OFF_D) + tid;
        const T* sz = reinterpret_cast<const T*>(buf + OFF_Z) + tid;
        const float* brow = sB;
        const float* crow = sC;
        auto run = [&](int tt) {
            token(to_f(su[tt * SCAN_THREADS]), to_f(sd[tt * SCAN_THREADS]),
                  has_z ? to_f(sz[tt * SCAN_THREADS]) : 0.0f, brow + tt * NPAD, crow + tt * NPAD);
        };
        if (nt == TT) {
#pragma unroll
            for (int tt = 0; tt < TT; ++tt) run(tt);
        } else if (!SCAN_PARTIAL_FIRST && FT < TT && nt == FT) {
#pragma unroll
            for (int tt = 0; tt < FT; ++tt) run(tt);
        } else {
#if SCAN_TAIL_PIPE
            // A partial tile (nt < TT tokens; at most one a chunk) runs as a
            // loop, one token an iteration: dt of the next token is computed
            // here, a token ahead, so its softplus (two dependent MUFU
            // operations after the shared load) is not in front of each
            // token's state updates. Row nt < TT is inside the buffer: its
            // value is garbage there, and dt_next of the last round unused.
            float dt_next = softplus(to_f(sd[0]) + bias);
            for (int tt = 0; tt < nt; ++tt) {
                const float dt = dt_next;
                dt_next = softplus(to_f(sd[(tt + 1) * SCAN_THREADS]) + bias);
                scan_token_dt<T, NT, OUTPUT>(s, A2, dsum, yp, y_rs, Dv, has_z, 1, e_ok, dt,
                                             to_f(su[tt * SCAN_THREADS]),
                                             has_z ? to_f(sz[tt * SCAN_THREADS]) : 0.0f, brow + tt * NPAD,
                                             crow + tt * NPAD);
            }
#else
            for (int tt = 0; tt < nt; ++tt) run(tt);
#endif
        }
    }

    tl_mark(p, OUTPUT ? 8 : 2);
    if (!e_ok) return;
    if (OUTPUT && c == p.nchunks - 1) {
        if (vec_n) {
            gst_row<NT>(p.s_final + ((long long)b * p.E + e) * NT, s);
        } else {
#pragma unroll
            for (int j = 0; j < NT; ++j)
                if (j < p.N) p.s_final[((long long)b * p.E + e) * p.N + j] = s[j];
        }
    }
    if (!OUTPUT) {
        gst_row<NT>(p.chunk_state + (((long long)b * p.nchunks + c) * p.E + e) * NPAD, s);
        p.chunk_dsum[dsum_at(p, b, c, e)] = dsum;
    }
}

// Pass 2: the chunk chains. Slot c of chunk_state holds, on entry, chunk c's
// end state from a zero start (chunk 0: from s0), and on exit chunk c's true
// start state (c >= 1; slot 0 is left as it was). The chain of one (b, e, n)
// is cut into W = p.comb_w segments of consecutive chunks, one per lane of a
// group of W lanes: each lane loads its segment's summaries at once, folds
// them into one map x -> P x + H, the W lanes' maps (met in shared memory,
// SCAN_COMBINE_REMAP, or by a shuffle scan) give each segment its entering
// state, and the lane walks its segment writing start states. One round of
// memory latency where a single serial chain took one per COMBINE_AHEAD
// chunks (4 at 64 chunks, ~4 us on the H200; NOTES.md, v9).
#define COMBINE_SEG 16
// The state entering lane w's segment of a chain cut into W segments on
// consecutive lanes (a power of two, every lane of the warp here): each lane
// holds its segment's map x -> P x + H; an inclusive shuffle scan gives lane
// w the map of segments 0 .. w, and shifted by one, applied to e0 (chunk 0's
// end state), the state entering segment w.
__device__ __forceinline__ float segment_entry(float P, float H, int w, int W, float e0) {
    for (int off = 1; off < W; off <<= 1) {
        const float Pp = __shfl_up_sync(0xffffffffu, P, off, W);
        const float Hp = __shfl_up_sync(0xffffffffu, H, off, W);
        if (w >= off) {
            H = fmaf(P, Hp, H);
            P *= Pp;
        }
    }
    const float Pe = __shfl_up_sync(0xffffffffu, P, 1, W);
    const float He = __shfl_up_sync(0xffffffffu, H, 1, W);
    return w == 0 ? e0 : fmaf(Pe, e0, He);
}
// The same through shared memory (SCAN_COMBINE_REMAP): lane w of chain j of
// the block's CH chains is thread w * CH + j; every thread of the block calls it.
__device__ __forceinline__ float segment_entry_smem(float P, float H, int w, int j, int CH, float e0) {
    __shared__ float sP[COMBINE_THREADS], sH[COMBINE_THREADS];
    sP[threadIdx.x] = P;
    sH[threadIdx.x] = H;
    __syncthreads();
    float carry = e0;
    for (int v = 0; v < w; ++v) carry = fmaf(sP[v * CH + j], carry, sH[v * CH + j]);
    return carry;
}
// One lane w of W of the chain of (b, e, n) (en = e * NPAD + n). A lane that
// is not `live` computes on a valid chain and writes nothing: the shuffles
// (or the barrier) need every lane. `j`: the chain's index in the block
// (SCAN_COMBINE_REMAP only).
__device__ __forceinline__ void combine_chain(const ScanParams& p, int b, long long en, int e, int n, int w, int W,
                                              bool live, int j) {
    const long long per_batch = (long long)p.E * p.npad;
    const float A2 = n < p.N ? p.A[(long long)e * p.N + n] * LOG2E : 0.0f;
    const long long cstride = per_batch;  // from chunk c to c + 1
    float* st = p.chunk_state + (long long)b * p.nchunks * per_batch + en;
    const float* ds = p.chunk_dsum + dsum_at(p, b, 0, e);  // chunk c's at ds[c]
    // Chunks 1 .. nchunks - 1 get a start state; summaries exist for chunks
    // 0 .. nchunks - 2 (the last chunk has none).
    const int last = p.nchunks - 2;  // the last chunk with a summary
    const int seg = (p.nchunks - 1 + W - 1) / W;
    const int c_lo = 1 + w * seg;
    const int c_hi = min(p.nchunks, c_lo + seg);  // this lane: chunks [c_lo, c_hi)
    const float e0 = st[0];
    float h[COMBINE_SEG], d[COMBINE_SEG];
    auto load = [&](int c0) {
#pragma unroll
        for (int k = 0; k < COMBINE_SEG; ++k) {
            const int c = c0 + k;
            const bool ok = c < c_hi && c <= last;
            h[k] = ok ? st[c * cstride] : 0.0f;
            d[k] = ok ? ds[c] : 0.0f;
        }
    };
    // The segment's map (a chunk past the end has d = 0, h = 0: identity).
    float H = 0.0f, dsum = 0.0f;
    for (int c0 = c_lo; c0 < c_hi; c0 += COMBINE_SEG) {
        load(c0);
#pragma unroll
        for (int k = 0; k < COMBINE_SEG; ++k) {
            H = fmaf(fast_exp2(A2 * d[k]), H, h[k]);
            dsum += d[k];
        }
    }
#if SCAN_COMBINE_REMAP
    float carry = segment_entry_smem(fast_exp2(A2 * dsum), H, w, j, COMBINE_THREADS / W, e0);
#else
    (void)j;
    float carry = segment_entry(fast_exp2(A2 * dsum), H, w, W, e0);
#endif
    // Walk the segment (a segment of at most COMBINE_SEG chunks is still in
    // registers; a longer one is loaded again, batch by batch).
    if (!live) return;
    for (int c0 = c_lo; c0 < c_hi; c0 += COMBINE_SEG) {
        if (seg > COMBINE_SEG) load(c0);
#pragma unroll
        for (int k = 0; k < COMBINE_SEG; ++k) {
            const int c = c0 + k;
            if (c < c_hi) {
                st[c * cstride] = carry;
                carry = fmaf(fast_exp2(A2 * d[k]), carry, h[k]);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(COMBINE_THREADS) scan_combine(ScanParams p) {
    const int NPAD = p.npad;
    const int W = p.comb_w;
#if SCAN_COMBINE_REMAP
    const int CH = COMBINE_THREADS / W;  // chains a block (blockDim.x == COMBINE_THREADS)
    const int w = threadIdx.x / CH;
    const int j = threadIdx.x - w * CH;
    const long long idx = (long long)blockIdx.x * CH + j;  // (b, e, n)
#else
    const int j = 0;
    const long long gid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int w = (int)(gid & (W - 1));
    const long long idx = gid >> (__ffs(W) - 1);  // (b, e, n)
#endif
    const long long per_batch = (long long)p.E * NPAD;
    const bool live = idx < per_batch * p.batch;
    const long long ci = live ? idx : 0;
    const int b = (int)(ci / per_batch);
    const long long en = ci - (long long)b * per_batch;  // e * NPAD + n
    const int e = (int)(en / NPAD);
    const int n = (int)(en - (long long)e * NPAD);
    tl_mark(p, 3);
    scan_pdl_launch();  // the output pass may launch and load its inputs
    scan_pdl_wait();    // the chunk-state pass wrote the summaries
    tl_mark(p, 4);
    combine_chain(p, b, en, e, n, w, W, live, j);
    tl_mark(p, 9);
}

// The chains of channel block blockIdx.x in scan_fused_*: lane q = chunk *
// SCAN_THREADS + tid of the block's grid row takes lane w = q % W of chain
// q / W (channel j, state n), W = p.comb_w, its segment of at most
// FUSED_SEG chunks held in registers. The chunk sums of dt the block's lanes
// need are staged in shared memory (the sweep's buffers are idle here), so
// a lane keeps one register a chunk and loads everything in one round trip.
#define FUSED_SEG 32
template <int NT>
__device__ __forceinline__ void fused_combine(const ScanParams& p) {
    extern __shared__ float smem[];
    constexpr int CHAINS = SCAN_THREADS * NT;  // NPAD == NT in the staged body
    const int W = p.comb_w;
    const int lw = __ffs(W) - 1;
    const int nb = p.nchunks;
    const int nsum = nb - 1;  // chunks 0 .. nb - 2 have a summary
    const int seg = (nsum + W - 1) / W;  // <= FUSED_SEG (the host checks)
    const int b = blockIdx.y;
    const int tid = threadIdx.x;
    const long long cstride = (long long)p.E * NT;
    // Block-uniform trips (CHAINS * W and the stride are multiples of
    // SCAN_THREADS): the barriers and the chain's shuffles see every lane.
    for (int q0 = blockIdx.z * SCAN_THREADS; q0 < CHAINS * W; q0 += nb * SCAN_THREADS) {
        const int q = q0 + tid;
        const int k = q >> lw;
        const int w = q & (W - 1);
        const int j = k / NT;
        const int n = k - j * NT;
        const int e_raw = blockIdx.x * SCAN_THREADS + j;
        const bool live = e_raw < p.E;
        const int e = live ? e_raw : p.E - 1;  // computes, never writes
        float* st = p.chunk_state + (long long)b * nb * cstride + (long long)e * NT + n;
        const int c_lo = 1 + w * seg;
        const int c_hi = min(nb, c_lo + seg);  // start states of chunks [c_lo, c_hi)
        float h[FUSED_SEG];
#pragma unroll
        for (int i = 0; i < FUSED_SEG; ++i) {
            const int c = c_lo + i;
            h[i] = (c < c_hi && c < nsum) ? st[c * cstride] : 0.0f;
        }
        const float e0 = st[0];  // chunk 0's end state
        const float A2 = n < p.N ? p.A[(long long)e * p.N + n] * LOG2E : 0.0f;
        // The block's channels j0 .. j0 + J - 1: their dt sums, one row each.
        const int j0 = (q0 >> lw) / NT;
        const int J = ((q0 + SCAN_THREADS - 1) >> lw) / NT - j0 + 1;
        __syncthreads();  // the last trip's readers are done with the table
        for (int i = tid; i < J * nsum; i += SCAN_THREADS) {
            const int jj = i / nsum;
            const int cc = i - jj * nsum;
            const int ee = min(blockIdx.x * SCAN_THREADS + j0 + jj, p.E - 1);
            smem[i] = p.chunk_dsum[dsum_at(p, b, cc, ee)];
        }
        __syncthreads();
        const float* dt = smem + (j - j0) * nsum;  // chunk c's sum at dt[c]
        float H = 0.0f, D = 0.0f;
#pragma unroll
        for (int i = 0; i < FUSED_SEG; ++i) {
            const int c = c_lo + i;
            if (c < c_hi && c < nsum) {
                const float d = dt[c];
                H = fmaf(fast_exp2(A2 * d), H, h[i]);
                D += d;
            }
        }
        float carry = segment_entry(fast_exp2(A2 * D), H, w, W, e0);
        if (live) {
#pragma unroll
            for (int i = 0; i < FUSED_SEG; ++i) {
                const int c = c_lo + i;
                if (c < c_hi) {
                    st[c * cstride] = carry;
                    if (c < nsum) carry = fmaf(fast_exp2(A2 * dt[c]), carry, h[i]);
                }
            }
        }
    }
}

// The whole split in one launch (staged body only; the host launches it
// cooperatively, so every block of the grid is resident, and only when the
// grid fits the device at once). Block (x, b, c): chunk c's summary, then a
// share of the chains of channel block x (fused_combine), then chunk c's
// output. The two grid-completion waits of the three-kernel split become two
// waits on the channel block's counter (NOTES.md, v10). A block's third
// arrival (group_leave) comes only after it has seen 2 nb arrivals, so the
// count first reaches 2 nb with every block's second arrival: chunk 0's
// blocks, which need no start state, wait for it before they leave.
template <typename T, int NT>
__device__ __forceinline__ void scan_fused_body(const ScanParams& p) {
    unsigned int* cnt = group_counter(p);
    const unsigned int nb = gridDim.z;  // == p.nchunks
    if ((int)blockIdx.z < p.nchunks - 1) scan_body_staged<T, NT, false, true>(p);
    group_arrive(cnt);
    group_wait(cnt, nb);  // every summary of the channel block is written
    tl_mark(p, 4);
    fused_combine<NT>(p);
    tl_mark(p, 9);
    group_arrive(cnt);  // chunks c > 0 wait for 2 nb arrivals before their start state
    scan_body_staged<T, NT, true, true>(p);
    if (blockIdx.z == 0) group_wait(cnt, 2u * nb);
    group_leave(cnt, nb);
}

#define SCAN_INSTANTIATE(T, TN, NT, MINB)                                                   \
    extern "C" __global__ void __launch_bounds__(SCAN_THREADS, MINB)                        \
        scan_chunk_state_##TN##_nt##NT(ScanParams p) {                                      \
        if (p.staged) scan_body_staged<T, NT, false>(p); else scan_body<T, NT, false>(p); }        \
    extern "C" __global__ void __launch_bounds__(SCAN_THREADS, MINB)                        \
        scan_output_##TN##_nt##NT(ScanParams p) {                                          \
        if (p.staged) scan_body_staged<T, NT, true>(p); else scan_body<T, NT, true>(p); }    \
    extern "C" __global__ void __launch_bounds__(SCAN_THREADS, MINB)                        \
        scan_fused_##TN##_nt##NT(ScanParams p) { scan_fused_body<T, NT>(p); }

SCAN_INSTANTIATE(float, f32, 1, SCAN_MIN_BLOCKS_F32)
SCAN_INSTANTIATE(float, f32, 2, SCAN_MIN_BLOCKS_F32)
SCAN_INSTANTIATE(float, f32, 4, SCAN_MIN_BLOCKS_F32)
SCAN_INSTANTIATE(float, f32, 8, SCAN_MIN_BLOCKS_F32)
SCAN_INSTANTIATE(float, f32, 16, SCAN_MIN_BLOCKS_F32)
SCAN_INSTANTIATE(unsigned short, bf16, 1, SCAN_MIN_BLOCKS)
SCAN_INSTANTIATE(unsigned short, bf16, 2, SCAN_MIN_BLOCKS)
SCAN_INSTANTIATE(unsigned short, bf16, 4, SCAN_MIN_BLOCKS)
SCAN_INSTANTIATE(unsigned short, bf16, 8, SCAN_MIN_BLOCKS)
SCAN_INSTANTIATE(unsigned short, bf16, 16, SCAN_MIN_BLOCKS)
