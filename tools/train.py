#!/usr/bin/env python3
"""Train a byte-level Mamba-1 language model (vocab = the 256 byte values, no
tokenizer) with transformers' MambaForCausalLM and save it with save_pretrained
(config.json + model.safetensors, float32).

Training runs for a fixed wall-clock budget (--time-budget seconds); the
learning rate follows linear warm-up then a cosine decay over the fraction of
the budget elapsed, so the schedule always completes. transformers' pure
PyTorch path is used with use_mambapy=True (parallel scan from the `mambapy`
package), so no mamba_ssm / causal_conv1d kernels are needed.

After training the saved directory is loaded back with from_pretrained and
the held-out bits per byte are measured in float32; greedy and sampled text
from a fixed prompt are printed.

Usage (the shipped models; see tools/README.md):
  python3 tools/train.py --preset default --out models/hf/default --time-budget 400
  python3 tools/train.py --preset tiny    --out models/hf/tiny    --time-budget 300
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

PRESETS = {
    # ~3.6M parameters: f32 safetensors ~14 MiB
    "default": dict(d_model=256, n_layer=8, d_state=16, d_conv=4, expand=2, lr=2e-3, batch=32, seq_len=512),
    # ~0.37M parameters, dims multiples of 32 so the 2-D weights quantize to Q8_0/Q4_0
    "tiny": dict(d_model=96, n_layer=5, d_state=16, d_conv=4, expand=2, lr=3e-3, batch=32, seq_len=512),
}

PROMPT = "The Rust programming language"


def log(*a):
    print(*a, flush=True)


def build_model(a):
    from transformers import MambaConfig, MambaForCausalLM
    cfg = MambaConfig(
        vocab_size=256, hidden_size=a.d_model, num_hidden_layers=a.n_layer, state_size=a.d_state,
        conv_kernel=a.d_conv, expand=a.expand, time_step_rank="auto", use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True, residual_in_fp32=True, hidden_act="silu",
        initializer_range=0.02, rescale_prenorm_residual=False, use_cache=False, use_mambapy=True,
        pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    return MambaForCausalLM(cfg)


@torch.no_grad()
def bits_per_byte(model, data, device, window=1024, batch=16, limit=None, amp=False):
    """Mean bits per predicted byte over non-overlapping windows (the first byte of
    each window is context only)."""
    model.eval()
    n = (len(data) - 1) // window
    if limit:
        n = min(n, limit)
    total_nats, count = 0.0, 0
    starts = list(range(0, n * window, window))
    # the tail that does not fill a window
    tail = data[n * window:]
    for i in range(0, len(starts), batch):
        x = torch.stack([data[s:s + window + 1] for s in starts[i:i + batch]]).to(device).long()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=x[:, :-1], use_cache=False).logits.float()
        loss = F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1), reduction="sum")
        total_nats += float(loss)
        count += x[:, 1:].numel()
    if limit is None and len(tail) > 1:
        x = tail.to(device).long()[None]
        logits = model(input_ids=x[:, :-1], use_cache=False).logits.float()
        total_nats += float(F.cross_entropy(logits[0], x[0, 1:], reduction="sum"))
        count += x.shape[1] - 1
    model.train()
    return total_nats / count / math.log(2), count


@torch.no_grad()
def generate(model, prompt, n, device, temperature=0.0, top_k=0, seed=0):
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor(list(prompt.encode()), device=device)[None]
    for _ in range(n):
        logits = model(input_ids=ids, use_cache=False).logits[0, -1].float()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                v, _ = torch.topk(logits, top_k)
                logits[logits < v[-1]] = -float("inf")
            nxt = int(torch.multinomial(F.softmax(logits, -1), 1, generator=g))
        ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], 1)
    model.train()
    return bytes(ids[0].tolist()).decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--data", default=".data/train.txt")
    ap.add_argument("--heldout", default="data/heldout.txt")
    ap.add_argument("--out", required=True, help="output directory for save_pretrained")
    ap.add_argument("--time-budget", type=float, default=300, help="seconds of training")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    ap.add_argument("--d-model", type=int)
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--d-state", type=int)
    ap.add_argument("--d-conv", type=int)
    ap.add_argument("--expand", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--no-amp", action="store_true", help="train in float32 instead of bf16 autocast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=float, default=30, help="seconds between progress lines")
    ap.add_argument("--sample-bytes", type=int, default=300)
    a = ap.parse_args()
    for k, v in PRESETS[a.preset].items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)

    import importlib.util
    if importlib.util.find_spec("mambapy") is None:
        log("WARNING: mambapy is not installed; transformers falls back to a slow sequential scan")

    torch.manual_seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    amp = device == "cuda" and not a.no_amp
    train = torch.frombuffer(bytearray(open(a.data, "rb").read()), dtype=torch.uint8)
    held = torch.frombuffer(bytearray(open(a.heldout, "rb").read()), dtype=torch.uint8)
    log(f"train bytes {len(train)}, heldout bytes {len(held)}, device {device}, amp bf16 {amp}")
    train_d = train.to(device)

    model = build_model(a).to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"preset {a.preset}: d_model {a.d_model} n_layer {a.n_layer} d_state {a.d_state} d_conv {a.d_conv} "
        f"expand {a.expand} dt_rank {model.config.time_step_rank}; parameters {n_params} "
        f"({n_params * 4 / 2**20:.2f} MiB f32)")
    log("config: " + json.dumps({k: a.__dict__[k] for k in sorted(a.__dict__)}))

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.endswith("A_log") else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=(device == "cuda"))

    g = torch.Generator(device=device).manual_seed(a.seed)

    def batch():
        ix = torch.randint(0, len(train_d) - a.seq_len - 1, (a.batch,), device=device, generator=g)
        off = ix[:, None] + torch.arange(a.seq_len + 1, device=device)[None]
        return train_d[off].long()

    def lr_at(frac):
        if frac < a.warmup_frac:
            return a.lr * max(frac / a.warmup_frac, 0.01)
        p = min(1.0, (frac - a.warmup_frac) / (1 - a.warmup_frac))
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    step, t0, last_log, ema = 0, time.time(), 0.0, None
    tokens = 0
    while True:
        el = time.time() - t0
        frac = el / a.time_budget
        if frac >= 1.0 or (a.max_steps and step >= a.max_steps):
            break
        for gr in opt.param_groups:
            gr["lr"] = lr_at(frac)
        x = batch()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, 256), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x[:, 1:].numel()
        if step % 10 == 0 or step < 10:
            lv = float(loss)
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            if step < 10 or el - last_log >= a.log_every:
                last_log = el
                hb = ""
                if step >= 10:
                    bpb, _ = bits_per_byte(model, held, device, limit=32, amp=amp)
                    hb = f" heldout(sub) bpb {bpb:.3f}"
                log(f"step {step} t {el:.0f}s lr {lr_at(frac):.2e} loss {lv:.3f} (ema {ema / math.log(2):.3f} bpb)"
                    f"{hb} tok/s {tokens / max(el, 1e-9):.0f}")
    el = time.time() - t0
    log(f"trained {step} steps, {tokens} tokens ({tokens / len(train):.1f} epochs) in {el:.0f}s, "
        f"{tokens / el:.0f} tok/s")

    model.config.use_mambapy = False
    model.config.use_cache = True
    model = model.float()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)
    log(f"saved {a.out}: {sorted(os.listdir(a.out))}, model.safetensors "
        f"{os.path.getsize(os.path.join(a.out, 'model.safetensors'))} bytes")

    try:
        # evaluate the saved artifact
        from transformers import MambaForCausalLM
        m2 = MambaForCausalLM.from_pretrained(a.out).float().to(device)
        m2.config.use_mambapy = True
        for layer in m2.backbone.layers:
            layer.mixer.use_mambapy = True
        torch.backends.cuda.matmul.allow_tf32 = False
        bpb, cnt = bits_per_byte(m2, held, device)
        log(f"RESULT preset={a.preset} params={n_params} heldout_bpb={bpb:.4f} (f32, {cnt} bytes predicted, "
            f"windows of 1024)")
        tb, _ = bits_per_byte(m2, train[:len(held)], device)
        log(f"train-slice bpb {tb:.4f}")
        log("SAMPLE greedy: " + repr(generate(m2, PROMPT, a.sample_bytes, device)))
        log("SAMPLE t=0.8 seed=1: " + repr(generate(m2, PROMPT, a.sample_bytes, device, temperature=0.8, seed=1)))
        log("SAMPLE t=1.0 seed=2: " + repr(generate(m2, "Ownership is ", a.sample_bytes, device, temperature=1.0, seed=2)))
        json.dump({"preset": a.preset, "parameters": n_params, "heldout_bpb": bpb, "train_slice_bpb": tb,
                   "steps": step, "tokens": tokens, "train_seconds": el, "args": vars(a)},
                  open(os.path.join(a.out, "train_summary.json"), "w"), indent=1)
    except Exception:
        import traceback
        traceback.print_exc()
        log('evaluation of the saved model failed (the model itself was saved)')


if __name__ == "__main__":
    main()
