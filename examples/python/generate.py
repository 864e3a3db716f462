#!/usr/bin/env python3
"""Generate with libmamba from Python (ctypes), streaming tokens as they come.

    MAMBA_LIBRARY=PREFIX/lib/libmamba.so python3 generate.py MODEL PROMPT [MAX_TOKENS [SEED [TEMPERATURE]]]

Byte-level models: the prompt is bytes and tokens are printed as bytes (the same
output as examples/c/generate for the same arguments). Other models: PROMPT is a
list of token ids and ids are printed one per line.
"""

import sys

import mamba_ffi


def main(argv):
    if not 3 <= len(argv) <= 6:
        print(__doc__, file=sys.stderr)
        return 2
    model = mamba_ffi.Model(argv[1])
    max_tokens = int(argv[3]) if len(argv) > 3 else 128
    params = mamba_ffi.sampling_params()
    if len(argv) > 4:
        params.seed = int(argv[4])
    if len(argv) > 5:
        params.temperature = float(argv[5])
    out = sys.stdout.buffer
    if model.is_byte_level:
        prompt = list(argv[2].encode("utf-8"))
        out.write(argv[2].encode("utf-8"))

        def emit(t):
            out.write(bytes([t]))
            out.flush()

    else:
        prompt = [int(t) for t in argv[2].split()]

        def emit(t):
            out.write(f"{t}\n".encode())
            out.flush()

    session = model.session()
    tokens = session.generate(prompt, max_tokens, params, on_token=emit)
    if model.is_byte_level:
        out.write(b"\n")
    out.flush()
    print(f"generate.py: {len(tokens)} tokens (libmamba {mamba_ffi.version()})", file=sys.stderr)
    session.close()
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
