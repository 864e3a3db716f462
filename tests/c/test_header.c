/* The header compiles as C99 and as C++17 with -Wall -Wextra -Werror, and may be
 * included twice. This file is compiled both ways by scripts/test-c.sh. */
#include "mamba.h"
#include "mamba.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    mamba_model_params mp = mamba_model_default_params();
    mamba_sampling_params sp = mamba_sampling_default_params();
    mamba_status st = MAMBA_ERR_INVALID_ARG;
    mamba_backend b = MAMBA_BACKEND_CPU;
    mamba_token_callback cb = NULL;
    int ok = mp.struct_size == sizeof(mp) && sp.struct_size == sizeof(sp) && mp.backend == b &&
             cb == NULL && strcmp(mamba_status_str(st), "invalid argument") == 0 &&
             strlen(mamba_version()) > 0 && MAMBA_OK == 0 && MAMBA_ERR_BAD_STATE == -10;
    printf("header: %s (libmamba %s)\n", ok ? "ok" : "FAILED", mamba_version());
    return ok ? 0 : 1;
}
