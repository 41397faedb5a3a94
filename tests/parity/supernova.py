"""FlashLM v6 "SUPERNOVA" in PyTorch, written from VARIANTS.md §8.2 (upstream train_v6.py@69d1280), as the
reference for flashlm's parity test. Parameter names follow the upstream state dict.

config["upstream_compat"] selects upstream's planner summary, the mean of r over the whole sequence
(one planner per sequence, non-causal, §16 Q3); otherwise the summary at position t is the running mean
of r_0..r_t and the planner is carried per position."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("supernova",)


class BitLinear(nn.Module):  # Q2: per-output-row absmean, identity STE, no bias
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(o, i))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x):
        a = self.weight.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
        wq = torch.round(self.weight / a).clamp(-1, 1) * a
        return F.linear(x, self.weight + (wq - self.weight).detach())


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def shift(x, k):  # x_{t-k}, zeros before the start
    return F.pad(x, (0, 0, k, 0))[:, : x.size(1)]


class GatedLinearMixer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = RMSNorm(d)
        self.mix = BitLinear(2 * d, d)
        self.gate_proj = BitLinear(d, d)
        self.value_proj = BitLinear(d, d)

    def forward(self, x):
        u = self.norm(x)
        m = self.mix(torch.cat([u, shift(u, 1)], dim=-1))
        return torch.sigmoid(self.gate_proj(u)) * self.value_proj(m)


class TernaryGLU(nn.Module):
    def __init__(self, d, d_ffn):
        super().__init__()
        self.norm = RMSNorm(d)
        self.gate_up = BitLinear(d, 2 * d_ffn)
        self.down = BitLinear(d_ffn, d)

    def forward(self, x):
        a, b = self.gate_up(self.norm(x)).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


class MultiScaleLinearBank(nn.Module):
    def __init__(self, r, n_scales):
        super().__init__()
        self.norm = RMSNorm(r)
        self.scales = nn.ModuleList(BitLinear(2 * r, r) for _ in range(n_scales))
        self.router = nn.Linear(r, n_scales, bias=False)

    def forward(self, x):
        u = self.norm(x)
        w = F.softmax(self.router(u), dim=-1)
        out = 0
        for i, s in enumerate(self.scales):
            out = out + w[..., i : i + 1] * s(torch.cat([u, shift(u, 2 ** i)], dim=-1))
        return out


class HierarchicalStateGate(nn.Module):
    def __init__(self, r, p, compat):
        super().__init__()
        self.planner_to_gate = BitLinear(p, r)
        self.executor_to_planner = BitLinear(r, p)
        self.planner_update = BitLinear(p, p)
        self.norm = RMSNorm(p)
        self.compat = compat

    def forward(self, r, P):
        gated = r * torch.sigmoid(self.planner_to_gate(P))
        if self.compat:
            summary = r.mean(dim=1, keepdim=True)
        else:
            n = torch.arange(1, r.size(1) + 1, dtype=r.dtype).view(1, -1, 1)
            summary = torch.cumsum(r, dim=1) / n
        P = P + self.planner_update(self.norm(P + self.executor_to_planner(summary)))
        return gated, P


class SlotMemoryAttention(nn.Module):
    def __init__(self, r, n_slots):
        super().__init__()
        self.slots = nn.Parameter(torch.randn(n_slots, r) * 0.01)
        self.query_proj = BitLinear(r, r)
        self.mix_gate = BitLinear(2 * r, r)

    def forward(self, x):
        a = F.softmax(self.query_proj(x) @ self.slots.t() / x.size(-1) ** 0.5, dim=-1)
        return self.mix_gate(torch.cat([x, a @ self.slots], dim=-1))


class PRCSM(nn.Module):
    def __init__(self, d, r, p, n_scales, n_slots, compat):
        super().__init__()
        self.down_proj = BitLinear(d, r)
        self.conv_bank = MultiScaleLinearBank(r, n_scales)
        self.state_gate = HierarchicalStateGate(r, p, compat)
        self.memory = SlotMemoryAttention(r, n_slots)
        self.up_proj = BitLinear(r, d)
        self.res_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x, P):
        r = self.down_proj(x)
        r = r + self.conv_bank(r)
        r, P = self.state_gate(r, P)
        r = r + self.memory(r)
        return x + torch.sigmoid(self.res_gate) * self.up_proj(r), P


class Block(nn.Module):
    def __init__(self, c, compat):
        super().__init__()
        d = c["d_model"]
        self.token_mix = GatedLinearMixer(d)
        self.reasoning = PRCSM(d, c["d_reason"], c["d_planner"], c["n_scales"], c["n_mem_slots"], compat)
        self.channel_mix = TernaryGLU(d, d * c["d_ffn_mult"])

    def forward(self, x, P):
        x = x + self.token_mix(x)
        x, P = self.reasoning(x, P)
        return x + self.channel_mix(x), P


class Supernova(nn.Module):
    def __init__(self, c, compat):
        super().__init__()
        d = c["d_model"]
        self.embed = nn.Embedding(c["vocab_size"], d)
        self.embed_scale = d ** -0.5
        self.blocks = nn.ModuleList(Block(c, compat) for _ in range(c["n_layers"]))
        self.ln_out = RMSNorm(d)
        self.head = BitLinear(d, c["vocab_size"])
        self.planner_init = nn.Parameter(torch.randn(1, 1, c["d_planner"]) * 0.01)
        self.compat = compat

    def forward(self, ids):
        B, T = ids.shape
        h = self.embed(ids) * self.embed_scale
        P = self.planner_init.expand(B, 1 if self.compat else T, -1)
        for b in self.blocks:
            h, P = b(h, P)
        # The last block's planner update feeds nothing, so torch would leave those three tensors without
        # a gradient; + 0·ΣP gives them the zero gradient flashlm reports.
        return self.head(self.ln_out(h)) + 0.0 * P.sum()


def build(config):
    c = dict(vocab_size=4096, d_model=192, n_layers=6, d_ffn_mult=2, n_scales=2, d_reason=64, n_mem_slots=8,
             d_planner=32)
    for k in c:
        if k in config:
            c[k] = int(config[k])
    return Supernova(c, bool(config.get("upstream_compat", False)))
