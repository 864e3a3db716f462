/* Bad arguments: NULL pointers, short buffers, bad token ids, bad params, files that
 * are not models, a state blob from another model. Each call must return the
 * precise status, leave out-params alone, and leave a message naming the problem.
 * Usage: test_bad_args MODEL_A.gguf MODEL_B.gguf (same shape, other weights). */
#include <pthread.h>

#include "test_util.h"

static void *other_thread(void *arg) {
    /* The last error is per thread: a fresh thread has none. */
    const char *msg = mamba_last_error();
    *(int *)arg = msg != NULL && msg[0] == '\0';
    return NULL;
}

int main(int argc, char **argv) {
    mamba_model *a = NULL, *b = NULL, *out_m = NULL;
    mamba_session *s = NULL, *sb = NULL, *out_s = NULL;
    mamba_model_params mp;
    mamba_status st;
    mamba_sampling_params sp;
    float *logits;
    float hidden[4096];
    unsigned char *blob, *blob_b;
    size_t n, written = 12345;
    int32_t v, d;
    int32_t toks[3] = {1, 2, 3};
    float x[4096];
    pthread_t th;
    int fresh_empty = 0;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_A MODEL_B\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &a));
    REQUIRE_OK(mamba_model_load_file(argv[2], NULL, &b));
    REQUIRE_OK(mamba_session_init(a, &s));
    REQUIRE_OK(mamba_session_init(b, &sb));
    v = mamba_model_vocab_size(a);
    d = mamba_model_d_model(a);
    CHECK(v > 0 && d > 0 && d <= 4096);
    logits = (float *)calloc((size_t)v, sizeof(float));
    memset(x, 0, sizeof x);

    /* Loading. */
    CHECK_ST(mamba_model_load_file(NULL, NULL, &out_m), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("path is NULL");
    CHECK_ST(mamba_model_load_file(argv[1], NULL, NULL), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("out is NULL");
    CHECK_ST(mamba_model_load_file("/nonexistent/model.gguf", NULL, &out_m), MAMBA_ERR_IO);
    CHECK_MSG("/nonexistent/model.gguf");
    f = fopen("bad_args_not_a_model.gguf", "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("this is not a gguf file at all", f);
        fclose(f);
    }
    CHECK_ST(mamba_model_load_file("bad_args_not_a_model.gguf", NULL, &out_m), MAMBA_ERR_FORMAT);
    CHECK_MSG("magic");
    remove("bad_args_not_a_model.gguf");
    CHECK_ST(mamba_model_load_memory(NULL, 10, NULL, &out_m), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("data is NULL");
    CHECK_ST(mamba_model_load_memory("GGUF\3\0\0\0", 8, NULL, &out_m), MAMBA_ERR_FORMAT);
    CHECK_MSG("truncated");
    mp = mamba_model_default_params();
    mp.backend = MAMBA_BACKEND_CUDA;
    mp.gpu_device = 4095; /* past the last GPU, or no GPU at all: never loads */
    st = mamba_model_load_file(argv[1], &mp, &out_m);
    CHECK(st == MAMBA_ERR_NO_DEVICE || st == MAMBA_ERR_UNSUPPORTED); /* no CUDA in the build */
    CHECK_MSG("MAMBA_BACKEND_CUDA");
    CHECK(strcmp(mamba_status_str(MAMBA_ERR_NO_DEVICE), "no usable GPU") == 0);
    mp.backend = 42;
    CHECK_ST(mamba_model_load_file(argv[1], &mp, &out_m), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("unknown backend 42");
    mp = mamba_model_default_params();
    mp.n_threads = -3;
    CHECK_ST(mamba_model_load_file(argv[1], &mp, &out_m), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("n_threads");
    mp = mamba_model_default_params();
    mp.struct_size = 4;
    CHECK_ST(mamba_model_load_file(argv[1], &mp, &out_m), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("struct_size");
    CHECK(out_m == NULL); /* never written on failure */

    /* Queries on NULL. */
    CHECK(mamba_model_vocab_size(NULL) == 0);
    CHECK_MSG("model is NULL");
    CHECK(mamba_session_state_size(NULL) == 0);
    CHECK_MSG("session is NULL");

    /* Sessions. */
    CHECK_ST(mamba_session_init(NULL, &out_s), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("mamba_session_init: model is NULL");
    CHECK_ST(mamba_session_init(a, NULL), MAMBA_ERR_INVALID_ARG);
    CHECK(out_s == NULL);
    CHECK_ST(mamba_session_reset(NULL), MAMBA_ERR_INVALID_ARG);

    /* Stepping. */
    CHECK_ST(mamba_session_step_token(NULL, 1, logits, (size_t)v), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("mamba_session_step_token: session is NULL");
    CHECK_ST(mamba_session_step_token(s, 1, NULL, (size_t)v), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("logits is NULL");
    CHECK_ST(mamba_session_step_token(s, 1, logits, (size_t)v - 1), MAMBA_ERR_BUFFER_TOO_SMALL);
    CHECK_MSG("needs");
    CHECK_ST(mamba_session_step_token(s, v, logits, (size_t)v), MAMBA_ERR_TOKEN_OUT_OF_RANGE);
    CHECK_MSG("out of range");
    CHECK_ST(mamba_session_step_token(s, -5, logits, (size_t)v), MAMBA_ERR_TOKEN_OUT_OF_RANGE);
    CHECK_MSG("token id -5");
    CHECK_ST(mamba_session_prefill(s, NULL, 3, logits, (size_t)v), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("tokens is NULL");
    CHECK_ST(mamba_session_prefill(s, toks, 0, logits, (size_t)v), MAMBA_ERR_INVALID_ARG);
    toks[1] = 1 << 30;
    CHECK_ST(mamba_session_prefill(s, toks, 3, logits, (size_t)v), MAMBA_ERR_TOKEN_OUT_OF_RANGE);
    CHECK_MSG("tokens[1]");
    toks[1] = 2;
    CHECK_ST(mamba_session_step_embedding(s, x, (size_t)d - 1, hidden, (size_t)d), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("x_len");
    CHECK_ST(mamba_session_step_embedding(s, x, (size_t)d, hidden, (size_t)d - 1), MAMBA_ERR_BUFFER_TOO_SMALL);
    CHECK_ST(mamba_session_step_embedding(s, NULL, (size_t)d, hidden, (size_t)d), MAMBA_ERR_INVALID_ARG);
    CHECK_ST(mamba_session_prefill_embeddings(s, x, (size_t)d + 1, hidden, (size_t)d), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("multiple of d_model");

    /* Generation. */
    sp = mamba_sampling_default_params();
    CHECK_ST(mamba_session_generate(s, toks, 3, &sp, 4, NULL, NULL), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("cb is NULL");
    sp.top_k = -1;
    CHECK_ST(mamba_session_generate(s, toks, 3, &sp, 4, NULL, NULL), MAMBA_ERR_INVALID_ARG);
    sp = mamba_sampling_default_params();
    sp.struct_size = 0;
    CHECK_ST(mamba_session_generate(s, toks, 3, &sp, 4, NULL, NULL), MAMBA_ERR_INVALID_ARG);

    /* State blobs. */
    n = mamba_session_state_size(s);
    CHECK(n > 0 && n == mamba_session_state_size(sb));
    blob = (unsigned char *)malloc(n);
    blob_b = (unsigned char *)malloc(n);
    CHECK_ST(mamba_session_state_save(s, blob, n - 1, &written), MAMBA_ERR_BUFFER_TOO_SMALL);
    CHECK_MSG("needs");
    CHECK(written == 12345);
    CHECK_ST(mamba_session_state_save(s, NULL, n, &written), MAMBA_ERR_INVALID_ARG);
    CHECK_ST(mamba_session_state_save(NULL, blob, n, &written), MAMBA_ERR_INVALID_ARG);
    CHECK_ST(mamba_session_state_save(sb, blob_b, n, &written), MAMBA_OK);
    CHECK(written == n);
    CHECK_ST(mamba_session_state_load(s, blob_b, n), MAMBA_ERR_STATE_MISMATCH);
    CHECK_MSG("another model");
    CHECK_ST(mamba_session_state_load(s, blob_b, n - 1), MAMBA_ERR_STATE_MISMATCH);
    CHECK_ST(mamba_session_state_save(s, blob, n, NULL), MAMBA_OK);
    CHECK_ST(mamba_session_state_load(s, blob, n - 1), MAMBA_ERR_BAD_STATE);
    CHECK_MSG("length");
    CHECK_ST(mamba_session_state_load(s, blob, 3), MAMBA_ERR_BAD_STATE);
    blob[1] ^= 0xff;
    CHECK_ST(mamba_session_state_load(s, blob, n), MAMBA_ERR_BAD_STATE);
    CHECK_MSG("magic");
    CHECK_ST(mamba_session_state_load(s, NULL, n), MAMBA_ERR_INVALID_ARG);
    CHECK_MSG("buf is NULL");

    /* After all those failures the session still gives a fresh session's outputs. */
    {
        mamba_session *fresh = NULL;
        float *l2 = (float *)calloc((size_t)v, sizeof(float));
        REQUIRE_OK(mamba_session_init(a, &fresh));
        CHECK_ST(mamba_session_step_token(s, 7, logits, (size_t)v), MAMBA_OK);
        CHECK_ST(mamba_session_step_token(fresh, 7, l2, (size_t)v), MAMBA_OK);
        CHECK(memcmp(logits, l2, (size_t)v * sizeof(float)) == 0);
        mamba_session_free(fresh);
        free(l2);
    }

    /* Status names and the thread-local message. */
    CHECK(strcmp(mamba_status_str(MAMBA_OK), "ok") == 0);
    CHECK(strcmp(mamba_status_str(MAMBA_ERR_TOKEN_OUT_OF_RANGE), "token id out of range") == 0);
    CHECK(strcmp(mamba_status_str(-999), "unknown status") == 0);
    CHECK(pthread_create(&th, NULL, other_thread, &fresh_empty) == 0);
    pthread_join(th, NULL);
    CHECK(fresh_empty);

    /* Freeing NULL is a no-op; a model freed before its session stays usable by it. */
    mamba_model_free(NULL);
    mamba_session_free(NULL);
    mamba_model_free(a);
    CHECK_ST(mamba_session_step_token(s, 3, logits, (size_t)v), MAMBA_OK);
    mamba_session_free(s);
    mamba_session_free(sb);
    mamba_model_free(b);
    free(blob);
    free(blob_b);
    free(logits);
    return test_summary("test_bad_args");
}
