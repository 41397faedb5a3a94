// Tokenizers: the GPT-2 split, UTF-8 repair, the tokenizer.json BPE (the library's rules where its
// JavaScript port differs), tiktoken ranks, the frequency remap, loading by content and malformed files.
// Parity with the JavaScript ports over many texts is tests/tokenizers/ (ctest `tokenizers`).
#include <doctest/doctest.h>

#include <flashlm/data/load_tokenizer.hpp>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using namespace flashlm::data;
using Ids = std::vector<int32_t>;

namespace {
std::vector<std::string> pieces(const std::string& s) {
    const auto cp = unicode::decode(s);
    std::vector<std::string> out;
    for (auto [b, e] : byte_level::gpt2_split(cp)) out.push_back(cp.bytes.substr(b, e - b));
    return out;
}
// A tokenizer.json with no pre-tokenizer over plain characters.
std::string tiny_json(const nlohmann::json& vocab, const nlohmann::json& merges, const nlohmann::json& extra = {}) {
    nlohmann::json j = {{"version", "1.0"}, {"added_tokens", nlohmann::json::array()}, {"normalizer", nullptr},
                        {"pre_tokenizer", nullptr}, {"decoder", nullptr},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    if (extra.is_object())
        for (auto& [k, v] : extra.items()) {
            if (k == "model") j["model"].update(v);
            else j[k] = v;
        }
    return j.dump();
}
// A .tiktoken table: every byte at rank = byte value, then the given multi-byte tokens.
std::string tiktoken_table(const std::vector<std::string>& extra) {
    std::string t;
    for (int b = 0; b < 256; ++b) t += flashlm::io::base64_encode(std::string(1, char(b))) + " " + std::to_string(b) + "\n";
    for (size_t i = 0; i < extra.size(); ++i) t += flashlm::io::base64_encode(extra[i]) + " " + std::to_string(256 + i) + "\n";
    return t;
}
}  // namespace

TEST_CASE("GPT-2 split: contractions, one space kept for the next word, White_Space, \\p{N}") {
    CHECK(pieces("Hello  world's\n\n x") == std::vector<std::string>{"Hello", " ", " world", "'s", "\n\n", " x"});
    CHECK(pieces("it's I'LL 'tis") == std::vector<std::string>{"it", "'s", " I", "'", "LL", " '", "tis"});
    CHECK(pieces("x\u00b2\u00b3 \u0663!? ") == std::vector<std::string>{"x", "\u00b2\u00b3", " \u0663", "!?", " "});
    // U+0085 is White_Space (Oniguruma, Rust regex); U+FEFF is not, unlike JavaScript's \s.
    CHECK(pieces("a\u0085b") == std::vector<std::string>{"a", "\u0085", "b"});
    CHECK(pieces("a\ufeff b") == std::vector<std::string>{"a", "\ufeff", " b"});
    CHECK(pieces("   ") == std::vector<std::string>{"   "});
    CHECK(pieces("") .empty());
}

TEST_CASE("invalid UTF-8 becomes one U+FFFD per maximal ill-formed subpart") {
    const std::string r = "\xEF\xBF\xBD";
    CHECK(unicode::repair_utf8("\xff") == r);
    CHECK(unicode::repair_utf8("\xe2\x82" "A") == r + "A");
    CHECK(unicode::repair_utf8("\xed\xa0\x80") == r + r + r);  // an encoded surrogate
    CHECK(unicode::repair_utf8("x\xf0\x9f\x98") == "x" + r);
    CHECK(unicode::repair_utf8("\xc0\xaf") == r + r);
    CHECK(unicode::repair_utf8("caf\xc3\xa9") == "caf\xc3\xa9");
}

TEST_CASE("tokenizer.json BPE: lowest rank first, unknown characters, unk, byte fallback, ignore_merges") {
    const nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"<unk>", 6}};
    const auto t = HfTokenizer::from_json(tiny_json(vocab, {"b c", "a b", "a bc"}));
    CHECK(t.encode("abc") == Ids{5});     // b+c (rank 0) first, then a+bc
    CHECK(t.encode("abab") == Ids{3, 3});
    // The library drops a character missing from the vocabulary before merging, so a and b merge
    // (its JavaScript port keeps the gap and gives {0, 1}).
    CHECK(t.encode("axb") == Ids{3});
    CHECK(t.decode_like_library({3, 2, 99}) == "ab c");  // no decoder: tokens joined by spaces, unknown ids dropped
    const auto u = HfTokenizer::from_json(tiny_json(vocab, {"a b"}, {{"model", {{"unk_token", "<unk>"}}}}));
    CHECK(u.encode("axxb") == Ids{0, 6, 6, 1});
    const auto f = HfTokenizer::from_json(tiny_json(vocab, {"a b"}, {{"model", {{"unk_token", "<unk>"}, {"fuse_unk", true}}}}));
    CHECK(f.encode("axxb") == Ids{0, 6, 1});
    const auto bf = HfTokenizer::from_json(
        tiny_json({{"a", 0}, {"<0x78>", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}}, nlohmann::json::array(), {{"model", {{"byte_fallback", true}}}}));
    CHECK(bf.encode("ax\xc3\xa9") == Ids{0, 1, 2, 3});
    const nlohmann::json v2 = {{"a", 0}, {"b", 1}, {"ab", 2}, {"abb", 3}};
    CHECK(HfTokenizer::from_json(tiny_json(v2, {"a b"})).encode("abb") == Ids{2, 1});
    CHECK(HfTokenizer::from_json(tiny_json(v2, {"a b"}, {{"model", {{"ignore_merges", true}}}})).encode("abb") == Ids{3});
}

