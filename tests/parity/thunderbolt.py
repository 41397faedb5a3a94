"""FlashLM v5 "Thunderbolt" in PyTorch, written from VARIANTS.md §6 (upstream model.py@4b751d4, train.py@da92cd1),
as the reference for flashlm's parity test. Parameter names follow the upstream state dict.

The recurrence is evaluated with the Hillis-Steele log-step scan of the spec (flashlm sweeps sequentially), so
parity also checks that the two evaluations agree.

config["upstream_compat"] selects upstream's GroupNorm, whose statistics span every position of the window
(torch GroupNorm on (B, C, T)); by default each head is normalised at each position on its own (causal)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("thunderbolt",)


class BitLinear(nn.Module):
    """Q1': alpha = max(mean|W|, 1e-5), W~ = clamp(round(W / alpha), -1, 1) * alpha, identity STE."""

    def __init__(self, in_f, out_f):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_f, in_f))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x):
        alpha = self.weight.abs().mean().clamp(min=1e-5)
        wq = (self.weight / alpha).round().clamp(-1, 1) * alpha
        return F.linear(x, self.weight + (wq - self.weight).detach())


def hillis_steele_scan(f, x):
    """h_t = f_t * h_{t-1} + x_t along dim 1, in ceil(log2 T) doubling steps with zero fill."""
    T = f.shape[1]
    h, g = x, f
    offset = 1
    while offset < T:
        h_prev = F.pad(h[:, :-offset], (0, 0, offset, 0))
        g_prev = F.pad(g[:, :-offset], (0, 0, offset, 0))
        h = h + g * h_prev
        g = g * g_prev
        offset *= 2
    return h


class ParallelGatedRecurrence(nn.Module):
    def __init__(self, d_model, n_heads, d_head, layer_idx, n_layers, whole_sequence_norm):
        super().__init__()
        inner = n_heads * d_head
        self.n_heads, self.whole = n_heads, whole_sequence_norm
        self.W_f = BitLinear(d_model, inner)
        self.W_v = BitLinear(d_model, inner)
        self.W_o = BitLinear(d_model, inner)
        self.W_proj = BitLinear(inner, d_model)
        self.lb = 0.9 * layer_idx / max(n_layers - 1, 1)
        self.f_bias = nn.Parameter(torch.zeros(inner))
        self.gn = nn.GroupNorm(n_heads, inner, eps=1e-5)

    def norm(self, y):  # y: [B, T, C]
        if self.whole:  # upstream: statistics over each group's channels and all T positions
            return self.gn(y.transpose(1, 2)).transpose(1, 2)
        B, T, C = y.shape
        yg = y.reshape(B, T, self.n_heads, C // self.n_heads)
        mu = yg.mean(-1, keepdim=True)
        var = yg.var(-1, unbiased=False, keepdim=True)
        yn = ((yg - mu) / torch.sqrt(var + self.gn.eps)).reshape(B, T, C)
        return yn * self.gn.weight + self.gn.bias

    def forward(self, u):
        f = self.lb + (1 - self.lb) * torch.sigmoid(self.W_f(u) + self.f_bias)
        h = hillis_steele_scan(f, (1 - f) * self.W_v(u))
        return self.W_proj(self.norm(torch.sigmoid(self.W_o(u)) * h))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_head, d_ffn, layer_idx, n_layers, whole):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mix1 = nn.Parameter(torch.zeros(d_model))
        self.mix2 = nn.Parameter(torch.zeros(d_model))
        self.rec = ParallelGatedRecurrence(d_model, n_heads, d_head, layer_idx, n_layers, whole)
        self.ffn_up = BitLinear(d_model, d_ffn)
        self.ffn_down = BitLinear(d_ffn, d_model)

    @staticmethod
    def shift(u, m):
        s = torch.sigmoid(m)
        return s * u + (1 - s) * F.pad(u[:, :-1], (0, 0, 1, 0))

    def forward(self, x):
        x = x + self.rec(self.shift(self.ln1(x), self.mix1))
        h = self.shift(self.ln2(x), self.mix2)
        return x + self.ffn_down(F.relu(self.ffn_up(h)).square())


class Thunderbolt(nn.Module):
    TIED = {"head.weight": "embed.weight"}

    def __init__(self, vocab_size=8192, d_model=384, n_heads=8, d_head=48, n_layers=18, d_ffn=1152,
                 upstream_compat=False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_head, d_ffn, i, n_layers, upstream_compat)
                                    for i in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        h = self.embed(ids)
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_out(h))


def build(config):
    ints = ("vocab_size", "d_model", "n_heads", "d_head", "n_layers", "d_ffn")
    kw = {k: int(config[k]) for k in ints if k in config}
    kw["upstream_compat"] = bool(config.get("upstream_compat", False))
    return Thunderbolt(**kw)


if __name__ == "__main__":  # the spec's parameter count
    m = Thunderbolt()
    total = sum(p.numel() for p in m.parameters())
    ternary = sum(p.numel() for mod in m.modules() if isinstance(mod, BitLinear) for p in mod.parameters())
    print(total, ternary)
