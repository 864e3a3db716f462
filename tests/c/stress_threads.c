/* Concurrency stress for the C API: 16 threads creating, using and freeing sessions
 * on shared models for a while, meant to run under a race detector (helgrind or
 * ThreadSanitizer; scripts/test-concurrency.sh).
 *
 * - Two long-lived models (the same file loaded twice, one with a 2-thread kernel
 *   pool, so pool hand-offs and "pool busy, run single-threaded" both happen) shared
 *   by every thread. Each iteration: init a session, prefill a prompt, check the
 *   logits against the single-threaded reference bit for bit, save the state, load it
 *   into a second session, step both and compare, sample a few tokens, free both.
 * - Hand-off rounds: the main thread loads a fresh model from memory, every worker
 *   creates a session on it, the main thread frees the model while those sessions
 *   live, and the last worker to free its session releases the model on its thread.
 *
 * Usage: stress_threads MODEL.gguf [SECONDS (default 5)] [MAX_ITERS_PER_THREAD (0 = no
 * limit)]. Exit 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "test_util.h"

#define N_THREADS 16
#define PROMPT_LEN 8
#define N_PROMPTS 4
#define N_GEN 4

static mamba_model *g_models[2];
static float *g_ref[2][N_PROMPTS]; /* (V) logits after each prompt, single-threaded */
static int32_t g_vocab;
static double g_deadline;
static long g_max_iters;

/* Hand-off rounds: the model of the current round and a barrier around its life. */
static pthread_barrier_t g_round_start, g_round_sessions, g_round_end;
static mamba_model *g_round_model;
static volatile int g_stop_rounds; /* written by main between barriers only */

static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_thread_failures;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void prompt_of(int p, int32_t *out) {
    int i;
    for (i = 0; i < PROMPT_LEN; i++) out[i] = (int32_t)((p * 37 + i * 11 + 1) % g_vocab);
}

static int32_t count_tokens(void *user_data, int32_t token) {
    (void)token;
    (*(int *)user_data)++;
    return 0;
}

static void fail(int id, const char *what, mamba_status st) {
    pthread_mutex_lock(&g_fail_lock);
    g_thread_failures++;
    fprintf(stderr, "thread %d: %s: status %d (%s): %s\n", id, what, (int)st,
            mamba_status_str(st), mamba_last_error());
    pthread_mutex_unlock(&g_fail_lock);
}

/* One iteration on a shared model; returns 0 on success. */
static int iteration(int id, long iter) {
    int mi = (int)((id + iter) % 2);
    int p = (int)((id * 7 + iter) % N_PROMPTS);
    const mamba_model *m = g_models[mi];
    mamba_session *a = NULL, *b = NULL;
    int32_t prompt[PROMPT_LEN];
    float *la = malloc((size_t)g_vocab * sizeof(float));
    float *lb = malloc((size_t)g_vocab * sizeof(float));
    unsigned char *blob = NULL;
    size_t n = 0, written = 0;
    int generated = 0, rc = 1;
    mamba_status st;
    mamba_sampling_params sp = mamba_sampling_default_params();

    if (la == NULL || lb == NULL) goto out;
    prompt_of(p, prompt);
    if ((st = mamba_session_init(m, &a)) != MAMBA_OK) { fail(id, "init a", st); goto out; }
    if ((st = mamba_session_init(m, &b)) != MAMBA_OK) { fail(id, "init b", st); goto out; }
    st = mamba_session_prefill(a, prompt, PROMPT_LEN, la, (size_t)g_vocab);
    if (st != MAMBA_OK) { fail(id, "prefill", st); goto out; }
    if (memcmp(la, g_ref[mi][p], (size_t)g_vocab * sizeof(float)) != 0) {
        fail(id, "logits differ from the single-threaded reference", MAMBA_OK);
        goto out;
    }
    n = mamba_session_state_size(a);
    blob = malloc(n);
    if (blob == NULL) goto out;
    st = mamba_session_state_save(a, blob, n, &written);
    if (st != MAMBA_OK || written != n) { fail(id, "state save", st); goto out; }
    if ((st = mamba_session_state_load(b, blob, written)) != MAMBA_OK) {
        fail(id, "state load", st);
        goto out;
    }
    if ((st = mamba_session_step_token(a, prompt[0], la, (size_t)g_vocab)) != MAMBA_OK ||
        (st = mamba_session_step_token(b, prompt[0], lb, (size_t)g_vocab)) != MAMBA_OK) {
        fail(id, "step", st);
        goto out;
    }
    if (memcmp(la, lb, (size_t)g_vocab * sizeof(float)) != 0) {
        fail(id, "a restored session steps differently", MAMBA_OK);
        goto out;
    }
    sp.seed = (uint64_t)(id * 1000 + iter);
    st = mamba_session_generate(b, prompt, 2, &sp, N_GEN, count_tokens, &generated);
    if (st != MAMBA_OK || generated != N_GEN) { fail(id, "generate", st); goto out; }
    rc = 0;
out:
    mamba_session_free(a);
    mamba_session_free(b);
    free(blob);
    free(la);
    free(lb);
    return rc;
}