TEST_CASE("tokenizer.json added tokens: leftmost-longest, single_word, lstrip/rstrip, special skipped on decode") {
    const nlohmann::json vocab = {{"a", 0}, {"c", 1}, {"t", 2}, {" ", 3}, {".", 4}};
    auto added = [](int id, const char* s, bool single, bool lstrip, bool rstrip, bool special) {
        return nlohmann::json{{"id", id}, {"content", s}, {"single_word", single}, {"lstrip", lstrip},
                              {"rstrip", rstrip}, {"normalized", false}, {"special", special}};
    };
    const auto t = HfTokenizer::from_json(tiny_json(
        vocab, nlohmann::json::array(),
        {{"added_tokens", {added(5, "<e>", false, false, false, true), added(6, "<eos>", false, false, false, true),
                           added(7, "cat", true, false, false, false), added(8, "[M]", false, true, true, true)}}}));
    CHECK(t.encode("a<eos>") == Ids{0, 6});
    CHECK(t.encode("<e>a") == Ids{5, 0});
    CHECK(t.encode("cat tcat cat.") == Ids{7, 3, 2, 1, 0, 2, 3, 7, 4});  // "tcat" is not a single word
    CHECK(t.encode("a  [M]  t") == Ids{0, 8, 2});
    CHECK(t.eos_id() == 6);
    CHECK(t.decode_like_library({0, 6, 7}, true) == "a cat");
    CHECK(t.decode_like_library({0, 6, 7}, false) == "a <eos> cat");
}

TEST_CASE("the committed byte-level fixture: ids pinned from the JavaScript port, lossless round trip") {
    const auto t = HfTokenizer::load(FLASHLM_TOKENIZER_FIXTURE);
    CHECK(t.vocab_size() == 960);
    CHECK(t.eos_id() == 3);
    CHECK(t.encode("Hello world, it's ok") == Ids{43, 656, 82, 590, 331, 15, 306, 356, 321, 78});
    CHECK(t.encode("<eos>Hi <eos>") == Ids{3, 43, 76, 224, 3});
    for (std::string s : {"Once upon a time, a cat sat.\n\n  Then \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 caf\xc3\xa9", "  ", "x"}) {
        const auto ids = t.encode(s);
        CHECK(t.decode(ids) == s);
        int bytes = 0;
        for (int32_t id : ids) bytes += t.piece_bytes()[size_t(id)];
        CHECK(bytes == int(s.size()));
    }
    // The same file without its decoder (upstream P52…P7): the library joins byte markers with spaces,
    // flashlm's decode() still gives the text.
    nlohmann::json j = nlohmann::json::parse(t.serialized());
    j["decoder"] = nullptr;
    const auto nd = HfTokenizer::from_json(j.dump());
    CHECK(nd.decode_like_library(nd.encode("a b")) == "a \xc4\xa0" "b");
    CHECK(nd.decode(nd.encode("a b")) == "a b");
}

