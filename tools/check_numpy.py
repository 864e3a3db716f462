#!/usr/bin/env python3
"""CPU-only (numpy) cross-check of the conformance fixtures and the shipped models.

An independent float64 numpy implementation of the Mamba-1 forward pass (MAMBA_SPEC.md)
reads each fixture exactly as a loader must (HF or original state-spaces config keys,
single file or sharded safetensors, f32 or bf16 tensors, tied or untied head, padded
vocab) and compares against logits.f64 / hidden.f64. With --model it also measures
bits per byte of a byte-level model on the start of data/heldout.txt.

Usage:
  python3 tools/check_numpy.py                      # all fixtures
  python3 tools/check_numpy.py --model models/hf/default --bytes 3000
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if v["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(DT[v["dtype"]]).newbyteorder("<"))
        out[k] = arr.reshape(v["shape"]).astype(np.float64)
    return out


def load(d):
    c = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        sd = {}
        for f in sorted(set(json.load(open(idx))["weight_map"].values())):
            sd.update(read_safetensors(os.path.join(d, f)))
    else:
        sd = read_safetensors(os.path.join(d, "model.safetensors"))
    if "backbone.embedding.weight" in sd:  # original state-spaces names
        sd["backbone.embeddings.weight"] = sd.pop("backbone.embedding.weight")
    if "d_model" in c:  # original config keys
        ssm = c.get("ssm_cfg", {})
        D = c["d_model"]
        cfg = dict(D=D, L=c["n_layer"], N=ssm.get("d_state", 16), K=ssm.get("d_conv", 4),
                   E=ssm.get("expand", 2) * D, eps=c.get("norm_epsilon", 1e-5),
                   R=ssm.get("dt_rank", "auto"), tied=c.get("tie_embeddings", True))
    else:
        cfg = dict(D=c["hidden_size"], L=c["num_hidden_layers"], N=c["state_size"], K=c["conv_kernel"],
                   E=c.get("intermediate_size", c["expand"] * c["hidden_size"]), eps=c["layer_norm_epsilon"],
                   R=c["time_step_rank"], tied=c.get("tie_word_embeddings", True))
    if cfg["R"] == "auto":
        cfg["R"] = math.ceil(cfg["D"] / 16)
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["backbone.embeddings.weight"]
    return cfg, sd


def rmsnorm(h, w, eps):
    return h / np.sqrt((h * h).mean(-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def backbone(cfg, sd, x):
    E, N, R, K = cfg["E"], cfg["N"], cfg["R"], cfg["K"]
    T = x.shape[0]
    h = x.copy()
    for i in range(cfg["L"]):
        p = f"backbone.layers.{i}."
        m = p + "mixer."
        u = rmsnorm(h, sd[p + "norm.weight"], cfg["eps"])
        xz = u @ sd[m + "in_proj.weight"].T + sd.get(m + "in_proj.bias", 0)
        xs, z = xz[:, :E], xz[:, E:]
        w = sd[m + "conv1d.weight"][:, 0, :]
        pad = np.concatenate([np.zeros((K - 1, E)), xs])
        conv = sum(pad[k:k + T] * w[:, k] for k in range(K)) + sd.get(m + "conv1d.bias", 0)
        xc = silu(conv)
        xdbc = xc @ sd[m + "x_proj.weight"].T
        dt, B, C = xdbc[:, :R], xdbc[:, R:R + N], xdbc[:, R + N:]
        delta = softplus(dt @ sd[m + "dt_proj.weight"].T + sd[m + "dt_proj.bias"])
        A = -np.exp(sd[m + "A_log"])
        s = np.zeros((E, N))
        y = np.zeros((T, E))
        for t in range(T):
            s = np.exp(delta[t][:, None] * A) * s + (delta[t] * xc[t])[:, None] * B[t][None, :]
            y[t] = s @ C[t] + sd[m + "D"] * xc[t]
        h = h + (y * silu(z)) @ sd[m + "out_proj.weight"].T + sd.get(m + "out_proj.bias", 0)
    return rmsnorm(h, sd["backbone.norm_f.weight"], cfg["eps"])


def check_fixtures(root):
    worst = 0.0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        cfg, sd = load(d)
        toks = json.load(open(os.path.join(d, "tokens.json")))["tokens"]
        V, D = sd["lm_head.weight"].shape
        logits_ref = np.fromfile(os.path.join(d, "logits.f64"), "<f8").reshape(len(toks), V)
        emb = np.fromfile(os.path.join(d, "embeds.f32"), "<f4").astype(np.float64).reshape(-1, D)
        hid_ref = np.fromfile(os.path.join(d, "hidden.f64"), "<f8").reshape(emb.shape[0], D)
        logits = backbone(cfg, sd, sd["backbone.embeddings.weight"][toks]) @ sd["lm_head.weight"].T
        hid = backbone(cfg, sd, emb)
        e1 = np.abs(logits - logits_ref).max() / np.abs(logits_ref).max()
        e2 = np.abs(hid - hid_ref).max() / np.abs(hid_ref).max()
        worst = max(worst, e1, e2)
        print(f"{name:14s} V={V} D={D} E={cfg['E']} N={cfg['N']} K={cfg['K']} R={cfg['R']} "
              f"rel err logits {e1:.1e} hidden {e2:.1e}")
    print("fixtures OK" if worst < 1e-9 else f"FIXTURE MISMATCH (worst {worst:.2e})")
    return worst < 1e-9


def bpb(model_dir, heldout, nbytes):
    cfg, sd = load(model_dir)
    data = list(open(heldout, "rb").read()[:nbytes])
    x = sd["backbone.embeddings.weight"][data[:-1]]
    logits = backbone(cfg, sd, x) @ sd["lm_head.weight"].T
    logits = logits - logits.max(-1, keepdims=True)
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -lp[np.arange(len(data) - 1), data[1:]].sum()
    return nll / (len(data) - 1) / math.log(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="tests/fixtures/conformance")
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--heldout", default="data/heldout.txt")
    ap.add_argument("--bytes", type=int, default=3000)
    a = ap.parse_args()
    ok = True
    if not a.model:
        ok = check_fixtures(a.fixtures)
    for m in a.model:
        print(f"{m}: bits per byte on the first {a.bytes} bytes of {a.heldout} (one window): "
              f"{bpb(m, a.heldout, a.bytes):.4f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
