"""FlashLM v6.1 "SUPERNOVA II", C-engine version, in PyTorch, written from VARIANTS.md §8.4 and §2 Q4
(upstream train_v61.py@d352187 + ternary_engine.c@5b5d366), as the reference for flashlm's parity test.

Per token (no token mixing): x = embed[tok]; per layer u = RMSNorm(x; gamma_l), h = SiLU(Q4(u, W_up_l)),
x = x + Q4(h, W_down_l); logits = x embedᵀ. Q4(a, W) = (t(a)·s_a)(t(W)·s_W)ᵀ with t(W) = ±1 where
|W/s_W| > 0.5, s_W = mean|W| + 1e-8, t(a) = sign(a)·[|a| > 0.6745·mean_k|a|] per row.
Gradients: identity STE on both operands (a + (ã − a).detach()). config["upstream_compat"]: s_a is
mean|A| + 1e-8 over the whole input tensor and the weight gradient is t(a)ᵀ·dy (upstream's hand-written
backward, which omits s_a); otherwise s_a = mean_k|a_i| + 1e-8 per row."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("supernova2-engine",)


def ternary_weight(w):
    s = w.abs().mean() + 1e-8
    q = w / s
    return (q > 0.5).to(w.dtype) - (q < -0.5).to(w.dtype), s


def ternary_act(a):
    mean = a.abs().mean(-1, keepdim=True)
    t = torch.sign(a) * (a.abs() > 0.6745 * mean).to(a.dtype)
    return t, mean


class UpstreamQ4(torch.autograd.Function):
    """Upstream's backward: da = dy·(s_W t(W)), dW = t(a)ᵀ·dy (activation scale omitted)."""

    @staticmethod
    def forward(ctx, a, w):
        t, _ = ternary_act(a)
        tw, sw = ternary_weight(w)
        sa = a.abs().mean() + 1e-8
        ctx.save_for_backward(t, tw * sw)
        return (t * sa) @ (tw * sw).t()

    @staticmethod
    def backward(ctx, g):
        t, wq = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        return g @ wq, g2.t() @ t.reshape(-1, t.shape[-1])


def q4(a, w, compat):
    if compat:
        return UpstreamQ4.apply(a, w)
    t, mean = ternary_act(a)
    tw, sw = ternary_weight(w)
    a_q = a + (t * (mean + 1e-8) - a).detach()
    w_q = w + (tw * sw - w).detach()
    return a_q @ w_q.t()


class Supernova2Engine(nn.Module):
    def __init__(self, vocab_size=1024, d_model=192, d_ffn=384, n_layers=6, upstream_compat=False):
        super().__init__()
        self.n_layers, self.compat = n_layers, upstream_compat
        self.embed = nn.Parameter(torch.randn(vocab_size, d_model) * 0.02)
        for l in range(n_layers):
            self.register_parameter(f"gamma_{l}", nn.Parameter(torch.ones(d_model)))
            self.register_parameter(f"W_up_{l}", nn.Parameter(torch.randn(d_ffn, d_model) / math.sqrt(d_model)))
            self.register_parameter(f"W_down_{l}", nn.Parameter(torch.randn(d_model, d_ffn) / math.sqrt(d_ffn)))

    def forward(self, ids):
        x = self.embed[ids]
        for l in range(self.n_layers):
            g = getattr(self, f"gamma_{l}")
            u = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g
            h = F.silu(q4(u, getattr(self, f"W_up_{l}"), self.compat))
            x = x + q4(h, getattr(self, f"W_down_{l}"), self.compat)
        return x @ self.embed.t()


def build(config):
    return Supernova2Engine(config.get("vocab_size", 1024), config.get("d_model", 192), config.get("d_ffn", 384),
                            config.get("n_layers", 6), bool(config.get("upstream_compat", False)))
