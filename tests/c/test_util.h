/* Small helpers shared by the C tests: checks that print the failing line and
 * mamba_last_error(), and file loading. */
#ifndef MAMBA_TEST_UTIL_H
#define MAMBA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba.h"

static int g_failures = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                          \
        }                                                                          \
    } while (0)

/* Call must return `want`; on a mismatch print both and the last error. */
#define CHECK_ST(call, want)                                                        \
    do {                                                                            \
        mamba_status st_ = (call);                                                  \
        if (st_ != (want)) {                                                        \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s); last error: %s\n", \
                    __FILE__, __LINE__, #call, (int)st_, mamba_status_str(st_),     \
                    (int)(want), mamba_status_str(want), mamba_last_error());       \
            g_failures++;                                                           \
        }                                                                           \
    } while (0)

/* The last error must contain `needle`. */
#define CHECK_MSG(needle)                                                               \
    do {                                                                                \
        const char *msg_ = mamba_last_error();                                          \
        if (msg_ == NULL || strstr(msg_, (needle)) == NULL) {                           \
            fprintf(stderr, "%s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                    msg_ ? msg_ : "(null)", (needle));                                  \
            g_failures++;                                                               \
        }                                                                               \
    } while (0)

/* Abort the test program when a setup step fails. */
#define REQUIRE_OK(call)                                                                   \
    do {                                                                                   \
        mamba_status st_ = (call);                                                         \
        if (st_ != MAMBA_OK) {                                                             \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,           \
                    mamba_last_error());                                                   \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

static int test_summary(const char *name) {
    if (g_failures == 0) {
        printf("%s: ok\n", name);
        return 0;
    }
    printf("%s: %d check(s) failed\n", name, g_failures);
    return 1;
}

#endif /* MAMBA_TEST_UTIL_H */
