/* mamba_sessions_step from C: N sessions of one model stepped together against N
 * single CPU sessions fed the same tokens.
 * 1. Everywhere: the CPU backend's batched step (the sessions one after another)
 *    equals single steps exactly, and bad batches are refused.
 * 2. With a GPU (MAMBA_BACKEND_CUDA; else a skip line, or a failure with
 *    MAMBA_REQUIRE_GPU=1): N CUDA sessions, prompts prefilled on the GPU, then 100
 *    batched greedy steps: logits within 1e-4 (relative L2) of the CPU sessions',
 *    the GPU's greedy tokens equal to the argmax of the CPU logits; a CPU session in
 *    a CUDA batch is refused (MAMBA_ERR_INVALID_ARG).
 * Usage: test_cuda_batch MODEL.gguf */
#include "test_util.h"

#include <math.h>

#define N 6
#define STEPS 100

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        if (!isfinite(a[i]))
            return INFINITY;
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 1e-30 ? den : 1e-30));
}

static int32_t argmax(const float *l, size_t v) {
    size_t i, best = 0;
    for (i = 1; i < v; i++)
        if (l[i] > l[best])
            best = i;
    return (int32_t)best;
}

/* Runs N sessions of `m` (batched) against N sessions of `cpu` (single steps);
 * `tol` is the relative L2 allowed on the logits (0: bit for bit). */
static void run_batch(mamba_model *m, mamba_model *cpu, size_t v, double tol, const char *what) {
    mamba_session *bs[N], *cs[N];
    int32_t toks[N], next[N];
    float *lb = (float *)calloc(N * v, sizeof(float));
    float *lc = (float *)calloc(v, sizeof(float));
    double worst = 0.0;
    int i, t, j;

    for (i = 0; i < N; i++) {
        int32_t prompt[32];
        int np = 3 + 4 * i;
        REQUIRE_OK(mamba_session_init(m, &bs[i]));
        REQUIRE_OK(mamba_session_init(cpu, &cs[i]));
        for (j = 0; j < np; j++)
            prompt[j] = (int32_t)((j * 31 + i * 7 + 65) % (int)v);
        CHECK_ST(mamba_session_prefill(bs[i], prompt, (size_t)np, lb, v), MAMBA_OK);
        CHECK_ST(mamba_session_prefill(cs[i], prompt, (size_t)np, lc, v), MAMBA_OK);
        CHECK(rel_l2(lb, lc, v) <= (tol > 0 ? tol : 1e-30) || memcmp(lb, lc, v * 4) == 0);
        toks[i] = argmax(lc, v);
    }
    for (t = 0; t < STEPS; t++) {
        CHECK_ST(mamba_sessions_step(bs, toks, N, lb, N * v, next), MAMBA_OK);
        for (i = 0; i < N; i++) {
            double e;
            CHECK_ST(mamba_session_step_token(cs[i], toks[i], lc, v), MAMBA_OK);
            e = rel_l2(lb + (size_t)i * v, lc, v);
            if (e > worst)
                worst = e;
            if (tol == 0.0)
                CHECK(memcmp(lb + (size_t)i * v, lc, v * sizeof(float)) == 0);
            else
                CHECK(e <= tol);
            CHECK(next[i] == argmax(lc, v));
            toks[i] = next[i];
        }
        if (g_failures)
            break;
    }
    printf("test_cuda_batch: %s: %d sessions x %d batched steps, worst relative error %.2e\n",
           what, N, t, worst);

    /* Refused batches: a session twice, a session of another model, NULLs. */
    {
        mamba_session *dup[2], *mixed[2];
        int32_t two[2] = {1, 2};
        dup[0] = bs[0];
        dup[1] = bs[0];
        mixed[0] = bs[1];
        mixed[1] = cs[1];
        CHECK_ST(mamba_sessions_step(dup, two, 2, NULL, 0, NULL), MAMBA_ERR_INVALID_ARG);
        CHECK_MSG("same session");
        if (m != cpu) {
            CHECK_ST(mamba_sessions_step(mixed, two, 2, NULL, 0, NULL), MAMBA_ERR_INVALID_ARG);
            CHECK_MSG("another model");
        }
        CHECK_ST(mamba_sessions_step(NULL, two, 2, NULL, 0, NULL), MAMBA_ERR_INVALID_ARG);
        CHECK_ST(mamba_sessions_step(bs, NULL, 2, NULL, 0, NULL), MAMBA_ERR_INVALID_ARG);
        CHECK_ST(mamba_sessions_step(bs, two, 2, lb, v, NULL), MAMBA_ERR_BUFFER_TOO_SMALL);
    }
    for (i = 0; i < N; i++) {
        mamba_session_free(bs[i]);
        if (cs[i] != bs[i])
            mamba_session_free(cs[i]);
    }
    free(lb);
    free(lc);
}

int main(int argc, char **argv) {
    mamba_model *g = NULL, *c = NULL;
    mamba_model_params mp = mamba_model_default_params();
    mamba_status st;
    const char *require = getenv("MAMBA_REQUIRE_GPU");
    size_t v;

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &c));
    v = (size_t)mamba_model_vocab_size(c);
    /* The CPU backend: batched = single steps, bit for bit. */
    run_batch(c, c, v, 0.0, "cpu");

    mp.backend = MAMBA_BACKEND_CUDA;
    st = mamba_model_load_file(argv[1], &mp, &g);
    if (st == MAMBA_ERR_NO_DEVICE || st == MAMBA_ERR_UNSUPPORTED) {
        CHECK(g == NULL);
        mamba_model_free(c);
        if (require != NULL && strcmp(require, "1") == 0) {
            printf("test_cuda_batch: MAMBA_REQUIRE_GPU=1 but %s\n", mamba_last_error());
            return 1;
        }
        printf("test_cuda_batch: skip the GPU part (%s: %s)\n", mamba_status_str(st),
               mamba_last_error());
        return test_summary("test_cuda_batch");
    }
    REQUIRE_OK(st);
    run_batch(g, c, v, 1e-4, "cuda");
    mamba_model_free(g);
    mamba_model_free(c);
    return test_summary("test_cuda_batch");
}
