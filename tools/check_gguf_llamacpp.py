#!/usr/bin/env python3
"""Cross-check a GGUF written by `mamba-cli convert` with llama.cpp's own Python package
(gguf-py): its reader must parse the file; every tensor must carry a name llama.cpp's
`mamba` architecture defines, with the dims, types and metadata keys its loader asks for;
and the values must be the HF checkpoint's (A = -exp(A_log), the conv squeezed to {K, E}).

    python3 tools/check_gguf_llamacpp.py MODEL.gguf [HF_DIR]
"""
import json
import os
import sys

import numpy as np
import gguf


def fail(msg):
    print(f"check_gguf_llamacpp: FAIL: {msg}")
    sys.exit(1)


def read_safetensors(path):
    """name -> float64 array; F32, F16 and BF16 (numpy has no bfloat16)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        b = raw[8 + n + s:8 + n + e]
        if t["dtype"] == "F32":
            a = np.frombuffer(b, "<f4")
        elif t["dtype"] == "F16":
            a = np.frombuffer(b, "<f2")
        elif t["dtype"] == "BF16":
            a = (np.frombuffer(b, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            continue
        out[name] = a.astype(np.float64).reshape(t["shape"])
    return out


def main():
    path = sys.argv[1]
    hf = sys.argv[2] if len(sys.argv) > 2 else None
    r = gguf.GGUFReader(path)
    fields = r.fields

    def val(key):
        f = fields.get(key)
        if f is None:
            fail(f"missing key {key}")
        return f.contents()

    if val("general.architecture") != "mamba":
        fail("general.architecture is not mamba")
    arch = "mamba"
    K = gguf.Keys
    need = [K.LLM.CONTEXT_LENGTH, K.LLM.EMBEDDING_LENGTH, K.LLM.BLOCK_COUNT, K.LLM.FEED_FORWARD_LENGTH,
            K.Attention.HEAD_COUNT, K.SSM.CONV_KERNEL, K.SSM.INNER_SIZE, K.SSM.STATE_SIZE,
            K.SSM.TIME_STEP_RANK, K.Attention.LAYERNORM_RMS_EPS, K.General.FILE_TYPE]
    for k in need:
        val(k.format(arch=arch))
    D = val(f"{arch}.embedding_length")
    L = val(f"{arch}.block_count")
    Kc = val(f"{arch}.ssm.conv_kernel")
    E = val(f"{arch}.ssm.inner_size")
    N = val(f"{arch}.ssm.state_size")
    R = val(f"{arch}.ssm.time_step_rank")
    if val(f"{arch}.feed_forward_length") != 0 or val(f"{arch}.attention.head_count") != 0:
        fail("feed_forward_length and head_count must be 0 for mamba")

    names = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.MAMBA]}
    tensors = {t.name: t for t in r.tensors}
    allowed = set()
    for n in names:
        for b in range(L) if "{bid}" in n else [None]:
            base = n.format(bid=b) if b is not None else n
            allowed |= {base, base + ".weight", base + ".bias"}
    for name in tensors:
        if name not in allowed:
            fail(f"tensor {name} is not a name of llama.cpp's mamba architecture")
    V = tensors["token_embd.weight"].shape[1]
    want = {"token_embd.weight": [D, V], "output_norm.weight": [D]}
    for i in range(L):
        b = f"blk.{i}."
        want.update({b + "attn_norm.weight": [D], b + "ssm_in.weight": [D, 2 * E], b + "ssm_conv1d.weight": [Kc, E],
                     b + "ssm_conv1d.bias": [E], b + "ssm_x.weight": [E, R + 2 * N], b + "ssm_dt.weight": [R, E],
                     b + "ssm_dt.bias": [E], b + "ssm_a": [N, E], b + "ssm_d": [E], b + "ssm_out.weight": [E, D]})
    for name, dims in want.items():
        t = tensors.get(name)
        if t is None:
            fail(f"missing tensor {name} (llama.cpp requires it)")
        if [int(x) for x in t.shape] != dims:
            fail(f"{name} has dims {list(t.shape)}, llama.cpp expects {dims}")
        f32_only = not name.endswith(".weight") or "norm" in name or "conv1d" in name
        if f32_only and t.tensor_type != gguf.GGMLQuantizationType.F32:
            fail(f"{name} must be F32, is {t.tensor_type.name}")

    if hf:
        st = {}
        for f in os.listdir(hf):
            if f.endswith(".safetensors"):
                st.update(read_safetensors(os.path.join(hf, f)))
        a = tensors["blk.0.ssm_a"].data.reshape(E, N)
        ref = -np.exp(st["backbone.layers.0.mixer.A_log"].astype(np.float64))
        if np.abs(a - ref).max() > 1e-5 * np.abs(ref).max():
            fail("ssm_a is not -exp(A_log)")
        conv = tensors["blk.0.ssm_conv1d.weight"].data.reshape(E, Kc)
        if np.abs(conv - st["backbone.layers.0.mixer.conv1d.weight"].reshape(E, Kc)).max() > 0:
            fail("ssm_conv1d.weight differs from conv1d.weight squeezed")
    print(f"check_gguf_llamacpp: ok: {path}: {len(tensors)} tensors, D={D} layers={L} E={E} N={N} K={Kc} R={R} V={V}")


if __name__ == "__main__":
    main()
