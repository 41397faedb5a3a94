"""FlashLM v4 "Bolt" in PyTorch, written from VARIANTS.md §5 (upstream train.py@43d43e4), as the
reference for flashlm's parity test. Module and parameter names follow the upstream state dict."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BitLinear(nn.Module):
    """Linear with Q1 absmean ternary weights; the STE makes dL/dW the gradient of a plain linear."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x):
        w = self.weight
        alpha = w.abs().mean()
        wq = (w / (alpha + 1e-8)).round().clamp(-1, 1) * alpha
        return F.linear(x, w + (wq - w).detach())


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class GatedConvMixer(nn.Module):
    def __init__(self, dim, kernel_size):
        super().__init__()
        self.up = BitLinear(dim, 2 * dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size - 1, groups=dim, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out")
        self.down = BitLinear(dim, dim)

    def forward(self, x):
        T = x.shape[1]
        gate, val = self.up(x).chunk(2, dim=-1)
        h = self.conv(val.transpose(1, 2))[..., :T].transpose(1, 2)  # causal: keep the first T outputs
        return self.down(h * torch.sigmoid(gate))


class TernaryGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.W_gate = BitLinear(dim, hidden)
        self.W_up = BitLinear(dim, hidden)
        self.W_down = BitLinear(hidden, dim)

    def forward(self, x):
        return self.W_down(F.silu(self.W_gate(x)) * self.W_up(x))


class BoltBlock(nn.Module):
    def __init__(self, dim, kernel_size, glu_hidden):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.mixer = GatedConvMixer(dim, kernel_size)
        self.norm2 = RMSNorm(dim)
        self.ffn = TernaryGLU(dim, glu_hidden)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class FlashLMv4(nn.Module):
    def __init__(self, vocab_size=10000, dim=192, n_blocks=6, kernel_size=8, glu_hidden=512, seq_len=256):
        super().__init__()
        self.seq_len = seq_len
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(BoltBlock(dim, kernel_size, glu_hidden) for _ in range(n_blocks))
        self.final_norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embedding.weight  # tied: the head's gradient lands in embedding.weight

    def forward(self, ids):
        x = self.embedding(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.final_norm(x))


def build(config):
    keys = ("vocab_size", "dim", "n_blocks", "kernel_size", "glu_hidden", "seq_len")
    return FlashLMv4(**{k: int(config[k]) for k in keys if k in config})
