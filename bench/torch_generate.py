"""The PyTorch peer for batch-1 generation: Bolt with frozen (pre-quantised) ternary weights and per-block
conv buffers, one token at a time (the cached loop), plus the upstream recompute loop (whole window every
token). Prints one JSON line: {"cached_tok_s", "recompute_tok_s", "threads", "cached_tok_s_cpu"} (the last on
process CPU time, for comparisons on a loaded machine).
usage: torch_generate.py [--tokens N] [--threads K] [--recompute-tokens N]"""
import argparse, json, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
from bolt import FlashLMv4  # noqa: E402


def q1(w):
    a = w.abs().mean()
    return (w / (a + 1e-8)).round().clamp(-1, 1) * a


class CachedBolt:
    """Weights quantised once; a ring of the last k-1 conv inputs per block."""

    def __init__(self, m):
        self.emb = m.embedding.weight.detach()
        self.final = m.final_norm.scale.detach()
        self.blocks = []
        for b in m.blocks:
            self.blocks.append(dict(
                n1=b.norm1.scale.detach(), n2=b.norm2.scale.detach(),
                up=q1(b.mixer.up.weight.detach()), down=q1(b.mixer.down.weight.detach()),
                conv=b.mixer.conv.weight.detach()[:, 0, :],  # [D, k]
                gate=q1(b.ffn.W_gate.weight.detach()), upf=q1(b.ffn.W_up.weight.detach()),
                downf=q1(b.ffn.W_down.weight.detach()),
                buf=torch.zeros(b.mixer.conv.weight.shape[0], b.mixer.conv.weight.shape[2])))

    @staticmethod
    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean() + 1e-6) * g

    @torch.no_grad()
    def step(self, tok):
        x = self.emb[tok].clone()
        for b in self.blocks:
            gv = F.linear(self.norm(x, b["n1"]), b["up"])
            g, v = gv.chunk(2)
            b["buf"] = torch.cat([b["buf"][:, 1:], v[:, None]], dim=1)
            h = (b["buf"] * b["conv"]).sum(1)
            x = x + F.linear(h * torch.sigmoid(g), b["down"])
            h = self.norm(x, b["n2"])
            x = x + F.linear(F.silu(F.linear(h, b["gate"])) * F.linear(h, b["upf"]), b["downf"])
        return F.linear(self.norm(x, self.final), self.emb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--recompute-tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = FlashLMv4().eval()
    c = CachedBolt(m)
    g = torch.Generator().manual_seed(0)
    tok = 1
    for _ in range(20):
        c.step(tok)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.tokens):
        z = c.step(tok)
        tok = int(torch.multinomial(torch.softmax(z / 0.8, -1), 1, generator=g))
    cached = a.tokens / (time.perf_counter() - t0)
    cached_cpu = a.tokens / (time.process_time() - c0)  # on a loaded machine: CPU time, as flashlm's cpu_time
    ids = torch.randint(0, 10000, (1, m.seq_len))
    with torch.no_grad():
        m(ids)
        t0 = time.perf_counter()
        for _ in range(a.recompute_tokens):
            z = m(ids)[0, -1]
            ids = torch.cat([ids[:, 1:], torch.multinomial(torch.softmax(z / 0.8, -1), 1, generator=g)[None]], 1)
        recompute = a.recompute_tokens / (time.perf_counter() - t0)
    print(json.dumps({"cached_tok_s": round(cached, 1), "recompute_tok_s": round(recompute, 1), "threads": a.threads,
                      "cached_tok_s_cpu": round(cached_cpu, 1)}))


if __name__ == "__main__":
    main()
