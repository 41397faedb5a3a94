"""PyTorch side of bench/compare_pytorch.sh: times Bolt training steps (forward, cross-entropy, backward,
clip_grad_norm 1.0, AdamW lr 4e-3 betas (0.9, 0.95) wd 0.01) on random tokens and prints one JSON line
in the format of bench_train_step_cli: tok_s, peak_rss_mb and minflt_per_step of this process alone.

usage: torch_train_step.py [--batch 16] [--seq 256] [--threads 1] [--steps 5] [--warmup 2] [--blas-probe]

Run it with OpenBLAS selected (Debian's torch otherwise uses the reference BLAS); see compare_pytorch.sh.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
from bolt import FlashLMv4  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--blas-probe", action="store_true",
                    help="run one GEMM and exit (with OPENBLAS_VERBOSE=2 OpenBLAS names its kernel)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    if a.blas_probe:
        x = torch.randn(256, 256)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, sum {float((x @ x).sum()):.3f}")
        return

    torch.manual_seed(42)
    model = FlashLMv4(seq_len=max(256, a.seq)).float()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, betas=(0.9, 0.95), weight_decay=0.01)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 10000, (a.batch, a.seq), generator=g)
    targets = torch.randint(0, 10000, (a.batch, a.seq), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss)

    for _ in range(a.warmup):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "impl": "pytorch", "batch": a.batch, "seq": a.seq, "threads": a.threads, "steps": a.steps,
        "tok_s": round(a.batch * a.seq * a.steps / elapsed, 1),
        "step_ms": round(1e3 * elapsed / a.steps, 2),
        "peak_rss_mb": round(r1.ru_maxrss / 1024.0, 1),  # Linux: KiB
        "minflt_per_step": round((r1.ru_minflt - r0.ru_minflt) / a.steps, 1),
        # CPU seconds per wall second: near `threads` on an idle machine, lower when the cores are shared.
        "cpu_util": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / elapsed, 2),
        "loss": round(loss, 5),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
