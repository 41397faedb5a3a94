"""altpav "TeenyLM" (Bolt with blockwise quantisation and RMSNorm inside every BitLinear) in PyTorch,
written from VARIANTS.md §11.1 and §2 (quantizer Q5; fork A:trainv4.py@036e90d), as the reference for
flashlm's bolt-blockwise parity test. Module and parameter names follow the fork's state dict."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("bolt-blockwise",)
BLOCK = 256


def quantize_q5(w):
    """Q5: row-major flatten, zero-pad to a multiple of 256, per-block absmean ternary; ≤256 elements → Q1."""
    if w.numel() <= BLOCK:
        alpha = w.abs().mean()
        return (w / (alpha + 1e-8)).round().clamp(-1, 1) * alpha
    flat = w.flatten()
    n = flat.numel()
    nb = (n + BLOCK - 1) // BLOCK
    blocks = F.pad(flat, (0, nb * BLOCK - n)).view(nb, BLOCK)
    alpha = blocks.abs().mean(dim=1, keepdim=True)  # padding zeros count in the last block's mean
    wq = (blocks / (alpha + 1e-8)).round().clamp(-1, 1) * alpha
    return wq.flatten()[:n].view_as(w)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class BitLinear(nn.Module):
    """Linear_Q5(RMSNorm(x)); identity STE on the weight."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.norm = RMSNorm(in_features)

    def forward(self, x):
        w = self.weight
        return F.linear(self.norm(x), w + (quantize_q5(w) - w).detach())


class GatedConvMixer(nn.Module):
    def __init__(self, dim, kernel_size):
        super().__init__()
        self.up = BitLinear(dim, 2 * dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size - 1, groups=dim, bias=False)
        self.down = BitLinear(dim, dim)

    def forward(self, x):
        T = x.shape[1]
        gate, val = self.up(x).chunk(2, dim=-1)
        h = self.conv(val.transpose(1, 2))[..., :T].transpose(1, 2)
        return self.down(h * torch.sigmoid(gate))


class TernaryGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.W_gate = BitLinear(dim, hidden)
        self.W_up = BitLinear(dim, hidden)
        self.W_down = BitLinear(hidden, dim)

    def forward(self, x):
        return self.W_down(F.silu(self.W_gate(x)) * self.W_up(x))


class ImliBlock(nn.Module):
    """No block-level norms: each BitLinear normalises its own input."""

    def __init__(self, dim, kernel_size, glu_hidden):
        super().__init__()
        self.mixer = GatedConvMixer(dim, kernel_size)
        self.ffn = TernaryGLU(dim, glu_hidden)

    def forward(self, x):
        x = x + self.mixer(x)
        return x + self.ffn(x)


class TeenyLM(nn.Module):
    def __init__(self, vocab_size=10000, dim=192, n_blocks=6, kernel_size=8, glu_hidden=512):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(ImliBlock(dim, kernel_size, glu_hidden) for _ in range(n_blocks))
        self.final_norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, ids):
        x = self.embedding(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.final_norm(x))


def build(config):
    assert config.get("quantizer") == "blockwise" and config.get("inner_norm") is True, config
    keys = ("vocab_size", "dim", "n_blocks", "kernel_size", "glu_hidden")
    return TeenyLM(**{k: int(config[k]) for k in keys if k in config})
