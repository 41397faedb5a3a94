"""FlashLM v5.2 "Nova-Ignition" as shipped in PyTorch, written from VARIANTS.md §7.3 (upstream
train_v52.py@03ccd85), as the reference for flashlm's parity test. Parameter names follow the upstream
state dict, buffers included: the RoPE inverse frequencies are the persistent float32 buffer
blocks.{i}.attn.rotary.inv_freq as upstream, so a state dict without them fails load_state_dict(strict=True)
as it would upstream. The angles come from a float64 copy (not a buffer, so .float() leaves it alone).

Dropout is nn.Dropout as upstream; the parity test sets config["dropout"] = 0, because flashlm's masks
come from its own hash and cannot match torch's generator."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("nova",)


class RotaryEmbedding(nn.Module):
    def __init__(self, dim, base=10000):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).double() / dim))
        self.register_buffer("inv_freq", inv_freq.float())
        self.inv_freq64 = inv_freq

    def forward(self, seq_len, dtype):
        # Angles in double, then rounded (flashlm does the same); upstream forms them in float32.
        t = torch.arange(seq_len, dtype=torch.float64)
        freqs = torch.einsum("i,j->ij", t, self.inv_freq64)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def linear(i, o):
    return nn.Linear(i, o, bias=False)


class Attention(nn.Module):
    def __init__(self, d_model, n_heads, d_head, dropout):
        super().__init__()
        self.n_heads, self.d_head, self.scale = n_heads, d_head, d_head ** -0.5
        self.qkv = linear(d_model, 3 * n_heads * d_head)
        self.out = linear(n_heads * d_head, d_model)
        self.dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(d_head)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        v = v.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        cos, sin = self.rotary(T, x.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(mask, float("-inf"))
        attn = self.dropout(F.softmax(scores, dim=-1))
        out = torch.matmul(attn, v).transpose(1, 2).reshape(B, T, -1)
        return self.out(out)


class FFN(nn.Module):
    def __init__(self, d_model, d_ffn, dropout):
        super().__init__()
        self.up = linear(d_model, 2 * d_ffn)
        self.down = linear(d_ffn, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h1, h2 = self.up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.gelu(h1) * h2))


class Block(nn.Module):
    def __init__(self, d_model, n_heads, d_head, d_ffn, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, d_head, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Nova(nn.Module):
    TIED = {"head.weight": "embed.weight"}

    def __init__(self, vocab_size=4096, d_model=256, n_layers=6, n_heads=4, d_head=64, d_ffn=512, dropout=0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_head, d_ffn, dropout) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = linear(d_model, vocab_size)
        self.head.weight = self.embed.weight  # tied

    def forward(self, ids):
        h = self.dropout(self.embed(ids))
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_out(h))


def build(config):
    ints = ("vocab_size", "d_model", "n_layers", "n_heads", "d_head", "d_ffn")
    kw = {k: int(config[k]) for k in ints if k in config}
    kw["dropout"] = float(config.get("dropout", 0.1))
    return Nova(**kw)


if __name__ == "__main__":  # parameter count of the shipped config
    m = Nova()
    print(sum(p.numel() for p in m.parameters()))
