"""altpav fork "TeenyLM Delta" (flashlm --model bolt-deltanet) in PyTorch, written from VARIANTS.md §11.2
(A:trainv4_gdn.py@8456f4d), as the reference for flashlm's parity test. Module and parameter names follow
the upstream state dict; the recurrence is the fork's naive per-token loop.

config["upstream_compat"] selects the fork's arithmetic, which predicts v_t from the undecayed state
(S^T k); otherwise the prediction uses the decayed state (a_t S^T k), the published gated delta rule."""
import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = ("bolt-deltanet", "bolt-deltanet-large")


class BitLinear(nn.Module):  # Q1: per-tensor absmean, identity STE
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * 0.02)

    def forward(self, x):
        w = self.weight
        alpha = w.abs().mean()
        w_t = (w / (alpha + 1e-8)).round().clamp(-1, 1) * alpha
        return F.linear(x, w + (w_t - w).detach())


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class ShortConvolution(nn.Module):
    def __init__(self, dim, kernel_size=4):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(dim, 1, kernel_size) * 0.02)

    def forward(self, x):
        T, D = x.shape[1], x.shape[2]
        xp = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
        return F.conv1d(xp, self.weight, groups=D)[:, :, :T].transpose(1, 2)


class GatedDeltaNet(nn.Module):
    def __init__(self, dim, num_heads, expand_k, expand_v, conv_size, compat):
        super().__init__()
        self.num_heads, self.compat = num_heads, compat
        self.key_dim, self.value_dim = int(dim * expand_k), int(dim * expand_v)
        self.head_qk_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.q_proj = BitLinear(dim, self.key_dim)
        self.k_proj = BitLinear(dim, self.key_dim)
        self.v_proj = BitLinear(dim, self.value_dim)
        self.g_proj = BitLinear(dim, self.value_dim)
        self.q_conv = ShortConvolution(self.key_dim, conv_size)
        self.k_conv = ShortConvolution(self.key_dim, conv_size)
        self.v_conv = ShortConvolution(self.value_dim, conv_size)
        self.gk_proj = BitLinear(dim, num_heads)
        self.beta_proj = BitLinear(dim, num_heads)
        self.o_proj = BitLinear(self.value_dim, dim)

    def forward(self, x):
        B, T, _ = x.shape
        H = self.num_heads
        q = F.silu(self.q_conv(self.q_proj(x)))
        k = F.silu(self.k_conv(self.k_proj(x)))
        v = F.silu(self.v_conv(self.v_proj(x)))
        gk = F.logsigmoid(self.gk_proj(x)) / 16
        beta = torch.sigmoid(self.beta_proj(x))
        q = F.normalize(q.view(B, T, H, self.head_qk_dim).transpose(1, 2), dim=-1)
        k = F.normalize(k.view(B, T, H, self.head_qk_dim).transpose(1, 2), dim=-1)
        v = v.view(B, T, H, self.head_v_dim).transpose(1, 2)
        gk = gk.transpose(1, 2).unsqueeze(-1)
        beta = beta.transpose(1, 2).unsqueeze(-1)
        S = torch.zeros(B, H, self.head_qk_dim, self.head_v_dim, dtype=x.dtype)
        outputs = []
        for t in range(T):
            q_t, k_t, v_t = q[:, :, t], k[:, :, t], v[:, :, t]
            decay = torch.exp(gk[:, :, t]).unsqueeze(-1)
            Sk = torch.einsum("bhdk,bhd->bhk", S, k_t)
            if not self.compat:
                Sk = Sk * decay.squeeze(-1)
            delta = v_t - Sk
            S = decay * S + beta[:, :, t].unsqueeze(-1) * torch.einsum("bhd,bhk->bhdk", k_t, delta)
            outputs.append(torch.einsum("bhd,bhdk->bhk", q_t, S))
        o = torch.stack(outputs, dim=2).transpose(1, 2).contiguous().view(B, T, self.value_dim)
        return self.o_proj(o * torch.sigmoid(self.g_proj(x)))


class TernaryGLU(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.W_gate = BitLinear(dim, hidden)
        self.W_up = BitLinear(dim, hidden)
        self.W_down = BitLinear(hidden, dim)

    def forward(self, x):
        return self.W_down(F.silu(self.W_gate(x)) * self.W_up(x))


class ImliBlock(nn.Module):
    def __init__(self, dim, num_heads, glu_hidden, expand_k, expand_v, conv_size, compat):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.mixer = GatedDeltaNet(dim, num_heads, expand_k, expand_v, conv_size, compat)
        self.norm2 = RMSNorm(dim)
        self.ffn = TernaryGLU(dim, glu_hidden)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TeenyLM(nn.Module):
    def __init__(self, vocab_size=10000, dim=192, n_blocks=6, num_heads=4, glu_hidden=512, expand_k=0.75,
                 expand_v=1.5, conv_size=4, upstream_compat=False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(
            ImliBlock(dim, num_heads, glu_hidden, expand_k, expand_v, conv_size, upstream_compat)
            for _ in range(n_blocks))
        self.final_norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embedding.weight

    def forward(self, ids):
        h = self.embedding(ids)
        for block in self.blocks:
            h = block(h)
        return self.head(self.final_norm(h))


def build(config):
    kw = {k: int(config[k]) for k in ("vocab_size", "dim", "n_blocks", "num_heads", "glu_hidden", "conv_size")
          if k in config}
    for k in ("expand_k", "expand_v"):
        if k in config:
            kw[k] = float(config[k])
    kw["upstream_compat"] = bool(config.get("upstream_compat", False))
    return TeenyLM(**kw)
