/* generate: load a model and stream generated tokens through the callback.
 *
 *   generate MODEL PROMPT [MAX_TOKENS [SEED [TEMPERATURE]]]
 *
 * For a byte-level model (mamba_model_is_byte_level: at most 256 tokens, no
 * tokenizer) the prompt is taken as bytes and tokens are printed as bytes. For
 * other models the C API has no tokenizer yet: PROMPT is a list of token ids
 * ("15 496 11") and the ids are printed, one per line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mamba.h>

typedef struct {
    int byte_level;
    size_t count;
} stream_state;

/* Called with each token as soon as it is sampled; returning nonzero would stop. */
static int32_t on_token(void *user_data, int32_t token) {
    stream_state *st = (stream_state *)user_data;
    if (st->byte_level)
        putchar((unsigned char)token);
    else
        printf("%d\n", (int)token);
    fflush(stdout);
    st->count++;
    return 0;
}

static int die(const char *what, mamba_status st) {
    fprintf(stderr, "generate: %s failed: %s (%s)\n", what, mamba_status_str(st), mamba_last_error());
    return 1;
}

int main(int argc, char **argv) {
    mamba_model *model = NULL;
    mamba_session *session = NULL;
    mamba_sampling_params sp = mamba_sampling_default_params();
    stream_state out = {0, 0};
    int32_t *prompt;
    size_t n = 0, max_tokens = 128;
    mamba_status st;
    int rc = 0;

    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: %s MODEL PROMPT [MAX_TOKENS [SEED [TEMPERATURE]]]\n", argv[0]);
        return 2;
    }
    if (argc > 3) max_tokens = (size_t)strtoul(argv[3], NULL, 10);
    if (argc > 4) sp.seed = (uint64_t)strtoull(argv[4], NULL, 10);
    if (argc > 5) sp.temperature = strtof(argv[5], NULL);

    st = mamba_model_load_file(argv[1], NULL, &model);
    if (st != MAMBA_OK) return die("loading the model", st);
    out.byte_level = mamba_model_is_byte_level(model);

    prompt = (int32_t *)malloc((strlen(argv[2]) + 1) * sizeof(int32_t));
    if (out.byte_level) {
        const unsigned char *p = (const unsigned char *)argv[2];
        while (*p) prompt[n++] = *p++;
    } else {
        char *s = argv[2], *end;
        for (;;) {
            long id;
            errno = 0;
            id = strtol(s, &end, 10);
            if (end == s) break;
            prompt[n++] = (int32_t)id;
            s = end;
        }
    }
    if (n == 0) {
        fprintf(stderr, "generate: empty prompt\n");
        rc = 2;
        goto done;
    }

    st = mamba_session_init(model, &session);
    if (st != MAMBA_OK) {
        rc = die("creating a session", st);
        goto done;
    }
    if (out.byte_level) fwrite(argv[2], 1, strlen(argv[2]), stdout);
    st = mamba_session_generate(session, prompt, n, &sp, max_tokens, on_token, &out);
    if (st != MAMBA_OK) {
        rc = die("generating", st);
        goto done;
    }
    if (out.byte_level) putchar('\n');
    fprintf(stderr, "generate: %zu tokens\n", out.count);

done:
    free(prompt);
    mamba_session_free(session); /* NULL-safe */
    mamba_model_free(model);
    return rc;
}