/* A hand-off round on the worker side. */
static void round_worker(int id) {
    mamba_session *s = NULL;
    float *l = malloc((size_t)g_vocab * sizeof(float));
    mamba_status st = mamba_session_init(g_round_model, &s);
    if (st != MAMBA_OK) fail(id, "round: init", st);
    pthread_barrier_wait(&g_round_sessions); /* main frees the model after this */
    if (s != NULL && l != NULL) {
        st = mamba_session_step_token(s, (int32_t)(id % g_vocab), l, (size_t)g_vocab);
        if (st != MAMBA_OK) fail(id, "round: step after the model was freed", st);
    }
    mamba_session_free(s); /* the last one releases the model */
    free(l);
}

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    long iter = 0;
    for (;;) {
        pthread_barrier_wait(&g_round_start);
        if (g_stop_rounds) break;
        round_worker(id);
        while (now_s() < g_deadline && (g_max_iters == 0 || iter < g_max_iters)) {
            if (iteration(id, iter) != 0) break;
            iter++;
            if (iter % 8 == 0) break; /* back to the next hand-off round */
        }
        pthread_barrier_wait(&g_round_end);
    }
    return (void *)(size_t)iter;
}

int main(int argc, char **argv) {
    pthread_t th[N_THREADS];
    mamba_model_params mp = mamba_model_default_params();
    unsigned char *bytes = NULL;
    size_t len = 0;
    double seconds = 5.0;
    long total = 0, rounds = 0;
    int i, p;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [SECONDS] [MAX_ITERS_PER_THREAD]\n", argv[0]);
        return 2;
    }
    if (argc > 2) seconds = atof(argv[2]);
    if (argc > 3) g_max_iters = atol(argv[3]);
    {
        FILE *f = fopen(argv[1], "rb");
        long sz;
        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0) {
            fprintf(stderr, "cannot read %s\n", argv[1]);
            return 2;
        }
        rewind(f);
        len = (size_t)sz;
        bytes = malloc(len);
        if (bytes == NULL || fread(bytes, 1, len, f) != len) return 2;
        fclose(f);
    }

    mp.n_threads = 1;
    CHECK_ST(mamba_model_load_file(argv[1], &mp, &g_models[0]), MAMBA_OK);
    mp.n_threads = 2;
    CHECK_ST(mamba_model_load_memory(bytes, len, &mp, &g_models[1]), MAMBA_OK);
    if (g_failures) return 1;
    g_vocab = mamba_model_vocab_size(g_models[0]);

    /* References, computed before any thread starts. */
    for (i = 0; i < 2; i++) {
        for (p = 0; p < N_PROMPTS; p++) {
            mamba_session *s = NULL;
            int32_t prompt[PROMPT_LEN];
            prompt_of(p, prompt);
            g_ref[i][p] = malloc((size_t)g_vocab * sizeof(float));
            CHECK_ST(mamba_session_init(g_models[i], &s), MAMBA_OK);
            CHECK_ST(mamba_session_prefill(s, prompt, PROMPT_LEN, g_ref[i][p], (size_t)g_vocab),
                     MAMBA_OK);
            mamba_session_free(s);
        }
    }
    if (g_failures) return 1;

    pthread_barrier_init(&g_round_start, NULL, N_THREADS + 1);
    pthread_barrier_init(&g_round_sessions, NULL, N_THREADS + 1);
    pthread_barrier_init(&g_round_end, NULL, N_THREADS + 1);
    g_deadline = now_s() + seconds;
    for (i = 0; i < N_THREADS; i++) {
        if (pthread_create(&th[i], NULL, worker, (void *)(size_t)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (;;) {
        int done = now_s() >= g_deadline;
        if (!done) {
            mp.n_threads = (int32_t)(rounds % 3);
            CHECK_ST(mamba_model_load_memory(bytes, len, &mp, &g_round_model), MAMBA_OK);
            if (g_round_model == NULL) done = 1;
        }
        g_stop_rounds = done;
        pthread_barrier_wait(&g_round_start);
        if (done) break;
        pthread_barrier_wait(&g_round_sessions);
        mamba_model_free(g_round_model); /* sessions still hold it */
        g_round_model = NULL;
        pthread_barrier_wait(&g_round_end);
        rounds++;
    }
    for (i = 0; i < N_THREADS; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        total += (long)(size_t)r;
    }
    pthread_barrier_destroy(&g_round_start);
    pthread_barrier_destroy(&g_round_sessions);
    pthread_barrier_destroy(&g_round_end);
    for (i = 0; i < 2; i++) {
        for (p = 0; p < N_PROMPTS; p++) free(g_ref[i][p]);
        mamba_model_free(g_models[i]);
    }
    free(bytes);

    printf("stress_threads: %d threads, %ld hand-off rounds, %ld session iterations, "
           "%d thread failure(s)\n",
           N_THREADS, rounds, total, g_thread_failures);
    g_failures += g_thread_failures;
    return test_summary("stress_threads");
}
