"""Round trip of flashlm weights through PyTorch, for tests/cli/test_import_export.sh and tests/test_import.cpp.

  roundtrip.py models
      the variants run_parity.py knows (one per line)
  roundtrip.py save --model NAME --in EXPORTED.safetensors --out-dir DIR [--ids IDS.safetensors]
      loads `flashlm export`'s file into the PyTorch definition with load_state_dict(strict=True) and
      torch.saves its state_dict() as DIR/bare.pt (F32), DIR/wrapped.pt ({"model_state_dict", "config"}),
      DIR/f16.pt ({"model_state": F16}) and DIR/bf16.pt (BF16); with --ids (int32 `ids` [B, T]) also
      DIR/logits.safetensors: `f32`, `f16`, `bf16` = the float32 model's logits with those weights.
  roundtrip.py same A.safetensors B.pt [A2 B2 ...]
      exit 0 iff every tensor of each state dict A equals B's (B's cast to float32), names included.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_parity  # noqa: E402
import safetensors_np  # noqa: E402

CASTS = {"f16": torch.float16, "bf16": torch.bfloat16}


def load_exported(name, path):
    tensors, meta = safetensors_np.read(path)
    config = json.loads(meta["config"])
    model = run_parity.MODELS[name](config).float()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}, strict=True)
    return model, config


def cmd_save(a):
    torch.set_num_threads(1)
    model, config = load_exported(a.model, a.inp)
    os.makedirs(a.out_dir, exist_ok=True)
    sd = model.state_dict()
    torch.save(sd, os.path.join(a.out_dir, "bare.pt"))
    torch.save({"model_state_dict": sd, "config": config, "step": 0}, os.path.join(a.out_dir, "wrapped.pt"))
    # Weights cast, upstream's buffers (constants flashlm computes and exports as F32) kept F32, so that
    # the re-export of an F16/BF16 import equals these files tensor for tensor.
    bufs = {n for n, _ in model.named_buffers()}
    torch.save({"model_state": {k: v if k in bufs else v.half() for k, v in sd.items()}}, os.path.join(a.out_dir, "f16.pt"))
    torch.save({k: v if k in bufs else v.bfloat16() for k, v in sd.items()}, os.path.join(a.out_dir, "bf16.pt"))
    if a.ids:
        ids = torch.from_numpy(safetensors_np.read(a.ids)[0]["ids"].astype(np.int64))
        out = {}
        with torch.no_grad():
            out["f32"] = model(ids).numpy()
            for tag, dt in CASTS.items():
                m, _ = load_exported(a.model, a.inp)
                m.load_state_dict({k: v if k in bufs else v.to(dt).float() for k, v in sd.items()}, strict=True)
                out[tag] = m(ids).numpy()
        safetensors_np.write(os.path.join(a.out_dir, "logits.safetensors"), out)


def same(path_a, path_b):
    ta, _ = safetensors_np.read(path_a)
    b = torch.load(path_b, map_location="cpu")
    for key in ("model_state_dict", "model_state"):
        if key in b:
            b = b[key]
    if set(ta) != set(b):
        return f"{path_a} vs {path_b}: names differ: only in A {sorted(set(ta) - set(b))}, only in B {sorted(set(b) - set(ta))}"
    bad = [k for k in ta if not np.array_equal(np.asarray(ta[k], dtype=np.float32), b[k].float().numpy())]
    if bad:
        return f"{path_a} vs {path_b}: {len(bad)} tensors differ, e.g. {bad[:5]}"
    return None


def cmd_same(a):
    if not a.files or len(a.files) % 2:
        print("same: pairs of files expected")
        return 2
    pairs = list(zip(a.files[::2], a.files[1::2]))
    errors = [e for e in (same(x, y) for x, y in pairs) if e]
    for e in errors:
        print(e)
    if not errors:
        print(f"{len(pairs)} pairs of state dicts identical")
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("models")
    s = sub.add_parser("save")
    s.add_argument("--model", required=True, choices=sorted(run_parity.MODELS))
    s.add_argument("--in", dest="inp", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--ids")
    c = sub.add_parser("same")
    c.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.cmd == "models":
        print("\n".join(sorted(run_parity.MODELS)))
        return 0
    if a.cmd == "save":
        cmd_save(a)
        return 0
    return cmd_same(a)


if __name__ == "__main__":
    sys.exit(main())
