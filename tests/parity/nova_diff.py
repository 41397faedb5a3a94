"""FlashLM v5.2 "Nova-Ignition" as announced in PyTorch, written from VARIANTS.md §7.1 (upstream
train_v52.py@ef9d7b8 ... @17ecef3, causal mask from d2d1f9f), as the reference for flashlm's parity test.
Parameter names follow the upstream state dict.

Differential attention with QK LayerNorm over the full 2*H*d width, one scalar
lambda = clamp(exp(mean(lambda_q) - mean(lambda_k)), 0.1, 2.0) per layer; soft Mixture-of-Depths
sigma(router(x)) on the attention output of layers >= mod_start; IgnitionMoE = LayerNorm, shared
B2(SiLU(B1 h)) + top-1 routed expert times its softmax probability; mu-P embedding scale; untied
BitLinear-Q2 head after a final LayerNorm.

config["upstream_compat"]: upstream applies the MoD weight only in train() mode; flashlm's default
applies it always. The parity harness runs this module in train() mode, where both agree."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("nova-diff",)


class BitLinear(nn.Module):  # Q2: per-output-row absmean, identity STE
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(o, i))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="linear")

    def forward(self, x):
        scale = self.weight.abs().mean(dim=1, keepdim=True).clamp(min=1e-5)
        w_q = torch.round(self.weight / scale).clamp(-1, 1)
        return F.linear(x, self.weight + (w_q * scale - self.weight).detach())


def expert(d, f):
    return nn.Sequential(BitLinear(d, f), nn.SiLU(), BitLinear(f, d))


class DiffAttention(nn.Module):
    def __init__(self, d, h, dh):
        super().__init__()
        self.h, self.dh = h, dh
        w = h * dh
        self.W_q, self.W_k = BitLinear(d, 2 * w), BitLinear(d, 2 * w)
        self.W_v, self.W_o = BitLinear(d, w), BitLinear(w, d)
        self.lambda_q = nn.Parameter(torch.randn(h, dh) * 0.1)
        self.lambda_k = nn.Parameter(torch.randn(h, dh) * 0.1)
        self.q_norm, self.k_norm = nn.LayerNorm(2 * w), nn.LayerNorm(2 * w)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q_norm(self.W_q(x)).view(B, T, 2, self.h, self.dh)
        k = self.k_norm(self.W_k(x)).view(B, T, 2, self.h, self.dh)
        v = self.W_v(x).view(B, T, self.h, self.dh).transpose(1, 2)
        lam = torch.exp(self.lambda_q.mean() - self.lambda_k.mean()).clamp(0.1, 2.0)
        mask = torch.tril(torch.ones(T, T))
        outs = []
        for b in range(2):
            s = torch.matmul(q[:, :, b].transpose(1, 2), k[:, :, b].transpose(1, 2).transpose(-1, -2)) * self.dh ** -0.5
            s = s.masked_fill(mask == 0, float("-inf"))
            outs.append(torch.matmul(F.softmax(s, dim=-1), v))
        out = (outs[0] - lam * outs[1]).transpose(1, 2).reshape(B, T, -1)
        return self.W_o(out)


class MoDRouter(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.router = nn.Linear(d, 1, bias=False)

    def forward(self, x):
        return torch.sigmoid(self.router(x))


class IgnitionMoE(nn.Module):
    def __init__(self, d, f, n_experts):
        super().__init__()
        self.shared_expert = expert(d, f)
        self.experts = nn.ModuleList(expert(d, f) for _ in range(n_experts))
        self.router = nn.Linear(d, n_experts, bias=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        h = self.norm(x)
        out = self.shared_expert(h)
        probs = F.softmax(self.router(h), dim=-1)
        p, idx = probs.topk(1, dim=-1)
        p, idx = p.squeeze(-1), idx.squeeze(-1)
        routed = torch.zeros_like(out)
        for e, ex in enumerate(self.experts):
            m = idx == e
            if m.any():
                routed[m] = ex(h[m]) * p[m].unsqueeze(-1)
            else:  # an idle expert still gets a (zero) .grad, which the parity harness reads
                routed = routed + 0.0 * sum(w.sum() for w in ex.parameters())
        return out + routed


class Block(nn.Module):
    def __init__(self, d, h, dh, f, n_experts, use_mod, compat):
        super().__init__()
        if use_mod:
            self.mod_router = MoDRouter(d)
        self.use_mod, self.compat = use_mod, compat
        self.attn = DiffAttention(d, h, dh)
        self.attn_norm = nn.LayerNorm(d)
        self.ffn = IgnitionMoE(d, f, n_experts)
        self.ffn_norm = nn.LayerNorm(d)

    def forward(self, x):
        a = self.attn(self.attn_norm(x))
        if self.use_mod and (self.training or not self.compat):
            a = a * self.mod_router(x)
        x = x + a
        return x + self.ffn(self.ffn_norm(x))


class NovaDiff(nn.Module):
    def __init__(self, vocab_size=5120, d_model=288, n_layers=12, n_heads=6, d_head=48, expert_dim=576, n_experts=6,
                 mod_start=2, upstream_compat=False):
        super().__init__()
        self.d = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_head, expert_dim, n_experts, i >= mod_start, upstream_compat) for i in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = BitLinear(d_model, vocab_size)

    def forward(self, ids):
        h = self.embed(ids) * self.d ** -0.5
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_out(h))


def build(config):
    ints = ("vocab_size", "d_model", "n_layers", "n_heads", "d_head", "expert_dim", "n_experts", "mod_start")
    kw = {k: int(config[k]) for k in ints if k in config}
    kw["upstream_compat"] = bool(config.get("upstream_compat", False))
    return NovaDiff(**kw)


if __name__ == "__main__":  # parameter count of the announced config (VARIANTS.md: 36,869,760)
    m = NovaDiff()
    print(sum(p.numel() for p in m.parameters()))
