/* MAMBA_BACKEND_CUDA from C: the model loaded on the GPU when there is one, else a
 * skip line (MAMBA_ERR_NO_DEVICE; with MAMBA_REQUIRE_GPU=1 a missing GPU fails).
 * With a GPU: the logits after a prompt (run on the GPU) are within 1e-4 (relative
 * L2) of the CPU backend's, greedy generation after it gives the CPU's tokens, and
 * a state saved from a CUDA session continues in a CPU session (the step after it
 * on the GPU decoder). Batched steps: test_cuda_batch.c.
 * Usage: test_cuda MODEL.gguf */
#include "test_util.h"

#include <math.h>

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

typedef struct {
    int32_t toks[64];
    int n;
} collected;

static int32_t collect(void *user, int32_t token) {
    collected *c = (collected *)user;
    if (c->n < 64)
        c->toks[c->n++] = token;
    return 0;
}

int main(int argc, char **argv) {
    mamba_model *g = NULL, *c = NULL;
    mamba_session *gs = NULL, *cs = NULL;
    mamba_model_params mp = mamba_model_default_params();
    mamba_sampling_params sp = mamba_sampling_default_params();
    mamba_status st;
    const char *require = getenv("MAMBA_REQUIRE_GPU");
    const char *text = "The Rust programming language";
    int32_t prompt[64];
    size_t v, i, n_prompt = strlen(text), blob_len, written = 0;
    float *lg, *lc;
    unsigned char *blob;
    collected ag, ac;
    double e;

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    mp.backend = MAMBA_BACKEND_CUDA;
    mp.gpu_device = 0;
    st = mamba_model_load_file(argv[1], &mp, &g);
    if (st == MAMBA_ERR_NO_DEVICE || st == MAMBA_ERR_UNSUPPORTED) {
        CHECK(g == NULL);
        if (require != NULL && strcmp(require, "1") == 0) {
            printf("test_cuda: MAMBA_REQUIRE_GPU=1 but %s\n", mamba_last_error());
            return 1;
        }
        printf("test_cuda: skip (%s: %s)\n", mamba_status_str(st), mamba_last_error());
        return g_failures ? 1 : 0;
    }
    REQUIRE_OK(st);
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &c));
    v = (size_t)mamba_model_vocab_size(g);
    CHECK(v == (size_t)mamba_model_vocab_size(c));
    for (i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t)((unsigned char)text[i] % v);
    lg = (float *)calloc(v, sizeof(float));
    lc = (float *)calloc(v, sizeof(float));

    /* The prompt: GPU against CPU. */
    REQUIRE_OK(mamba_session_init(g, &gs));
    REQUIRE_OK(mamba_session_init(c, &cs));
    CHECK_ST(mamba_session_prefill(gs, prompt, n_prompt, lg, v), MAMBA_OK);
    CHECK_ST(mamba_session_prefill(cs, prompt, n_prompt, lc, v), MAMBA_OK);
    e = rel_l2(lg, lc, v);
    printf("test_cuda: prompt logits, relative error %.2e\n", e);
    CHECK(e <= 1e-4);
    /* Errors still leave the state alone and name the problem. */
    prompt[3] = (int32_t)v;
    CHECK_ST(mamba_session_prefill(gs, prompt, n_prompt, lg, v), MAMBA_ERR_TOKEN_OUT_OF_RANGE);
    prompt[3] = (int32_t)((unsigned char)text[3] % v);

    /* A state saved from the CUDA session continues in the CPU session. */
    blob_len = mamba_session_state_size(gs);
    blob = (unsigned char *)malloc(blob_len);
    CHECK_ST(mamba_session_state_save(gs, blob, blob_len, &written), MAMBA_OK);
    CHECK(written == blob_len);
    CHECK_ST(mamba_session_state_load(cs, blob, written), MAMBA_OK);
    CHECK_ST(mamba_session_step_token(gs, 32, lg, v), MAMBA_OK);
    CHECK_ST(mamba_session_step_token(cs, 32, lc, v), MAMBA_OK);
    /* The step ran on the GPU decoder (f32 weights): within the C API's 1e-4. */
    CHECK(rel_l2(lg, lc, v) <= 1e-4);

    /* Greedy generation after a GPU prompt: the CPU backend's tokens. */
    sp.temperature = 0.0f;
    ag.n = 0;
    ac.n = 0;
    CHECK_ST(mamba_session_reset(gs), MAMBA_OK);
    CHECK_ST(mamba_session_reset(cs), MAMBA_OK);
    CHECK_ST(mamba_session_generate(gs, prompt, n_prompt, &sp, 64, collect, &ag), MAMBA_OK);
    CHECK_ST(mamba_session_generate(cs, prompt, n_prompt, &sp, 64, collect, &ac), MAMBA_OK);
    CHECK(ag.n == 64 && ac.n == 64);
    CHECK(memcmp(ag.toks, ac.toks, sizeof(ag.toks)) == 0);
    printf("test_cuda: %s", text);
    for (i = 0; i < (size_t)ag.n; i++)
        putchar(ag.toks[i] >= 32 && ag.toks[i] < 127 ? ag.toks[i] : '.');
    putchar('\n');

    free(blob);
    free(lg);
    free(lc);
    mamba_session_free(gs);
    mamba_session_free(cs);
    mamba_model_free(g);
    mamba_model_free(c);
    return test_summary("test_cuda");
}
