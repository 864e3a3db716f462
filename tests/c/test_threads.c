/* One model shared by 8 threads, each with its own session: every thread must get
 * exactly the single-threaded result (logits after a prompt, generated tokens,
 * hidden states on the embedding path).
 * Usage: test_threads MODEL.gguf */
#include <pthread.h>

#include "test_util.h"

#define N_THREADS 8
#define N_GEN 24
#define ROUNDS 3

typedef struct {
    int32_t tokens[N_GEN];
    size_t n;
} token_buf;

typedef struct {
    const mamba_model *model;
    int index;
    float *logits;      /* (V) logits after the prompt */
    float hidden[4096]; /* (D) hidden state after the input vectors */
    token_buf gen;
    int status;         /* MAMBA_OK or the first error */
} job;

static int32_t collect(void *user_data, int32_t token) {
    token_buf *b = (token_buf *)user_data;
    if (b->n < N_GEN) b->tokens[b->n++] = token;
    return 0;
}

/* The work of one stream; `j->index` picks its prompt, seed and inputs. */
static void run_job(job *j) {
    mamba_session *s = NULL;
    int32_t v = mamba_model_vocab_size(j->model);
    int32_t d = mamba_model_d_model(j->model);
    int32_t prompt[16];
    float xs[4 * 4096];
    mamba_sampling_params sp = mamba_sampling_default_params();
    int i;
    mamba_status st;

    for (i = 0; i < 16; i++) prompt[i] = (int32_t)((j->index * 31 + i * 7) % v);
    for (i = 0; i < 4 * d; i++) xs[i] = (float)((i * (j->index + 3)) % 17) / 17.0f - 0.5f;
    sp.seed = (uint64_t)(1000 + j->index);
    sp.temperature = 0.9f;
    j->gen.n = 0;

    st = mamba_session_init(j->model, &s);
    if (st == MAMBA_OK) st = mamba_session_prefill(s, prompt, 16, j->logits, (size_t)v);
    if (st == MAMBA_OK) st = mamba_session_reset(s);
    if (st == MAMBA_OK) st = mamba_session_generate(s, prompt, 16, &sp, N_GEN, collect, &j->gen);
    if (st == MAMBA_OK) st = mamba_session_reset(s);
    if (st == MAMBA_OK)
        st = mamba_session_prefill_embeddings(s, xs, (size_t)(4 * d), j->hidden, (size_t)d);
    if (st != MAMBA_OK) fprintf(stderr, "job %d: %s\n", j->index, mamba_last_error());
    j->status = st;
    mamba_session_free(s);
}

static void *thread_main(void *arg) {
    run_job((job *)arg);
    return NULL;
}

int main(int argc, char **argv) {
    mamba_model *m = NULL;
    job ref[N_THREADS], par[N_THREADS];
    pthread_t th[N_THREADS];
    int32_t v, d;
    int i, r;

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &m));
    v = mamba_model_vocab_size(m);
    d = mamba_model_d_model(m);
    CHECK(d <= 4096);

    /* Single-threaded reference, one stream after the other. */
    for (i = 0; i < N_THREADS; i++) {
        memset(&ref[i], 0, sizeof ref[i]);
        ref[i].model = m;
        ref[i].index = i;
        ref[i].logits = (float *)calloc((size_t)v, sizeof(float));
        run_job(&ref[i]);
        CHECK(ref[i].status == MAMBA_OK);
        CHECK(ref[i].gen.n == N_GEN);
    }
    /* Streams differ from each other (so the comparison below means something). */
    CHECK(memcmp(ref[0].logits, ref[1].logits, (size_t)v * sizeof(float)) != 0);

    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < N_THREADS; i++) {
            memset(&par[i], 0, sizeof par[i]);
            par[i].model = m;
            par[i].index = i;
            par[i].logits = (float *)calloc((size_t)v, sizeof(float));
            CHECK(pthread_create(&th[i], NULL, thread_main, &par[i]) == 0);
        }
        for (i = 0; i < N_THREADS; i++) {
            pthread_join(th[i], NULL);
            CHECK(par[i].status == MAMBA_OK);
            CHECK(memcmp(par[i].logits, ref[i].logits, (size_t)v * sizeof(float)) == 0);
            CHECK(par[i].gen.n == N_GEN);
            CHECK(memcmp(par[i].gen.tokens, ref[i].gen.tokens, sizeof(par[i].gen.tokens)) == 0);
            CHECK(memcmp(par[i].hidden, ref[i].hidden, (size_t)d * sizeof(float)) == 0);
            free(par[i].logits);
        }
    }
    for (i = 0; i < N_THREADS; i++) free(ref[i].logits);
    mamba_model_free(m);
    printf("test_threads: %d threads x %d rounds on one model\n", N_THREADS, ROUNDS);
    return test_summary("test_threads");
}
