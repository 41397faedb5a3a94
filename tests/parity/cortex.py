"""FlashLM v7.1 CORTEX-III and v7.2 CORTEX-VI in PyTorch, written from VARIANTS.md §10.1/§10.2 (upstream
v7/train_v71.py@e9e3053, v7/train_v72.py@ba6731e with the causal mask of a3105d5), as the reference for
flashlm's parity test. Parameter names follow the upstream state dict, buffers included: CORTEX-VI
registers blocks.{i}.decay_mask [seq_len, seq_len] (persistent, as upstream), so a state dict without it
fails load_state_dict(strict=True) as it would upstream. The arithmetic builds the mask on the fly in the
model's dtype (the same values), so a float64 parity run is not limited by the buffer's float32 rounding.

config["upstream_compat"] selects upstream's arithmetic: the memory read divided by sqrt(T) of the current
window (instead of sqrt(seq_len)), and the double-shifted loss (loss_fn)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class CausalDepthwiseConv(nn.Module):
    def __init__(self, dim, kernel_size):
        super().__init__()
        self.pad = kernel_size - 1
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=dim, bias=False)

    def forward(self, x):  # [B, T, C]
        return self.conv(F.pad(x.transpose(1, 2), (self.pad, 0))).transpose(1, 2)


def linear(i, o):
    return nn.Linear(i, o, bias=False)


class Block(nn.Module):
    def __init__(self, d_model, d_ff, kernel_size, seq_len, d_mem, decay, upstream_compat):
        super().__init__()
        self.ln1 = RMSNorm(d_model)
        self.mixer_up = linear(d_model, 2 * d_model)
        self.conv = CausalDepthwiseConv(d_model, kernel_size)
        self.mixer_down = linear(d_model, d_model)
        self.d_mem, self.decay, self.seq_len, self.compat = d_mem, decay, seq_len, upstream_compat
        if d_mem:
            self.ln_mem = RMSNorm(d_model)
            self.key_proj = linear(d_model, d_mem)
            self.val_proj = linear(d_model, d_mem)
            self.query_proj = linear(d_model, d_mem)
            self.mem_out = linear(d_mem, d_model)
            i = torch.arange(seq_len, dtype=torch.float64)
            diff = i.unsqueeze(0) - i.unsqueeze(1)                       # [i, j] = j - i
            self.register_buffer("decay_mask", (torch.triu(torch.ones(seq_len, seq_len, dtype=torch.float64))
                                                * decay ** diff.clamp(min=0)).float())
        self.ln2 = RMSNorm(d_model)
        self.Wg = linear(d_model, d_ff)
        self.Wu = linear(d_model, d_ff)
        self.Wo = linear(d_ff, d_model)

    def memory(self, x):
        T = x.shape[1]
        u = self.ln_mem(x)
        k, v, q = self.key_proj(u), self.val_proj(u), self.query_proj(u)
        t = torch.arange(T)
        diff = (t.unsqueeze(0) - t.unsqueeze(1)).to(x.dtype)          # [i, j] = j - i
        mask = torch.triu(torch.ones(T, T, dtype=x.dtype)) * self.decay ** diff  # i <= j: causal
        scores = torch.bmm(v, q.transpose(1, 2)) / math.sqrt(self.d_mem) * mask  # [i, j] = v_i . q_j
        reads = torch.bmm(scores.transpose(1, 2), k) / math.sqrt(T if self.compat else self.seq_len)
        return self.mem_out(reads)

    def forward(self, x):
        gate, val = self.mixer_up(self.ln1(x)).chunk(2, dim=-1)
        x = x + self.mixer_down(self.conv(val) * torch.sigmoid(gate))
        if self.d_mem:
            x = x + self.memory(x)
        h = self.ln2(x)
        return x + self.Wo(F.silu(self.Wg(h)) * self.Wu(h))


class Cortex(nn.Module):
    TIED = {"head.weight": "embed.weight"}  # flashlm stores the tied head only under the embedding's name

    def __init__(self, vocab_size=4096, d_model=256, n_layers=6, d_ff=512, kernel_size=15, seq_len=256, d_mem=0,
                 decay=0.99, upstream_compat=False):
        super().__init__()
        self.compat = upstream_compat
        self.embed = nn.Embedding(vocab_size, d_model)
        self.ln_in = RMSNorm(d_model)
        self.blocks = nn.ModuleList(Block(d_model, d_ff, kernel_size, seq_len, d_mem, decay, upstream_compat)
                                    for _ in range(n_layers))
        self.ln_out = RMSNorm(d_model)
        self.head = linear(d_model, vocab_size)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids):
        h = self.ln_in(self.embed(ids))
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_out(h))

    def loss_fn(self, logits, targets):
        if self.compat:  # upstream v7: logits[:, :-1] against already-shifted targets[:, 1:]
            logits, targets = logits[:, :-1], targets[:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def build(config):
    ints = ("vocab_size", "d_model", "n_layers", "d_ff", "kernel_size", "seq_len", "d_mem")
    kw = {k: int(config[k]) for k in ints if k in config}
    if "decay" in config:
        kw["decay"] = float(config["decay"])
    kw["upstream_compat"] = bool(config.get("upstream_compat", False))
    return Cortex(**kw)
