"""Runs a PyTorch reference model on the inputs flashlm wrote and saves logits, loss and gradients.

usage: run_parity.py --model bolt --in IN.safetensors --out OUT.safetensors

IN holds metadata "config" (JSON, upstream key names), every parameter under its state-dict name
(tied aliases such as head.weight may be omitted), int32 `ids` / `targets` [B, T] and optionally int32
`positions` [n]: the loss is then the mean cross-entropy over those rows of the flattened B·T positions
only (v3's train-time position subsampling, upstream's `lm_head(x_flat[indices])`).
OUT gets `logits` [B, T, V], `loss` [1] and `grad.<name>` for every state-dict key.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402


def _bolt(config):
    from bolt import build
    return build(config)


def _cortex(config):
    from cortex import build
    return build(config)


MODELS = {"bolt": _bolt, "cortex3": _cortex, "cortex6": _cortex}


def _discover():
    """Later variants register themselves: a sibling module with MODEL_NAMES = ("name", ...) and
    build(config) serves those names, so adding a variant never edits this file."""
    import glob
    import importlib
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "*.py"))):
        mod_name = os.path.splitext(os.path.basename(path))[0]
        if mod_name in ("run_parity", "safetensors_np", "bolt", "cortex"):
            continue
        with open(path) as f:
            if "MODEL_NAMES" not in f.read():
                continue
        mod = importlib.import_module(mod_name)
        for name in mod.MODEL_NAMES:
            MODELS[name] = mod.build


_discover()

TIED = {"head.weight": "embedding.weight"}


def load_weights(model, tensors):
    """Loads flashlm's parameters (state-dict names; tied aliases such as head.weight may be missing) into
    model, strictly: a name on one side only is an error. Also used by bench/torch_train_step.py --init."""
    expected = model.state_dict()
    tensors = dict(tensors)
    for alias, target in dict(TIED, **getattr(model, "TIED", {})).items():
        if alias in expected and alias not in tensors and target in tensors:
            tensors[alias] = tensors[target]
    state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    buffers = dict(model.named_buffers())  # upstream's persistent constants: flashlm sends parameters only
    state.update({k: v for k, v in buffers.items() if k in expected and k not in state})
    model.load_state_dict(state, strict=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.set_num_threads(1)
    tensors, meta = safetensors_np.read(args.inp)
    config = json.loads(meta["config"])
    ids = torch.from_numpy(tensors.pop("ids").astype(np.int64))
    targets = torch.from_numpy(tensors.pop("targets").astype(np.int64))
    positions = tensors.pop("positions", None)

    model = MODELS[args.model](config).float()
    load_weights(model, tensors)
    expected = model.state_dict()
    buffers = dict(model.named_buffers())

    logits = model(ids)
    if positions is not None:
        rows = torch.from_numpy(positions.astype(np.int64))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[rows], targets.reshape(-1)[rows])
    elif hasattr(model, "loss_fn"):  # a variant's own objective (e.g. upstream-compatible target shift)
        loss = model.loss_fn(logits, targets)
    else:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()

    out = {"logits": logits.detach().numpy(), "loss": loss.detach().reshape(1).numpy()}
    for name in (n for n in expected if n not in buffers):  # tied names resolve to the shared Parameter, so they carry the summed gradient
        out["grad." + name] = model.get_parameter(name).grad.numpy()
    safetensors_np.write(args.out, out, {"model": args.model, "torch": torch.__version__})


if __name__ == "__main__":
    main()
