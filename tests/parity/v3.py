"""FlashLM v3 (prototype notebook) in PyTorch, written from VARIANTS.md §4 (FlashLMv3.ipynb@635ce9c), as
the reference for flashlm's v3 parity test. Module and parameter names follow the notebook's state dict.
The notebook's training-only extras (25 % position subsampling, label smoothing, z-loss) are not part of
the forward pass and are left out here as in flashlm."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("v3",)


class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-8):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return x * x.pow(2).mean(dim=-1, keepdim=True).add(self.eps).rsqrt() * self.scale


class BitLinear(nn.Module):
    """Q0: ±1 where |W| exceeds mean|W|, no rescale; identity STE."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_normal_(self.weight, nonlinearity="linear")

    def forward(self, x):
        w = self.weight
        t = w.abs().mean()
        wt = torch.where(w > t, torch.ones_like(w), torch.zeros_like(w))
        wt = torch.where(w < -t, -torch.ones_like(w), wt)
        return F.linear(x, w + (wt - w).detach())


class CausalConv(nn.Module):
    def __init__(self, d_model, kernel_size=4, dilation=1, groups=16):
        super().__init__()
        self.causal_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, dilation=dilation, groups=groups, bias=False)

    def forward(self, x):
        return self.conv(F.pad(x.transpose(1, 2), (self.causal_pad, 0))).transpose(1, 2)


class ConvMixer(nn.Module):
    def __init__(self, d_model, kernel_size=4, groups=16):
        super().__init__()
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        for d in (1, 4, 64):
            self.layers.append(nn.ModuleDict({
                "conv_gate": CausalConv(d_model, kernel_size, d, groups),
                "conv_value": CausalConv(d_model, kernel_size, d, groups),
            }))
            self.norms.append(RMSNorm(d_model))
        self.out_proj = BitLinear(d_model, d_model)

    def forward(self, x):
        for layer, norm in zip(self.layers, self.norms):
            h = norm(x)
            x = x + torch.sigmoid(layer["conv_gate"](h)) * layer["conv_value"](h)
        return self.out_proj(x)


class TernaryGLU(nn.Module):
    def __init__(self, d_model, inner_dim):
        super().__init__()
        self.gate_proj = BitLinear(d_model, inner_dim)
        self.up_proj = BitLinear(d_model, inner_dim)
        self.down_proj = BitLinear(inner_dim, d_model)

    def forward(self, x):
        return self.down_proj(F.relu(self.gate_proj(x)).square() * self.up_proj(x))


class Router(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.linear = nn.Linear(d_model, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))


class RecursiveBlock(nn.Module):
    def __init__(self, d_model, inner_dim):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.token_mixer = ConvMixer(d_model)
        self.norm2 = RMSNorm(d_model)
        self.glu = TernaryGLU(d_model, inner_dim)
        self.router = Router(d_model)

    def forward(self, x):
        x = x + self.token_mixer(self.norm1(x))
        x = x + self.glu(self.norm2(x))
        return x, self.router(x)


class FlashLMv3(nn.Module):
    TIED = {"lm_head.weight": "embedding.weight"}

    def __init__(self, vocab_size=50257, d_model=256, n_recursions=2, glu_inner_dim=683):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.block = RecursiveBlock(d_model, glu_inner_dim)
        self.final_norm = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight
        self.n_recursions = n_recursions

    def hidden(self, ids):
        """The final-norm output [B, T, D] and a zero that carries the router's (unused) graph."""
        x = self.embedding(ids)
        scores = []
        for _ in range(self.n_recursions):
            x, r = self.block(x)
            scores.append(r)
        # Upstream collects the router scores and never uses them; a zero-weighted term gives the router
        # parameters the zero gradient flashlm reports (instead of None) without changing any number.
        return self.final_norm(x), 0.0 * sum(s.sum() for s in scores)

    def forward(self, ids):
        h, zero = self.hidden(ids)
        return self.lm_head(h) + zero

    def sampled_loss(self, ids, targets, fraction):
        """Upstream's training loss (FlashLMv3.ipynb cell 4): the head and cross-entropy on a random
        max(1, int(B·T·fraction)) of the positions, torch.randperm's first ones."""
        h, zero = self.hidden(ids)
        n = h.shape[0] * h.shape[1]
        idx = torch.randperm(n)[:max(1, int(n * fraction))]
        logits = self.lm_head(h.reshape(n, -1)[idx])
        return F.cross_entropy(logits, targets.reshape(n)[idx]) + zero


def build(config):
    keys = ("vocab_size", "d_model", "n_recursions", "glu_inner_dim")
    return FlashLMv3(**{k: int(config[k]) for k in keys if k in config})
