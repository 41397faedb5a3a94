#!/usr/bin/env python3
"""Grows a token-shard directory made by `flashlm tokenize` to SIZE_MB of tokens by repeating its documents:
a large corpus in the flashlm-tokens format (shard .bin + .docs + .json sidecar, tokenizer.model) without
tokenizing gigabytes of text. Standard library only; memory stays at one source copy plus one block.

Usage: make_token_shards.py SRC_DIR OUT_DIR SIZE_MB [SHARD_MB]
"""
import glob
import json
import os
import shutil
import struct
import sys


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    src, out, size_mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
    shard_mb = float(sys.argv[4]) if len(sys.argv) == 5 else 256.0
    shards = sorted(glob.glob(os.path.join(src, "*.bin")))
    if not shards:
        sys.exit(f"no .bin shards in {src}")
    meta = json.load(open(shards[0] + ".json"))
    width = 4 if meta["dtype"] == "uint32" else 2
    data = b"".join(open(p, "rb").read() for p in shards)
    starts = []
    base = 0
    for p in shards:
        side = json.load(open(p + ".json"))
        raw = open(os.path.join(src, side["doc_index"]), "rb").read()
        starts += [base + s for s in struct.unpack(f"<{len(raw) // 8}Q", raw)]
        base += side["tokens"]
    n = len(data) // width
    # documents as (start, end) token ranges of the source
    docs = list(zip(starts, starts[1:] + [n]))
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(src, "tokenizer.model"), os.path.join(out, "tokenizer.model"))
    total_tokens = int(size_mb * 1e6) // width
    shard_tokens = int(shard_mb * 1e6) // width
    written, index = 0, 0
    while written < total_tokens:
        name = f"shard-{index:05}"
        limit = min(shard_tokens, total_tokens - written)
        tok, offs = 0, []
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            block, blen = [], 0
            while tok < limit:
                for s, e in docs:
                    if tok >= limit:
                        break
                    offs.append(tok)
                    block.append(data[s * width:e * width])
                    tok += e - s
                    blen += e - s
                    if blen > 1 << 22:
                        f.write(b"".join(block))
                        block, blen = [], 0
            f.write(b"".join(block))
        with open(os.path.join(out, name + ".docs"), "wb") as f:
            for i in range(0, len(offs), 1 << 16):
                chunk = offs[i:i + (1 << 16)]
                f.write(struct.pack(f"<{len(chunk)}Q", *chunk))
        side = dict(meta, tokens=tok, documents=len(offs), doc_index=name + ".docs", sources=[os.path.abspath(src)])
        with open(os.path.join(out, name + ".bin.json"), "w") as f:
            json.dump(side, f, indent=2)
        written += tok
        index += 1
    print(f"{written} tokens ({written * width / 1e6:.1f} MB) in {index} shard(s) in {out}")


if __name__ == "__main__":
    main()
