"""PyTorch (CPU) twin of ssd's training step, for `deno task bench:train`.

The same GPT as core/nn/gpt.ts (nanoGPT layout: pre-LN, learned positions,
tied embeddings, ReLU FFN), the same AdamW and gradient clipping. Prints one
JSON object: ms per step, tokens/s, and which BLAS torch was built against.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, f)
        self.mlp_proj = nn.Linear(f, d)
        self.h = h

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, C // self.h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.relu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, ctx, d, layers, h, f):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList([Block(d, h, f) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied lm_head, (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    V, T, C = cfg.get("vocab", 256), cfg.get("ctx", 128), cfg.get("d_model", 128)
    L, H, Fd = cfg.get("n_layer", 4), cfg.get("n_head", 4), cfg.get("d_ff", 512)
    B, steps = cfg.get("batch_size", 16), cfg.get("steps", 20)
    # Use every core, as ssd's llvmpipe adapter does (torch 1.13 defaults to one here).
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = GPT(V, T, C, L, H, Fd)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))

    def step():
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - t0) * 1000 / steps
    # Debian's torch links the generic libblas.so.3; which library that is at run time
    # (reference BLAS, OpenBLAS, BLIS...) is chosen by update-alternatives.
    # The shim (LD_PRELOAD) wins over libblas.so.3 when it is loaded.
    blas = "unknown"
    with open("/proc/self/maps") as maps:
        paths = [line.split()[-1] for line in maps if "/" in line]
    for path in paths:
        if "sgemm_dnnl" in path:
            blas = "oneDNN sgemm (" + path + ")"
            break
        # The resolved file: libblas.so.3.11.0 (reference) or libopenblas*.so.
        name = os.path.basename(path)
        if name.startswith("libopenblas") or name.startswith("libblis") or "mkl" in name:
            blas = path
            break
        if name.startswith("libblas.so"):
            blas = "reference BLAS (" + path + ")"
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas_info": blas,
        "ms_per_step": ms,
        "tokens_per_s": B * T / (ms / 1000),
    }))


if __name__ == "__main__":
    main()
