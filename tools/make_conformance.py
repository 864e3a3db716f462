#!/usr/bin/env python3
"""Make the Mamba-1 conformance fixtures under tests/fixtures/conformance/.

Each fixture is a tiny random MambaForCausalLM (transformers) with every
parameter perturbed away from its default, saved with save_pretrained, plus
float64 reference outputs. The reference numbers are produced by an
independent float64 implementation of the recurrence in MAMBA_SPEC.md and
checked against transformers' own forward pass (run in .double() on CPU,
slow path). transformers' slow path rounds a few intermediates to float32
(RMSNorm, residual, B and x in the scan, A), so it agrees with the pure
float64 numbers to about 1e-6 relative; the agreement is recorded in each
fixture's meta.json.

Needs: torch, transformers (>= 4.39; tested with 5.17), safetensors.
Usage: python3 tools/make_conformance.py [--out tests/fixtures/conformance]
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM
from safetensors.torch import save_file, load_file

T_TOKENS = 12
T_EMBEDS = 8

# name -> (config kwargs, options)
BASE = dict(vocab_size=256, hidden_size=32, num_hidden_layers=2, state_size=16, conv_kernel=4,
            expand=2, time_step_rank="auto", use_bias=False, use_conv_bias=True,
            layer_norm_epsilon=1e-5, tie_word_embeddings=True)
FIXTURES = [
    ("base", dict(BASE), dict(auto_rank_in_json=True)),
    ("dstate8_k3", dict(BASE, vocab_size=100, hidden_size=40, state_size=8, conv_kernel=3,
                        tie_word_embeddings=False), {}),
    ("expand3_rank5", dict(BASE, vocab_size=64, hidden_size=24, num_hidden_layers=3, expand=3,
                           time_step_rank=5, use_bias=True, layer_norm_epsilon=1e-6), {}),
    ("noconvbias_k2", dict(BASE, vocab_size=80, hidden_size=16, num_hidden_layers=3, state_size=4,
                           conv_kernel=2, use_conv_bias=False, tie_word_embeddings=True), {}),
    ("bf16", dict(BASE, vocab_size=128, tie_word_embeddings=False), dict(dtype="bfloat16")),
    ("sharded", dict(BASE, vocab_size=300, hidden_size=48, num_hidden_layers=3,
                     tie_word_embeddings=False), dict(max_shard_size="100KB")),
]


def make_config(kw):
    return MambaConfig(
        vocab_size=kw["vocab_size"], hidden_size=kw["hidden_size"], num_hidden_layers=kw["num_hidden_layers"],
        state_size=kw["state_size"], conv_kernel=kw["conv_kernel"], expand=kw["expand"],
        time_step_rank=kw["time_step_rank"], use_bias=kw["use_bias"], use_conv_bias=kw["use_conv_bias"],
        layer_norm_epsilon=kw["layer_norm_epsilon"], tie_word_embeddings=kw["tie_word_embeddings"],
        residual_in_fp32=True, hidden_act="silu", use_cache=True, use_mambapy=False,
        pad_token_id=0, bos_token_id=0, eos_token_id=0,
    )


@torch.no_grad()
def perturb(model, cfg, g):
    D, E, N, R, K = cfg.hidden_size, cfg.intermediate_size, cfg.state_size, int(cfg.time_step_rank), cfg.conv_kernel

    def rn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float64)

    def ru(shape):
        return torch.rand(shape, generator=g, dtype=torch.float64)

    names = []
    for name, p in model.named_parameters():
        s = p.shape
        if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            v = 1.0 + 0.2 * rn(s)
        elif name.endswith("A_log"):
            v = torch.log(torch.arange(1, N + 1, dtype=torch.float64))[None, :].expand(E, N) + 0.5 * rn(s)
        elif name.endswith("mixer.D"):
            v = 1.0 + 0.5 * rn(s)
        elif name.endswith("dt_proj.bias"):
            dt = torch.exp(ru(s) * (math.log(0.5) - math.log(1e-3)) + math.log(1e-3))
            v = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif name.endswith("dt_proj.weight"):
            v = (2 * ru(s) - 1) * R ** -0.5
        elif name.endswith("conv1d.weight"):
            v = 0.5 * rn(s)
        elif name.endswith("conv1d.bias"):
            v = 0.3 * rn(s)
        elif name.endswith("embeddings.weight") or name.endswith("lm_head.weight"):
            v = 0.5 * rn(s)
        elif name.endswith("in_proj.weight"):
            v = rn(s) / math.sqrt(D)
        elif name.endswith("x_proj.weight") or name.endswith("out_proj.weight"):
            v = rn(s) / math.sqrt(E)
        elif name.endswith("in_proj.bias") or name.endswith("out_proj.bias"):
            v = 0.2 * rn(s)
        else:
            raise RuntimeError(f"unhandled parameter {name}")
        p.copy_(v.to(p.dtype))
        names.append(name)
    return names


# ---------------------------------------------------------------- reference
def rmsnorm(h, w, eps):
    return h * torch.rsqrt((h * h).mean(-1, keepdim=True) + eps) * w


def ref_backbone(sd, cfg, x):
    """Pure float64 Mamba-1 forward. x: (T, D) input embeddings. Returns (T, D) after norm_f."""
    E, N, R, K = cfg.intermediate_size, cfg.state_size, int(cfg.time_step_rank), cfg.conv_kernel
    eps = cfg.layer_norm_epsilon
    T = x.shape[0]
    h = x.clone()
    for i in range(cfg.num_hidden_layers):
        p = f"backbone.layers.{i}."
        m = p + "mixer."
        u = rmsnorm(h, sd[p + "norm.weight"], eps)
        xz = u @ sd[m + "in_proj.weight"].T
        if m + "in_proj.bias" in sd:
            xz = xz + sd[m + "in_proj.bias"]
        xs, z = xz[:, :E], xz[:, E:]
        w = sd[m + "conv1d.weight"][:, 0, :]  # (E, K), last column = current token
        pad = torch.cat([torch.zeros(K - 1, E, dtype=x.dtype), xs], 0)
        conv = torch.zeros(T, E, dtype=x.dtype)
        for k in range(K):
            conv = conv + pad[k:k + T] * w[:, k]
        if m + "conv1d.bias" in sd:
            conv = conv + sd[m + "conv1d.bias"]
        xc = F.silu(conv)
        xdbc = xc @ sd[m + "x_proj.weight"].T
        dt, Bm, Cm = xdbc[:, :R], xdbc[:, R:R + N], xdbc[:, R + N:R + 2 * N]
        delta = F.softplus(dt @ sd[m + "dt_proj.weight"].T + sd[m + "dt_proj.bias"])  # threshold 20
        A = -torch.exp(sd[m + "A_log"])
        Dsk = sd[m + "D"]
        s = torch.zeros(E, N, dtype=x.dtype)
        ys = []
        for t in range(T):
            s = torch.exp(delta[t][:, None] * A) * s + delta[t][:, None] * Bm[t][None, :] * xc[t][:, None]
            ys.append(s @ Cm[t] + Dsk * xc[t])
        y = torch.stack(ys) * F.silu(z)
        o = y @ sd[m + "out_proj.weight"].T
        if m + "out_proj.bias" in sd:
            o = o + sd[m + "out_proj.bias"]
        h = h + o
    return rmsnorm(h, sd["backbone.norm_f.weight"], eps)


def write_f64(path, a):
    np.ascontiguousarray(a, dtype="<f8").tofile(path)


def write_f32(path, a):
    np.ascontiguousarray(a, dtype="<f4").tofile(path)


def rel_err(a, b):
    return float((a - b).abs().max() / max(1e-30, float(b.abs().max())))


def build_fixture(name, kw, opt, out_root, seed):
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = make_config(kw)
    model = MambaForCausalLM(cfg).float().eval()
    names = perturb(model, cfg, g)
    tied = kw["tie_word_embeddings"]
    if tied:
        assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr(), "expected tied head"
    else:
        assert model.lm_head.weight.data_ptr() != model.backbone.embeddings.weight.data_ptr(), "expected untied head"
    save_kw = {}
    if "max_shard_size" in opt:
        save_kw["max_shard_size"] = opt["max_shard_size"]
    if opt.get("dtype") == "bfloat16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True, **save_kw)
    cj = os.path.join(d, "config.json")
    if opt.get("auto_rank_in_json"):
        c = json.load(open(cj))
        c["time_step_rank"] = "auto"
        json.dump(c, open(cj, "w"), indent=2, sort_keys=True)
    files = sorted(os.listdir(d))
    if "max_shard_size" in opt:
        assert "model.safetensors.index.json" in files, files
        nshards = len([f for f in files if f.endswith(".safetensors")])
        assert nshards >= 2, files

    # reload exactly as a user would, then float64
    ref = MambaForCausalLM.from_pretrained(d).double().eval()
    cfg2 = ref.config
    assert cfg2.use_bias == kw["use_bias"] and cfg2.use_conv_bias == kw["use_conv_bias"]
    sd = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["backbone.embeddings.weight"]
    V, Dm = sd["lm_head.weight"].shape

    g2 = torch.Generator().manual_seed(seed + 1000)
    tok_hi = kw.get("token_limit", kw["vocab_size"])
    tokens = torch.randint(0, tok_hi, (T_TOKENS,), generator=g2)
    embeds = torch.randn(T_EMBEDS, Dm, generator=g2, dtype=torch.float64).float()

    with torch.no_grad():
        x = sd["backbone.embeddings.weight"][tokens]
        hid_tok = ref_backbone(sd, cfg2, x)
        logits = hid_tok @ sd["lm_head.weight"].T
        hidden = ref_backbone(sd, cfg2, embeds.double())
        hf_logits = ref(input_ids=tokens[None], use_cache=False).logits[0].double()
        hf_hidden = ref.backbone(inputs_embeds=embeds.double()[None], use_cache=False).last_hidden_state[0].double()
        # incremental (decode) path of transformers, token by token, as a second check
        try:
            out = ref(input_ids=tokens[None, :1], use_cache=True)
            cache = out.cache_params
            steps = [out.logits[0, -1].double()]
            for t in range(1, T_TOKENS):
                kwargs = dict(input_ids=tokens[None, t:t + 1], cache_params=cache, use_cache=True)
                try:
                    out = ref(**kwargs, cache_position=torch.tensor([t]))
                except TypeError:
                    out = ref(**kwargs)
                cache = out.cache_params
                steps.append(out.logits[0, -1].double())
            hf_step = torch.stack(steps)
        except Exception as e:  # cache API differs between transformers versions
            print(f'decode-path check skipped: {e!r}', flush=True)
            hf_step = None

    e_logits = rel_err(hf_logits, logits)
    e_hidden = rel_err(hf_hidden, hidden)
    e_step = rel_err(hf_step, logits) if hf_step is not None else float('nan')
    ok = e_logits < 1e-4 and e_hidden < 1e-4
    json.dump({"tokens": [int(t) for t in tokens]}, open(os.path.join(d, "tokens.json"), "w"))
    write_f64(os.path.join(d, "logits.f64"), logits.numpy())
    write_f32(os.path.join(d, "embeds.f32"), embeds.numpy())
    write_f64(os.path.join(d, "hidden.f64"), hidden.numpy())
    meta = {
        "name": name, "seed": seed, "T_tokens": T_TOKENS, "T_embeds": T_EMBEDS, "vocab_rows": V, "d_model": Dm,
        "d_inner": cfg2.intermediate_size, "d_state": cfg2.state_size, "d_conv": cfg2.conv_kernel,
        "dt_rank": int(cfg2.time_step_rank), "n_layer": cfg2.num_hidden_layers, "use_bias": cfg2.use_bias,
        "use_conv_bias": cfg2.use_conv_bias, "eps": cfg2.layer_norm_epsilon, "tied": tied,
        "weights_dtype": opt.get("dtype", "float32"), "files": files,
        "max_rel_err_vs_transformers": {"logits": e_logits, "hidden": e_hidden, "logits_decode_path": e_step},
        "logits_absmax": float(logits.abs().max()), "logits_std": float(logits.std()),
        "hidden_std": float(hidden.std()), "parameters": names,
    }
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=1)
    print(f"{name:14s} V={V} D={Dm} E={cfg2.intermediate_size} N={cfg2.state_size} K={cfg2.conv_kernel} "
          f"R={cfg2.time_step_rank} bias={cfg2.use_bias} convbias={cfg2.use_conv_bias} tied={tied} files={files}\n"
          f"{'':14s} logits std {float(logits.std()):.3f} absmax {float(logits.abs().max()):.3f}; hidden std "
          f"{float(hidden.std()):.3f}; rel err vs HF: logits {e_logits:.2e} hidden {e_hidden:.2e} "
          f"decode {e_step:.2e} {'OK' if ok else 'MISMATCH'}", flush=True)
    return ok, tokens, sd, cfg2


def build_orig_names(src_name, out_root, pad_multiple=8, vocab_in_config=250):
    """Copy a fixture (which must have vocab 256, tied, default ssm_cfg) with the original
    state-spaces naming and config keys. The config's vocab_size (250) is padded to a
    multiple of 8 (256 rows), as in the released state-spaces checkpoints."""
    src = os.path.join(out_root, src_name)
    d = os.path.join(out_root, "orig_names")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    c = json.load(open(os.path.join(src, "config.json")))
    assert c["tie_word_embeddings"] and not c["use_bias"] and c["use_conv_bias"]
    assert c["state_size"] == 16 and c["conv_kernel"] == 4 and c["expand"] == 2
    assert c["layer_norm_epsilon"] == 1e-5
    sd = load_file(os.path.join(src, "model.safetensors"))
    rows = sd["backbone.embeddings.weight"].shape[0]
    assert rows == ((vocab_in_config + pad_multiple - 1) // pad_multiple) * pad_multiple, rows
    new = {}
    for k, v in sd.items():
        k2 = "backbone.embedding.weight" if k == "backbone.embeddings.weight" else k
        new[k2] = v.contiguous()
    # state-spaces checkpoints also carry lm_head.weight (the tied copy)
    new["lm_head.weight"] = new["backbone.embedding.weight"].clone()
    save_file(new, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    oc = {"d_model": c["hidden_size"], "n_layer": c["num_hidden_layers"], "vocab_size": vocab_in_config,
          "ssm_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
          "pad_vocab_size_multiple": pad_multiple, "tie_embeddings": True}
    json.dump(oc, open(os.path.join(d, "config.json"), "w"))
    for f in ("tokens.json", "logits.f64", "embeds.f32", "hidden.f64"):
        shutil.copyfile(os.path.join(src, f), os.path.join(d, f))
    toks = json.load(open(os.path.join(d, "tokens.json")))["tokens"]
    assert max(toks) < vocab_in_config
    meta = json.load(open(os.path.join(src, "meta.json")))
    meta.update({"name": "orig_names", "copy_of": src_name, "config_vocab_size": vocab_in_config,
                 "files": sorted(os.listdir(d)) + ["meta.json"]})
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=1)
    print(f"orig_names     copy of {src_name}: {sorted(new)[:3]}... config {oc}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/conformance")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    all_ok = True
    for i, (name, kw, opt) in enumerate(FIXTURES):
        if name == "base":
            kw = dict(kw, token_limit=250)  # so that orig_names (config vocab 250) can share the tokens
        try:
            ok, *_ = build_fixture(name, kw, opt, args.out, args.seed + 17 * i)
            all_ok &= ok
        except Exception as e:  # keep going: one broken fixture must not lose the others
            import traceback
            traceback.print_exc()
            print(f"FAILED fixture {name}: {e}", flush=True)
            all_ok = False
    try:
        build_orig_names("base", args.out)
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"FAILED fixture orig_names: {e}", flush=True)
        all_ok = False
    print("ALL OK" if all_ok else "SOME FIXTURES FAILED OR MISMATCHED", flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
