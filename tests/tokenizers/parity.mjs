// Reference side of the tokenizer parity test: encodes the fixture strings with the JavaScript ports of
// `tokenizers` (@huggingface/tokenizers) and tiktoken (js-tiktoken) and writes what they produce, for
// tokenizer_parity.cpp to compare against flashlm's C++ tokenizers.
// Usage: node parity.mjs FIXTURE_TOKENIZER_JSON OUT_DIR   (writes OUT_DIR/*.json and OUT_DIR/expected.json)
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../../npm/package.json"));  // packages live in npm/node_modules
const { Tokenizer } = require("@huggingface/tokenizers");
const { Tiktoken } = require("js-tiktoken/lite");
const gpt2Path = require.resolve("js-tiktoken/ranks/gpt2");
const gpt2 = require("js-tiktoken/ranks/gpt2");

const [fixture, out] = process.argv.slice(2);
const byteLevel = [];  // bytes_to_unicode()
for (let b = 0, extra = 0; b < 256; ++b) {
  const self = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  byteLevel[b] = String.fromCodePoint(self ? b : 256 + extra++);
}
const base = JSON.parse(readFileSync(fixture, "utf8"));

// Texts as strings, and byte strings (hex) for invalid UTF-8, which both sides decode with U+FFFD.
const story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. " +
  "One day, she saw a big, red ball! \"Can I play?\" she asked. Her mom said, \"Yes, you can.\"\n";
const texts = [
  "", " ", "  ", "   x", "\t\tx", "\n", "\n\n\nThe end.\n", "a\r\nb", "x  y   z    w", "trailing spaces   ",
  " leading space", story, "it's I'm we'll they're you've he'd 'tis IT'S don''t '", "numbers 12345 and 3.14159, ٣٤ and ²³ Ⅻ",
  "héllo wörld ñ café crème brûlée", "日本語のテキストです。", "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
  "combining e\u0301 a\u0308 n\u0303", "RTL עברית العربية", "nbsp\u00a0here ideographic\u3000space en\u2002quad",
  "nel\u0085x and  \u0085  y", "bom\ufeffx", "zero\u200bwidth\u200djoiner", "line\u2028sep para\u2029sep",
  "\u000b vertical \u000c feed", "<eos>", "Hello<eos>World <eos> end", "<pad><unk><bos>", "<eos<eos>>",
  "tab\tsep\tvalues\t", "!!! ??? ... --- ''' \"\"\" ((( )))", "$100 @user #tag 50% a+b=c", "ŉ ǅ ß ﬁ Ⅷ ⅷ",
  "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ", "a".repeat(3000), " ".repeat(5000), "\n".repeat(1000), " \n".repeat(700),
  "ab ".repeat(2000), "😀".repeat(500), story.repeat(40), "[MASK] hello world [MASK]x  [MASK]  y hello worlds",
];
const hexes = ["ff", "c3", "e282", "61eda08062", "f4908080", "c0af", "e28241", "f09f98", "808182",
  "4865ff6c6c6f", "c3a9c3", "f0f0f09f9880", "20ff20fe0a41"];
const cases = texts.map((t) => ({ text: t, b64: Buffer.from(t, "utf8").toString("base64") }))
  .concat(hexes.map((h) => ({ text: Buffer.from(h, "hex").toString("utf8"), b64: Buffer.from(h, "hex").toString("base64") })));

// Tokenizer variants: the upstream kinds (P5 with decoder; P7 without; prefix space; legacy "a b" merges;
// ignore_merges; extra added tokens with lstrip/rstrip and a non-special one).
const clone = () => JSON.parse(JSON.stringify(base));
const variants = {};
variants.bytelevel = clone();
variants.no_decoder = Object.assign(clone(), { decoder: null, post_processor: null });
{
  const v = clone();
  v.pre_tokenizer.add_prefix_space = true;
  variants.prefix_space = v;
}
{
  const v = clone();
  v.model.merges = v.model.merges.map(([a, b]) => `${a} ${b}`);
  variants.legacy_merges = v;
}
{
  const v = clone();
  v.model.ignore_merges = true;
  variants.ignore_merges = v;
}
{
  const v = clone();
  const n = Math.max(...Object.values(v.model.vocab)) + 1;
  v.added_tokens.push({ id: n, content: "[MASK]", single_word: false, lstrip: true, rstrip: true, normalized: false, special: true });
  v.added_tokens.push({ id: n + 1, content: "hello world", single_word: false, lstrip: false, rstrip: false, normalized: true, special: false });
  variants.added_tokens = v;
}
{
  // P7-like: BpeTrainer without the byte alphabet keeps only bytes seen in training; here the non-ASCII
  // bytes that no merge uses are dropped. Unknown characters are then dropped at encode time.
  const v = clone();
  const used = new Set(v.model.merges.flat().flatMap((t) => Array.from(t)));
  for (const [tok, id] of Object.entries(v.model.vocab))
    if (id >= 4 && Array.from(tok).length === 1 && tok.codePointAt(0) >= 0x80 && !used.has(tok)) delete v.model.vocab[tok];
  variants.pruned_alphabet = v;
}

const expected = { hf: [], tiktoken: { ranks: gpt2Path, cases: [] } };
for (const [name, json] of Object.entries(variants)) {
  const file = join(out, `${name}.json`);
  writeFileSync(file, JSON.stringify(json));
  const tok = new Tokenizer(json, {});
  // Characters outside the vocabulary (only in pruned_alphabet): the library drops them before merging,
  // so their neighbours can merge; the JS port keeps them as merge barriers and drops them afterwards.
  // Those encodings are not compared (tests/test_tokenizers.cpp pins the library's behaviour).
  const rows = cases.map(({ text, b64 }) => {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const unknown = Array.from(Buffer.from(text, "utf8"), (b) => byteLevel[b]).some((c) => !(c in json.model.vocab));
    const opts = (skip) => ({ skip_special_tokens: skip, clean_up_tokenization_spaces: false });
    return { b64, ids, decoded: ids.length ? tok.decode(ids, opts(true)) : "",
             decoded_all: ids.length ? tok.decode(ids, opts(false)) : "", unknown_chars: unknown };
  });
  expected.hf.push({ name, file, cases: rows });
}
const enc = new Tiktoken(gpt2);
for (const { text, b64 } of cases) {
  const ids = enc.encode(text, [], []);  // encode_ordinary: "<|endoftext|>" in the text is text
  expected.tiktoken.cases.push({ b64, ids, decoded: enc.decode(ids) });
}
writeFileSync(join(out, "expected.json"), JSON.stringify(expected));
console.log(`wrote ${Object.keys(variants).length} tokenizer.json variants x ${cases.length} texts and ${cases.length} tiktoken cases`);
