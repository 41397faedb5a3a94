"""FlashLM v7 "CORTEX" in PyTorch, written from VARIANTS.md §9 (upstream v7/train.py@49423a9), as the
reference for flashlm's parity test. Parameter names follow the upstream state dict.

forward(ids) returns the final head's logits and keeps the exit heads' logits and gate values for
loss_fn, which is upstream's training objective (final CE + weighted exit CEs + consistency BCE +
diversity). config["upstream_compat"] selects upstream's arithmetic: the decayed sum as
w^t * cumsum(kv / max(w^s, 1e-10)) and the double-shifted targets; otherwise the sum is the recurrence
S_t = w S_{t-1} + kv_t and targets are next-token."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("cortex",)


class BitLinear(nn.Module):  # Q2: per-output-row absmean, identity STE
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(o, i))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x):
        scale = self.weight.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
        w_q = torch.round(self.weight / scale).clamp(-1, 1)
        return F.linear(x, self.weight + (w_q * scale - self.weight).detach())


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class TimeMix(nn.Module):
    def __init__(self, d, compat):
        super().__init__()
        self.Wr, self.Wk, self.Wv, self.Wo = (BitLinear(d, d) for _ in range(4))
        self.decay = nn.Parameter(torch.ones(d) * 0.99)
        self.ln_x = RMSNorm(d)
        self.compat = compat

    def forward(self, x):
        B, T, D = x.shape
        r = torch.sigmoid(self.Wr(x))
        kv = self.Wk(x) * self.Wv(x)
        decay = torch.sigmoid(self.decay)
        if self.compat:
            positions = torch.arange(T, dtype=x.dtype)
            scale = torch.exp(positions.unsqueeze(1) * torch.log(decay.clamp(min=1e-7)).unsqueeze(0))
            state = torch.cumsum(kv / scale.unsqueeze(0).clamp(min=1e-10), dim=1) * scale.unsqueeze(0)
        else:
            s, out = torch.zeros(B, D, dtype=x.dtype), []
            for t in range(T):
                s = decay * s + kv[:, t]
                out.append(s)
            state = torch.stack(out, dim=1)
        return self.Wo(self.ln_x(r * state))


class ChannelMix(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.W1, self.W2, self.Wo = BitLinear(d, d_ff), BitLinear(d, d_ff), BitLinear(d_ff, d)

    def forward(self, x):
        return self.Wo(F.silu(self.W1(x)) * self.W2(x))


class Block(nn.Module):
    def __init__(self, d, d_ff, compat):
        super().__init__()
        self.ln1, self.time_mix = RMSNorm(d), TimeMix(d, compat)
        self.ln2, self.channel_mix = RMSNorm(d), ChannelMix(d, d_ff)

    def forward(self, x):
        x = x + self.time_mix(self.ln1(x))
        return x + self.channel_mix(self.ln2(x))


class ExitGate(nn.Module):
    def __init__(self, d, vocab, hidden):
        super().__init__()
        self.ln = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.gate = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, x):
        h = self.ln(x)
        return self.head(h), self.gate(h)


class Cortex7(nn.Module):
    TIED = {"head.weight": "embed.weight"}

    def __init__(self, vocab_size=4096, d_model=256, n_layers=6, d_ff=512, gate_hidden=64, exit_layers=(2, 4),
                 exit_loss_weights=(0.1, 0.3), consistency_weight=0.5, diversity_weight=0.1, upstream_compat=False):
        super().__init__()
        self.compat = upstream_compat
        self.exit_layers, self.exit_loss_weights = list(exit_layers), list(exit_loss_weights)
        self.consistency_w, self.diversity_w = consistency_weight, diversity_weight
        self.embed = nn.Embedding(vocab_size, d_model)
        self.ln_in = RMSNorm(d_model)
        self.blocks = nn.ModuleList(Block(d_model, d_ff, upstream_compat) for _ in range(n_layers))
        self.ln_out = RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.exit_gates = nn.ModuleList(ExitGate(d_model, vocab_size, gate_hidden) for _ in self.exit_layers)

    def forward(self, ids):
        h = self.ln_in(self.embed(ids))
        self.exit_data = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i + 1 in self.exit_layers:
                self.exit_data.append(self.exit_gates[self.exit_layers.index(i + 1)](h))
        return self.head(self.ln_out(h))

    def loss_fn(self, logits, targets):
        cut = (lambda t: t[:, :-1]) if self.compat else (lambda t: t)
        tg = (targets[:, 1:] if self.compat else targets).reshape(-1)
        V = logits.size(-1)
        final = cut(logits)
        total = F.cross_entropy(final.reshape(-1, V), tg)
        for w, (el, _) in zip(self.exit_loss_weights, self.exit_data):
            total = total + w * F.cross_entropy(cut(el).reshape(-1, V), tg)
        final_pred = final.argmax(dim=-1)
        for el, conf in self.exit_data:
            el = cut(el)
            exit_pred = el.argmax(dim=-1)
            agreement = (exit_pred == final_pred).float().unsqueeze(-1)
            total = total + self.consistency_w * F.binary_cross_entropy(cut(conf), agreement)
            disagree = (exit_pred != final_pred).float()
            if disagree.sum() > 0:
                probs = F.softmax(el, dim=-1)
                ent = -(probs * torch.log(probs + 1e-10)).sum(dim=-1)
                total = total + self.diversity_w * ((1.0 - ent / math.log(V)) * disagree).mean()
        return total


def build(config):
    kw = {k: int(config[k]) for k in ("vocab_size", "d_model", "n_layers", "d_ff", "gate_hidden") if k in config}
    if "exit_layers" in config:
        kw["exit_layers"] = [int(x) for x in config["exit_layers"]]
    if "exit_loss_weights" in config:
        kw["exit_loss_weights"] = [float(x) for x in config["exit_loss_weights"]]
    for k in ("consistency_weight", "diversity_weight"):
        if k in config:
            kw[k] = float(config[k])
    kw["upstream_compat"] = bool(config.get("upstream_compat", False))
    return Cortex7(**kw)
