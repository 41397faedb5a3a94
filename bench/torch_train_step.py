"""PyTorch side of bench/compare_pytorch.sh: times training steps (forward, the variant's loss, backward,
clip_grad_norm, the recipe's optimizer: AdamW, or SGD with momentum for supernova2-engine) of a variant's
PyTorch definition in tests/parity/ on random tokens and prints one JSON line in the format of
bench_train_step_cli: tok_s, peak_rss_mb and minflt_per_step of this process alone.

usage: torch_train_step.py [--spec FILE] [--init FILE] [--batch 16] [--seq 256] [--threads 1] [--steps 5]
                           [--warmup 2] [--impl NAME] [--pos-fraction F] [--blas-probe]
  --spec: the JSON `bench_train_step_cli --model NAME --print-config` prints (model, config, recipe), so
          both sides build the same model; without it, Bolt small with its recipe.
  --init: the safetensors `bench_train_step_cli --save-init FILE` writes (same model, batch and seq): start
          from flashlm's initial weights and train on its ids and targets, so the two losses compare;
          without it, torch's own init and random tokens.
  --pos-fraction: the loss on this random share of the positions (default: the spec recipe's
          pos_fraction, 1 where it has none; v3's recipe has 0.25), through the model's sampled_loss.

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
import safetensors_np  # noqa: E402
from run_parity import MODELS, load_weights  # noqa: E402

# Variants that are another variant's definition at a different config (the config comes with the spec).
PYTORCH_DEFINITION = {"bolt-large": "bolt"}

BOLT_SPEC = {"model": "bolt",
             "config": {"vocab_size": 10000, "dim": 192, "n_blocks": 6, "kernel_size": 8, "glu_hidden": 512},
             "recipe": {"lr": 4e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.01, "clip": 1.0}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", help="model, config and recipe as printed by bench_train_step_cli --print-config")
    ap.add_argument("--init", help="initial weights, ids and targets written by bench_train_step_cli --save-init")
    ap.add_argument("--label", help="model name to print (default: the spec's)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--impl", default="pytorch", help="name to print in the impl field (compare_pytorch.sh "
                    "tells its two PyTorch runs apart by it)")
    ap.add_argument("--pos-fraction", type=float, help="share of positions the loss uses (default: the recipe's)")
    ap.add_argument("--blas-probe", action="store_true",
                    help="run one GEMM and exit (with OPENBLAS_VERBOSE=2 OpenBLAS names its kernel)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    if a.blas_probe:
        x = torch.randn(256, 256)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, sum {float((x @ x).sum()):.3f}")
        return

    spec = BOLT_SPEC
    if a.spec:
        with open(a.spec) as f:
            spec = json.load(f)
    config = dict(spec["config"])
    config["seq_len"] = max(config.get("seq_len", a.seq), a.seq)
    rc = spec["recipe"]
    torch.manual_seed(42)
    name = PYTORCH_DEFINITION.get(spec["model"], spec["model"])
    if name not in MODELS:
        sys.exit(f"torch_train_step.py: no PyTorch definition of {spec['model']} in tests/parity/")
    model = MODELS[name](config).float()
    init = None
    if a.init:
        tensors, meta = safetensors_np.read(a.init)
        ids_np, targets_np = tensors.pop("ids"), tensors.pop("targets")
        if ids_np.shape != (a.batch, a.seq) or targets_np.shape != (a.batch, a.seq):
            sys.exit(f"torch_train_step.py: {a.init} holds a batch of {ids_np.shape}, not ({a.batch}, {a.seq})")
        if meta.get("model") != spec["model"]:
            sys.exit(f"torch_train_step.py: {a.init} is for {meta.get('model')}, not {spec['model']}")
        load_weights(model, tensors)
        init = (torch.from_numpy(ids_np.astype("int64")), torch.from_numpy(targets_np.astype("int64")))
    model.train()
    optimizer = rc.get("optimizer", "adamw")
    if optimizer == "sgd":  # supernova2-engine's C-engine recipe; flashlm's optim/sgd.hpp follows torch's SGD
        opt = torch.optim.SGD(model.parameters(), lr=rc["lr"], momentum=rc["momentum"],
                              weight_decay=rc["weight_decay"])
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=rc["lr"], betas=(rc["beta1"], rc["beta2"]), eps=rc["eps"],
                                weight_decay=rc["weight_decay"])
    else:
        sys.exit(f"torch_train_step.py: unknown optimizer '{optimizer}' in the recipe")
    vocab = config["vocab_size"]
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab, (a.batch, a.seq), generator=g)
    targets = torch.randint(0, vocab, (a.batch, a.seq), generator=g)
    if init:
        ids, targets = init
    loss_fn = getattr(model, "loss_fn", None) or (
        lambda logits, t: F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1)))
    pos_fraction = a.pos_fraction if a.pos_fraction is not None else rc.get("pos_fraction", 1.0)
    if pos_fraction != 1.0 and not hasattr(model, "sampled_loss"):
        sys.exit(f"torch_train_step.py: {spec['model']} has no sampled_loss for --pos-fraction")

    def step():
        opt.zero_grad(set_to_none=True)
        if pos_fraction != 1.0:
            loss = model.sampled_loss(ids, targets, pos_fraction)
        else:
            loss = loss_fn(model(ids), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), rc["clip"])
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
        "impl": a.impl, "model": a.label or spec["model"], "batch": a.batch, "seq": a.seq, "threads": a.threads, "steps": a.steps,
        "tok_s": round(a.batch * a.seq * a.steps / elapsed, 1),
        "step_ms": round(1e3 * elapsed / a.steps, 2),
        "peak_rss_mb": round(r1.ru_maxrss / 1024.0, 1),  # Linux: KiB
        "minflt_per_step": round((r1.ru_minflt - r0.ru_minflt) / a.steps, 1),
        # CPU seconds per wall second: near `threads` on an idle machine, lower when the cores are shared.
        "cpu_util": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / elapsed, 2),
        "loss": round(loss, 5),
        "pos_fraction": pos_fraction,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
