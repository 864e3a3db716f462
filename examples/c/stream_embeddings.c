/* stream_embeddings: the audio / sensor path. Feed a stream of input vectors (here
 * synthetic "frames" of D features), one at a time, and read the final hidden state
 * after each. Half way, snapshot the session's state; at the end restore the
 * snapshot (into a fresh session) and replay the second half, checking that the
 * restored stream gives exactly the same hidden states.
 *
 *   stream_embeddings MODEL [N_FRAMES] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mamba.h>

#define CHECK_OK(call)                                                                 \
    do {                                                                               \
        mamba_status st_ = (call);                                                     \
        if (st_ != MAMBA_OK) {                                                         \
            fprintf(stderr, "stream_embeddings: %s: %s\n", #call, mamba_last_error()); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* Frame t of a synthetic signal: a few sines whose frequencies drift over time. */
static void make_frame(float *x, int d, int t) {
    int i;
    for (i = 0; i < d; i++)
        x[i] = 0.5f * sinf(0.05f * (float)t * (float)(1 + i % 7) + 0.3f * (float)i) +
               0.1f * cosf(0.011f * (float)(t * i));
}

int main(int argc, char **argv) {
    mamba_model *model = NULL;
    mamba_session *live = NULL, *restored = NULL;
    int n_frames = argc > 2 ? atoi(argv[2]) : 64;
    int half, t, d, mismatches = 0;
    float *x, *hidden, *second_half;
    unsigned char *snapshot;
    size_t snap_len, written = 0;
    double energy = 0.0;

    if (argc < 2 || n_frames < 2) {
        fprintf(stderr, "usage: %s MODEL [N_FRAMES >= 2]\n", argv[0]);
        return 2;
    }
    CHECK_OK(mamba_model_load_file(argv[1], NULL, &model));
    CHECK_OK(mamba_session_init(model, &live));
    d = mamba_model_d_model(model);
    half = n_frames / 2;
    x = (float *)malloc((size_t)d * sizeof(float));
    hidden = (float *)malloc((size_t)d * sizeof(float));
    second_half = (float *)malloc((size_t)(n_frames - half) * (size_t)d * sizeof(float));
    snap_len = mamba_session_state_size(live);
    snapshot = (unsigned char *)malloc(snap_len);

    for (t = 0; t < n_frames; t++) {
        if (t == half) {
            /* The state is constant-size, however long the stream has been. */
            CHECK_OK(mamba_session_state_save(live, snapshot, snap_len, &written));
            printf("frame %d: state snapshot of %zu bytes\n", t, written);
        }
        make_frame(x, d, t);
        CHECK_OK(mamba_session_step_embedding(live, x, (size_t)d, hidden, (size_t)d));
        if (t >= half) memcpy(second_half + (size_t)(t - half) * (size_t)d, hidden, (size_t)d * sizeof(float));
        energy += (double)hidden[0] * hidden[0];
    }
    printf("fed %d frames of %d features (mean h[0]^2 = %.4f)\n", n_frames, d, energy / n_frames);

    /* Restore into a fresh session and replay the second half. */
    CHECK_OK(mamba_session_init(model, &restored));
    CHECK_OK(mamba_session_state_load(restored, snapshot, written));
    for (t = half; t < n_frames; t++) {
        make_frame(x, d, t);
        CHECK_OK(mamba_session_step_embedding(restored, x, (size_t)d, hidden, (size_t)d));
        if (memcmp(hidden, second_half + (size_t)(t - half) * (size_t)d, (size_t)d * sizeof(float)) != 0)
            mismatches++;
    }
    printf("restored at frame %d and replayed %d frames: %s\n", half, n_frames - half,
           mismatches == 0 ? "identical hidden states" : "MISMATCH");

    mamba_session_free(live);
    mamba_session_free(restored);
    mamba_model_free(model);
    free(x);
    free(hidden);
    free(second_half);
    free(snapshot);
    return mismatches == 0 ? 0 : 1;
}
