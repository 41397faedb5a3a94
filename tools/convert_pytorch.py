#!/usr/bin/env python3
"""Converts between upstream FlashLM PyTorch checkpoints (.pt) and safetensors state dicts, the format
`flashlm import` reads and `flashlm export` writes (docs/import-export.md). Needs only torch (Debian
python3-torch); there is no dependency on the `safetensors` package.

  convert_pytorch.py IN.pt OUT.safetensors [--dtype keep|f32|f16|bf16]
      IN is a bare state dict or a dict holding one under model_state_dict / model_state / model /
      state_dict (the upstream scripts' keys). Tensor names are kept (a torch.compile "_orig_mod." or
      DDP "module." prefix on every key is dropped); dtypes are kept unless --dtype says otherwise; a
      "config" dict in IN becomes the file's __metadata__ "config" (JSON).
  convert_pytorch.py --to-pt IN.safetensors OUT.pt [--wrap KEY]
      The reverse: a state dict the upstream scripts load with load_state_dict(strict=True); --wrap
      model_state_dict (v4) or model_state (v7) nests it as {KEY: state_dict, "config": config}.

IN.pt is unpickled with an allow-list (containers, tensors, numbers, strings, numpy scalars), so a file
cannot run code; --unsafe-pickle lifts that for files you trust that hold other Python objects.
"""
import argparse
import json
import os
import pickle
import struct
import sys
import types

import torch

_TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_ST_TO_TORCH = {v: k for k, v in _TORCH_TO_ST.items()}
_CAST = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
STATE_KEYS = ("model_state_dict", "model_state", "model", "state_dict")


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def _bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: the raw 16-bit patterns, little-endian
        t = t.view(torch.int16)
    if sys.byteorder != "little":
        die("big-endian hosts are not supported")
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: name -> torch.Tensor (written in order); metadata: str -> str. Atomic (tmp + rename)."""
    header = {"__metadata__": metadata} if metadata else {}
    blobs, off = [], 0
    for name, t in tensors.items():
        if t.dtype not in _TORCH_TO_ST:
            die(f"tensor '{name}' has dtype {t.dtype}, which safetensors cannot hold")
        data = _bytes(t)
        header[name] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for d in blobs:
            f.write(d)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        die(f"{path}: truncated ({len(buf)} bytes)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        die(f"{path}: truncated: header says {n} bytes but the file has {len(buf)}")
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        if 8 + n + end > len(buf):
            die(f"{path}: truncated: tensor '{name}' ends past the end of the file")
        dt = _ST_TO_TORCH.get(e["dtype"])
        if dt is None:
            die(f"{path}: tensor '{name}' has unsupported dtype {e['dtype']}")
        raw = bytearray(buf[8 + n + b:8 + n + end])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def _json_config(cfg):
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        cfg = getattr(cfg, "__dict__", None)
        if not isinstance(cfg, dict):
            return None
    plain = {str(k): v for k, v in cfg.items() if isinstance(v, (bool, int, float, str)) or v is None}
    return json.dumps(plain, sort_keys=True)


# What a plain checkpoint pickles: containers, tensors and their storages, numbers, strings, numpy
# scalars. torch 1.13's weights_only=True refuses pickled floats (every upstream config and optimizer
# state has some), so this allow-list unpickler is the default instead.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"), ("numpy", "dtype"),
    ("numpy", "ndarray"), ("_codecs", "encode"),  # protocol-2 pickles of numpy scalars encode their bytes
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "slice"),
}


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS or (module == "torch" and (name.endswith("Storage") or
                                                                      isinstance(getattr(torch, name, None), torch.dtype))):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


_allow_list_pickle = types.SimpleNamespace(
    __name__="allow_list_pickle", Unpickler=_AllowListUnpickler,
    load=lambda f, **kw: _AllowListUnpickler(f, **kw).load())


def _allow_list_load(path):
    # torch 1.13's torch.load replaces any pickle_module by `pickle` unless weights_only=True, so the
    # allow-list unpickler goes to its loaders directly; newer torch honours pickle_module.
    ser = torch.serialization
    if not all(hasattr(ser, n) for n in ("_is_zipfile", "_open_zipfile_reader", "_load", "_legacy_load")):
        return torch.load(path, map_location="cpu", pickle_module=_allow_list_pickle)
    with open(path, "rb") as f:
        if ser._is_zipfile(f):
            with ser._open_zipfile_reader(f) as z:
                return ser._load(z, "cpu", _allow_list_pickle, encoding="utf-8")
        return ser._legacy_load(f, "cpu", _allow_list_pickle, encoding="utf-8")


def load_pt(path, unsafe):
    try:
        if unsafe:
            return torch.load(path, map_location="cpu")
        return _allow_list_load(path)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad or foreign pickle
        first = str(e).splitlines()[0] if str(e) else ""
        hint = "" if unsafe else " (if it holds other Python objects and you trust it, pass --unsafe-pickle)"
        die(f"{path}: cannot load: {type(e).__name__}: {first}{hint}")


def to_safetensors(args):
    ckpt = load_pt(args.inp, args.unsafe_pickle)
    config = None
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    elif isinstance(ckpt, dict):
        key = next((k for k in STATE_KEYS if isinstance(ckpt.get(k), dict)), None)
        if key is None:
            die(f"{args.inp}: no state dict: neither a dict of tensors nor a dict with one of {', '.join(STATE_KEYS)} "
                f"(keys: {', '.join(map(str, ckpt))})")
        state, config = ckpt[key], ckpt.get("config")
    else:
        die(f"{args.inp}: holds a {type(ckpt).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        die(f"{args.inp}: state dict entries that are not tensors: {', '.join(bad[:10])}")
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if args.dtype != "keep":
        state = {k: v.to(_CAST[args.dtype]) if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": "pytorch-state-dict", "producer": "convert_pytorch.py", "source": os.path.basename(args.inp)}
    cfg = _json_config(config)
    if cfg is not None:
        meta["config"] = cfg
    write_safetensors(args.out, state, meta)
    kinds = {}
    for v in state.values():
        kinds[_TORCH_TO_ST.get(v.dtype, str(v.dtype))] = kinds.get(_TORCH_TO_ST.get(v.dtype, str(v.dtype)), 0) + 1
    print(f"wrote {len(state)} tensors ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"
          f"{' and its config' if cfg else ''} to {args.out}")


def to_pt(args):
    tensors, meta = read_safetensors(args.inp)
    obj = tensors
    if args.wrap:
        obj = {args.wrap: tensors}
        if "config" in meta:
            obj["config"] = json.loads(meta["config"])
    torch.save(obj, args.out)
    print(f"wrote {len(tensors)} tensors to {args.out}{f' under {args.wrap!r}' if args.wrap else ''}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inp", metavar="IN")
    ap.add_argument("out", metavar="OUT")
    ap.add_argument("--to-pt", action="store_true", help="convert a .safetensors state dict to a .pt file")
    ap.add_argument("--dtype", choices=("keep", "f32", "f16", "bf16"), default="keep",
                    help="cast floating-point tensors (default: keep each tensor's dtype)")
    ap.add_argument("--wrap", metavar="KEY", help="with --to-pt: save {KEY: state_dict, 'config': ...}")
    ap.add_argument("--unsafe-pickle", action="store_true", help="unpickle arbitrary objects (trusted files only)")
    args = ap.parse_args()
    if not os.path.isfile(args.inp):
        die(f"{args.inp}: no such file")
    (to_pt if args.to_pt else to_safetensors)(args)


if __name__ == "__main__":
    main()