TEST_CASE("tiktoken ranks: whole piece first, else lowest rank leftmost; serialized form round-trips") {
    const auto t = TiktokenBpe::parse(tiktoken_table({"ab", "bc", "abcd"}));
    CHECK(t.vocab_size() == 260);  // + <|endoftext|>
    CHECK(t.eos_id() == 259);
    CHECK(t.encode("abcd") == Ids{258});            // the whole piece is a token
    CHECK(t.encode("abc") == Ids{256, 'c'});         // ab (256) outranks bc (257)
    CHECK(t.encode("bcab") == Ids{257, 256});
    CHECK(t.encode("a bc") == Ids{'a', ' ', 257});  // " bc" is one piece; no " b" token
    CHECK(t.decode({256, 259, 'c'}) == "abc");
    CHECK(t.decode_bytes({256, 259}, false) == "ab<|endoftext|>");
    const auto again = tokenizer_from_blob(t.serialized());
    CHECK(again->kind() == "tiktoken");
    CHECK(again->encode("abc bcd abcd") == t.encode("abc bcd abcd"));
}

TEST_CASE("frequency remap: specials first, most frequent next, ties first seen, the rest UNK") {
    auto base = std::make_shared<TiktokenBpe>(TiktokenBpe::parse(tiktoken_table({"ab"})));
    const std::vector<std::string_view> stories{"ab c c", "d ab", "never counted"};
    // ids: ab 256, ' ' 32, c 99, d 100. Counts over the first 2 stories: ' ' 3, ab 2, c 2, d 1.
    const auto r = RemapTokenizer::build(base, stories, 7, 2);
    CHECK(r.vocab_size() == 7);
    CHECK(r.encode("ab c d") == Ids{5, 4, 6, 4, 1});  // ' '→4, ab→5 (seen before c), c→6, d→UNK
    CHECK(r.decode({2, 5, 4, 6, 3, 1}) == "ab c");
    CHECK(r.eos_id() == 3);
    CHECK(r.piece_bytes()[5] == 2);
    const auto again = tokenizer_from_blob(r.serialized());
    CHECK(again->kind() == "remap");
    CHECK(again->encode("ab c d") == r.encode("ab c d"));
    CHECK(again->vocab_size() == 7);
}

TEST_CASE("malformed tokenizer files end in one error naming the problem") {
    auto fails = [](const std::string& blob, const char* what) {
        CHECK_THROWS_WITH_AS(tokenizer_from_blob(blob, "tokenizer file 'x'"), doctest::Contains(what), std::runtime_error);
    };
    fails("{\"model\": ", "tokenizer file 'x' does not parse");
    fails(tiny_json({{"a", 0}}, {"a b"}), "merge #0 ('a', 'b') names a token that is not in the vocab");
    fails(tiny_json({{"a", 0}}, {"ab"}), "is not two tokens");
    fails(tiny_json({{"a", 0}}, nlohmann::json::array(), {{"normalizer", {{"type", "NFC"}}}}), "normalizer 'NFC' is not supported");
    fails(tiny_json({{"a", 0}}, nlohmann::json::array(), {{"model", {{"type", "WordPiece"}}}}), "model 'WordPiece' is not supported");
    fails(tiny_json({{"a", 0}}, nlohmann::json::array(), {{"model", {{"dropout", 0.1}}}}), "dropout is not supported");
    fails(tiny_json({{"a", -1}}, nlohmann::json::array()), "not a non-negative integer");
    fails(tiny_json({{"a", 0}}, nlohmann::json::array(), {{"post_processor", {{"type", "TemplateProcessing"}}}}),
          "post_processor 'TemplateProcessing' is not supported");
    fails("{\"flashlm_tokenizer\": \"remap/1\", \"specials\": [\"<pad>\"]}", "remap has no \"unk_id\"");
    fails("{\"foo\": 1}", "neither a tokenizer.json");
    fails("YWI= 256\nYw== x\n", "line 2 has no rank");
    fails("YWI= 3\n", "no token for byte 0");
    fails("ABCD", "tokenizer file 'x' does not parse");  // not JSON, not ranks: read as SentencePiece
}
