"""FlashLM v6.1 "SUPERNOVA II" (PyTorch version) written from VARIANTS.md §8.3 (upstream
train_v61.py@a5182d3), as the reference for flashlm's parity test. Parameter names follow the upstream
state dict. The MoE runs upstream's way (a loop over experts with boolean masks, so only routed rows
reach an expert); loss_fn is upstream's objective, CE + the summed load-balancing terms."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("supernova2",)


class TernaryQuantize(torch.autograd.Function):  # Q3: median threshold, unscaled, clipped STE
    @staticmethod
    def forward(ctx, w):
        alpha = w.abs().median()
        ctx.save_for_backward(w)
        ctx.alpha = alpha.item()
        return torch.where(w > alpha, torch.ones_like(w), torch.where(w < -alpha, -torch.ones_like(w), torch.zeros_like(w)))

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() < 1.5 * ctx.alpha).float()


class BitLinear(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(o, i))

    def forward(self, x):
        return F.linear(x, TernaryQuantize.apply(self.weight))


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class TernaryGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w_gate, self.w_up, self.w_down = BitLinear(d, f), BitLinear(d, f), BitLinear(f, d)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class MoEFFN(nn.Module):
    def __init__(self, d, f, n_experts, top_k, coeff):
        super().__init__()
        self.n_experts, self.top_k, self.coeff = n_experts, top_k, coeff
        self.router = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList([TernaryGLU(d, f) for _ in range(n_experts)])

    def forward(self, x):
        B, T, D = x.shape
        xf = x.reshape(-1, D)
        logits = self.router(xf)
        scores = F.softmax(logits, dim=-1)
        top_s, top_i = scores.topk(self.top_k, dim=-1)
        top_s = top_s / top_s.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(xf)
        for k in range(self.top_k):
            for e in range(self.n_experts):
                mask = top_i[:, k] == e
                if mask.any():
                    out[mask] += top_s[:, k].unsqueeze(-1)[mask] * self.experts[e](xf[mask])
        frac = scores.mean(dim=0)
        prob = logits.softmax(dim=-1).mean(dim=0)
        self.aux_loss = self.coeff * self.n_experts * (frac * prob).sum()
        self.top_i = top_i
        return out.view(B, T, D)


class SimpleGatedMix(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mix1, self.mix2, self.gate, self.out = BitLinear(d, d), BitLinear(d, d), BitLinear(2 * d, d), BitLinear(d, d)

    def forward(self, x):
        x1 = F.pad(x[:, :-1, :], (0, 0, 1, 0))
        x2 = F.pad(x[:, :-2, :], (0, 0, 2, 0))
        m = self.mix1(x1) + self.mix2(x2)
        g = torch.sigmoid(self.gate(torch.cat([x, m], dim=-1)))
        return self.out(g * m + (1 - g) * x)


class MultiScaleReasoningBank(nn.Module):
    def __init__(self, d, r, n):
        super().__init__()
        self.projections = nn.ModuleList([BitLinear(d, r) for _ in range(n)])
        self.router = nn.Linear(d, n)
        self.out_proj = BitLinear(r, d)

    def forward(self, x):
        w = torch.softmax(self.router(x), dim=-1).unsqueeze(2)
        stacked = torch.stack([p(x) for p in self.projections], dim=-1)
        return self.out_proj((stacked * w).sum(dim=-1))


class HierarchicalStateGate(nn.Module):
    def __init__(self, d, r):
        super().__init__()
        self.planner, self.executor, self.gate = BitLinear(d, r), BitLinear(d, r), BitLinear(r, d)
        self.norm = RMSNorm(r)

    def forward(self, x):
        return self.gate(self.norm(torch.sigmoid(self.planner(x)) * torch.tanh(self.executor(x))))


class SlotMemoryAttention(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.slots = nn.Parameter(torch.zeros(n, d))
        self.query_proj, self.out_proj = BitLinear(d, d), BitLinear(d, d)

    def forward(self, x):
        w = torch.softmax(self.query_proj(x) @ self.slots.T / math.sqrt(x.size(-1)), dim=-1)
        return self.out_proj(w @ self.slots)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.norm1, self.norm2, self.norm3 = RMSNorm(d), RMSNorm(d), RMSNorm(d)
        self.temporal = SimpleGatedMix(d)
        self.reasoning = MultiScaleReasoningBank(d, c["d_reason"], c["n_scales"])
        self.state_gate = HierarchicalStateGate(d, c["d_reason"])
        self.slot_mem = SlotMemoryAttention(d, c["n_slots"])
        self.ffn = MoEFFN(d, c["d_ffn"], c["n_experts"], c["top_k_experts"], c["lb_coeff"])

    def forward(self, x):
        x = x + self.temporal(self.norm1(x))
        h = self.norm2(x)
        x = x + self.reasoning(h) + self.state_gate(h) + self.slot_mem(h)
        return x + self.ffn(self.norm3(x))


class Supernova2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_emb = nn.Embedding(c["vocab_size"], c["d_model"])
        self.pos_emb = nn.Embedding(c["max_seq_len"], c["d_model"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["n_layers"])])
        self.out_norm = RMSNorm(c["d_model"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.token_emb(idx) + self.pos_emb(torch.arange(T))
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.out_norm(x))

    def loss_fn(self, logits, targets):
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return ce + sum(layer.ffn.aux_loss for layer in self.layers)


def build(config):
    return Supernova2(config)
