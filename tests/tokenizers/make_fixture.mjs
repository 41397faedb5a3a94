// Trains a small byte-level BPE the way `tokenizers`' BpeTrainer does (GPT-2 split, byte alphabet,
// most frequent pair first) and writes it as a tokenizer.json in the library's layout, the kind
// ByteLevelBPETokenizer saves (upstream P5): specials <pad> <unk> <bos> <eos> at 0…3, the 256-character
// byte alphabet, then one token per merge. tests/tokenizers/bytelevel_bpe.json was made with
//   node tests/tokenizers/make_fixture.mjs <(head -c 400000 ../shared/data/tinystories-a.txt) 700 > tests/tokenizers/bytelevel_bpe.json
// Usage: node make_fixture.mjs TEXT_FILE MERGES > tokenizer.json
import { readFileSync } from "node:fs";

const [file, nMerges = "700"] = process.argv.slice(2);
const text = readFileSync(file, "utf8");
const pattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

// bytes_to_unicode()
const byteChar = [];
{
  let extra = 0;
  for (let b = 0; b < 256; ++b) {
    const self = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteChar[b] = String.fromCodePoint(self ? b : 256 + extra++);
  }
}
const enc = new TextEncoder();
const counts = new Map();
for (const m of text.matchAll(pattern)) {
  const w = Array.from(enc.encode(m[0]), (b) => byteChar[b]).join("\u0000");
  counts.set(w, (counts.get(w) ?? 0) + 1);
}
let words = [...counts].map(([w, c]) => ({ syms: w.split("\u0000"), c }));

const specials = ["<pad>", "<unk>", "<bos>", "<eos>"];
const vocab = {};
specials.forEach((s, i) => (vocab[s] = i));
for (const ch of [...byteChar].sort()) vocab[ch] = Object.keys(vocab).length;
const merges = [];
for (let k = 0; k < Number(nMerges); ++k) {
  const pairs = new Map();
  for (const { syms, c } of words)
    for (let i = 0; i + 1 < syms.length; ++i) {
      const key = syms[i] + "\u0000" + syms[i + 1];
      pairs.set(key, (pairs.get(key) ?? 0) + c);
    }
  let best = null, bestC = 1;  // min_frequency 2
  for (const [key, c] of pairs) if (c > bestC || (c === bestC && best !== null && key < best)) (best = key), (bestC = c);
  if (best === null) break;
  const [a, b] = best.split("\u0000");
  merges.push([a, b]);
  if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  for (const w of words) {
    const out = [];
    for (let i = 0; i < w.syms.length; ++i) {
      if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) out.push(a + b), ++i;
      else out.push(w.syms[i]);
    }
    w.syms = out;
  }
}
const bl = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
const tok = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: specials.map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  })),
  normalizer: null,
  pre_tokenizer: bl,
  post_processor: { ...bl, trim_offsets: false },
  decoder: bl,
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
  },
};
process.stdout.write(JSON.stringify(tok) + "\n");
