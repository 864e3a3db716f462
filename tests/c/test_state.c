/* State save/restore: a session continued after mamba_session_state_load() gives
 * exactly (bit for bit) the outputs of the session the state was saved from, also
 * in a session of a second instance of the same model, and after a round trip
 * through a file. Reset gives a fresh session's outputs.
 * Usage: test_state MODEL.gguf */
#include "test_util.h"

#define N_AFTER 12

static void feed(mamba_session *s, const char *text, float *logits, size_t v) {
    size_t i;
    for (i = 0; text[i]; i++)
        CHECK_ST(mamba_session_step_token(s, (int32_t)(unsigned char)text[i] % (int32_t)v, logits, v), MAMBA_OK);
}

/* Step N_AFTER tokens, storing every logits vector in out (N_AFTER x V). */
static void continue_run(mamba_session *s, float *out, size_t v) {
    int i;
    for (i = 0; i < N_AFTER; i++)
        CHECK_ST(mamba_session_step_token(s, (int32_t)((i * 13 + 5) % (int)v), out + (size_t)i * v, v),
                 MAMBA_OK);
}

int main(int argc, char **argv) {
    mamba_model *m = NULL, *m2 = NULL;
    mamba_session *a = NULL, *b = NULL, *c = NULL;
    size_t v, n, written = 0, nread;
    unsigned char *blob, *blob2;
    float *logits, *ref, *got;
    FILE *f;

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &m));
    REQUIRE_OK(mamba_model_load_file(argv[1], NULL, &m2));
    REQUIRE_OK(mamba_session_init(m, &a));
    REQUIRE_OK(mamba_session_init(m, &b));
    REQUIRE_OK(mamba_session_init(m2, &c));
    v = (size_t)mamba_model_vocab_size(m);
    n = mamba_session_state_size(a);
    blob = (unsigned char *)malloc(n);
    blob2 = (unsigned char *)malloc(n);
    logits = (float *)calloc(v, sizeof(float));
    ref = (float *)calloc(v * N_AFTER, sizeof(float));
    got = (float *)calloc(v * N_AFTER, sizeof(float));

    feed(a, "A state is a snapshot of the stream so far. ", logits, v);
    CHECK_ST(mamba_session_state_save(a, blob, n, &written), MAMBA_OK);
    CHECK(written == n);
    continue_run(a, ref, v);

    /* Same model handle. */
    CHECK_ST(mamba_session_state_load(b, blob, n), MAMBA_OK);
    continue_run(b, got, v);
    CHECK(memcmp(ref, got, v * N_AFTER * sizeof(float)) == 0);

    /* The blob survives a file and loads into another instance of the same model. */
    f = fopen("test_state.blob", "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(blob, 1, n, f) == n);
        fclose(f);
    }
    f = fopen("test_state.blob", "rb");
    CHECK(f != NULL);
    if (f) {
        nread = fread(blob2, 1, n, f);
        CHECK(nread == n);
        fclose(f);
    }
    remove("test_state.blob");
    CHECK(memcmp(blob, blob2, n) == 0);
    CHECK_ST(mamba_session_state_load(c, blob2, n), MAMBA_OK);
    memset(got, 0, v * N_AFTER * sizeof(float));
    continue_run(c, got, v);
    CHECK(memcmp(ref, got, v * N_AFTER * sizeof(float)) == 0);

    /* Saving again after the same continuation gives the same bytes. */
    CHECK_ST(mamba_session_state_save(a, blob, n, NULL), MAMBA_OK);
    CHECK_ST(mamba_session_state_save(c, blob2, n, NULL), MAMBA_OK);
    CHECK(memcmp(blob, blob2, n) == 0);

    /* Reset = fresh. */
    CHECK_ST(mamba_session_reset(a), MAMBA_OK);
    CHECK_ST(mamba_session_reset(b), MAMBA_OK);
    feed(b, "xyz", logits, v);
    CHECK_ST(mamba_session_reset(b), MAMBA_OK);
    continue_run(a, ref, v);
    continue_run(b, got, v);
    CHECK(memcmp(ref, got, v * N_AFTER * sizeof(float)) == 0);

    mamba_session_free(a);
    mamba_session_free(b);
    mamba_session_free(c);
    mamba_model_free(m);
    mamba_model_free(m2);
    free(blob);
    free(blob2);
    free(logits);
    free(ref);
    free(got);
    return test_summary("test_state");
}
