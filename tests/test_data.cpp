// Token shards (writer, mmap stream, sidecar and index checks), streaming tokenization, batch sampling over
// streams (windows and document packing) and per-piece character counts.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "examples/bolt.hpp"
#include "flashlm/data/batcher.hpp"
#include "flashlm/data/corpus.hpp"
#include "flashlm/data/piece_chars.hpp"
#include "flashlm/data/shard_writer.hpp"
#include "flashlm/data/token_stream.hpp"
#include "flashlm/data/tokenize.hpp"
#include "flashlm/train/evaluate.hpp"

using namespace flashlm;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path p;
    TempDir() {
        p = fs::temp_directory_path() / ("flashlm-test-data-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        fs::create_directories(p);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(p, ec);
    }
    static int& counter() {
        static int c = 0;
        return c;
    }
    std::string operator/(const std::string& n) const { return (p / n).string(); }
};

// Documents of lengths 1..n (each ends in eos), ids cycling below vocab.
std::vector<std::vector<int32_t>> make_docs(int n, int32_t vocab, int32_t eos) {
    std::vector<std::vector<int32_t>> docs;
    int32_t next = 0;
    for (int d = 0; d < n; ++d) {
        std::vector<int32_t> doc;
        for (int i = 0; i < d % 7 + 3; ++i) {
            next = (next * 7919 + 13) % vocab;
            doc.push_back(next == eos ? eos + 1 : next);
        }
        doc.push_back(eos);
        docs.push_back(doc);
    }
    return docs;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

const data::SpTokenizer& test_tokenizer() {
    static const data::SpTokenizer tok = [] {
        std::vector<std::string> text;
        for (int i = 0; i < 200; ++i)
            text.push_back("Once upon a time a little cat named Tom " + std::to_string(i) + " played in the café with Zoë.");
        std::vector<std::string_view> lines(text.begin(), text.end());
        return data::SpTokenizer::train(lines, 300, 1);
    }();
    return tok;
}

}  // namespace

TEST_CASE("shards: written documents read back as one stream across shard boundaries, with their document starts") {
    TempDir dir;
    const int32_t vocab = 1000, eos = 2;
    const auto docs = make_docs(40, vocab, eos);
    std::vector<int32_t> all;
    std::vector<size_t> starts;
    {
        data::ShardWriter w(dir.p.string(), vocab, 50, {{"tokenizer_fnv1a", 7}, {"vocab_size", vocab}});
        for (const auto& d : docs) {
            starts.push_back(all.size());
            all.insert(all.end(), d.begin(), d.end());
            w.add_document(d.data(), d.size());
        }
        CHECK(w.finish() > 3);
        CHECK(w.tokens() == all.size());
        CHECK(w.documents() == docs.size());
    }
    auto s = data::TokenStream::open(dir.p.string(), {vocab, 7, true});
    REQUIRE(s.size() == all.size());
    CHECK(s.shards() > 3);
    std::vector<int32_t> back(all.size());
    s.copy(0, all.size(), back.data());
    CHECK(back == all);
    for (size_t i = 0; i < s.shards(); ++i) {
        CHECK(s.shard(i).size() <= 50);  // no document here is longer than a shard
        CHECK(s.shard(i).has_doc_index());
        CHECK(s.shard(i).width() == 2);
    }
    s.index_documents(eos);
    REQUIRE(s.documents() == starts.size());
    for (size_t k = 0; k < starts.size(); ++k) CHECK(s.document_start(k) == starts[k]);
    // a slice keeps the documents starting inside it, at positions relative to the slice
    auto tail = s.slice(starts[10] + 1, all.size());
    tail.index_documents(eos);
    CHECK(tail.documents() == starts.size() - 11);
    CHECK(tail.document_start(0) == starts[11] - starts[10] - 1);
    CHECK(tail.at(0) == uint32_t(all[starts[10] + 1]));
    // scanning for end-of-text finds the same starts as the index files
    data::TokenStream mem = data::TokenStream::view(nullptr, 0);
    std::vector<uint16_t> all16(all.begin(), all.end());
    mem = data::TokenStream::view(all16.data(), all16.size());
    mem.index_documents(eos);
    REQUIRE(mem.documents() == starts.size());
    for (size_t k = 0; k < starts.size(); ++k) CHECK(mem.document_start(k) == starts[k]);
}

TEST_CASE("shards: a vocabulary above 65,535 pieces is written and read as uint32") {
    TempDir dir;
    const int32_t vocab = 70000;
    std::vector<int32_t> doc = {0, 65535, 65536, 69999, 5};
    {
        data::ShardWriter w(dir.p.string(), vocab, 1000, {});
        w.add_document(doc.data(), doc.size());
        w.finish();
        CHECK(w.width() == 4);
    }
    CHECK(fs::file_size(dir / "shard-00000.bin") == 20);
    auto s = data::TokenStream::open(dir / "shard-00000.bin", {vocab, 0, false});
    REQUIRE(s.size() == 5);
    CHECK(s.at(2) == 65536);
    CHECK(s.at(3) == 69999);
    CHECK(s.shard(0).sidecar().at("dtype") == "uint32");
    CHECK(message_of([&] { data::TokenStream::open(dir / "shard-00000.bin", {69999, 0, false}); })
              .find("token 69999 at position 3 is outside the vocabulary of 69999") != std::string::npos);
}

TEST_CASE("shards: bad files give one clear error") {
    TempDir dir;
    write_bytes(dir / "odd.bin", {1, 0, 2});
    CHECK(message_of([&] { data::TokenStream::open(dir / "odd.bin", {100, 0, false}); })
              .find("has 3 bytes; expected a non-zero even size (uint16 tokens)") != std::string::npos);
    write_bytes(dir / "big.bin", {1, 0, 200, 0});
    CHECK(message_of([&] { data::TokenStream::open(dir / "big.bin", {100, 0, false}); })
              .find("token 200 at position 1 is outside the vocabulary of 100") != std::string::npos);
    fs::create_directories(dir / "empty");
    CHECK(message_of([&] { data::TokenStream::open(dir / "empty", {100, 0, false}); }).find("holds no .bin token shards") !=
          std::string::npos);
    // sidecar disagreements: another tokenizer, another vocabulary, a truncated file, an unknown dtype
    TempDir s;
    std::vector<int32_t> doc = {3, 4, 5, 2};
    {
        data::ShardWriter w(s.p.string(), 100, 1000, {{"tokenizer_fnv1a", 42}, {"vocab_size", 100}});
        w.add_document(doc.data(), doc.size());
        w.finish();
    }
    const std::string bin = s / "shard-00000.bin";
    CHECK(data::TokenStream::open(bin, {100, 42, true}).size() == 4);
    CHECK(message_of([&] { data::TokenStream::open(bin, {100, 43, true}); }).find("was made with another tokenizer") !=
          std::string::npos);
    CHECK(message_of([&] { data::TokenStream::open(bin, {200, 42, true}); }).find("tokenizer of 100 pieces") != std::string::npos);
    fs::resize_file(bin, 6);
    CHECK(message_of([&] { data::TokenStream::open(bin, {100, 42, true}); }).find("holds 3 tokens but its sidecar says 4") !=
          std::string::npos);
    fs::resize_file(bin, 8);
    {
        std::ofstream(s / "shard-00000.docs", std::ios::binary | std::ios::app) << "x";
    }
    CHECK(message_of([&] { data::TokenStream::open(bin, {100, 42, true}); }).find("document index") != std::string::npos);
    std::ofstream(bin + ".json") << R"({"dtype": "int8"})";
    CHECK(message_of([&] { data::TokenStream::open(bin, {100, 42, true}); }).find("dtype 'int8'") != std::string::npos);
    std::ofstream(bin + ".json") << "{not json";
    CHECK(message_of([&] { data::TokenStream::open(bin, {100, 42, true}); }).find("does not parse") != std::string::npos);
}

TEST_CASE("sampling over a stream: windows draw exactly as the pointer version; documents rows start at a story") {
    const int32_t eos = 2;
    const auto docs = make_docs(200, 500, eos);
    std::vector<uint16_t> all;
    for (const auto& d : docs) all.insert(all.end(), d.begin(), d.end());
    auto s = data::TokenStream::view(all.data(), all.size());
    const int64_t B = 6, L = 16;
    Rng r1(5), r2(5);
    data::Batch a, b;
    for (int step = 0; step < 3; ++step) {
        data::sample_batch_rows(all.data(), all.size(), B, L, 2, 5, r1, a);
        data::sample_batch_rows(s, B, L, 2, 5, r2, b);
        CHECK(a.ids == b.ids);
        CHECK(a.targets == b.targets);
    }
    s.index_documents(eos);
    Rng r3(9);
    std::set<size_t> seen;
    for (int step = 0; step < 20; ++step) {
        data::sample_batch_rows(s, B, L, 0, B, r3, b, data::Sampling::documents);
        for (int64_t r = 0; r < B; ++r) {
            // the row is a contiguous run of the stream whose first token follows an end-of-text (or is the first)
            const auto it = std::search(all.begin(), all.end(), b.ids.begin() + r * L, b.ids.begin() + (r + 1) * L,
                                        [](uint16_t x, int32_t y) { return int32_t(x) == y; });
            REQUIRE(it != all.end());
            const size_t p = size_t(it - all.begin());
            CHECK((p == 0 || all[p - 1] == eos));
            CHECK(b.targets[size_t(r * L + L - 1)] == all[p + size_t(L)]);
            seen.insert(p);
        }
    }
    CHECK(seen.size() > 50);  // 120 draws over ~200 starts
}

TEST_CASE("tokenize_texts streams text into shards equal to encoding it whole, across small read blocks") {
    TempDir dir;
    const auto& tok = test_tokenizer();
    std::string text;
    for (int i = 0; i < 60; ++i) text += "The cat " + std::to_string(i) + " sat in the café.\r\n" + (i % 9 == 0 ? "\n  \n" : "");
    text += "a last line without a line break";
    std::ofstream(dir / "in.txt", std::ios::binary) << text;
    const auto expect = data::encode_lines(tok, text);
    data::ShardWriter w((dir.p / "out").string(), tok.vocab_size(), 100000, {});
    fs::create_directories(dir.p / "out");
    int calls = 0;
    data::tokenize_texts(tok, {dir / "in.txt"}, w, [&](const data::TokenizeProgress& p, bool done) {
        ++calls;
        if (done) CHECK(p.bytes == text.size());
    }, 97);
    w.finish();
    CHECK(calls > 10);
    auto s = data::TokenStream::open((dir.p / "out").string(), {tok.vocab_size(), 0, false});
    std::vector<int32_t> got(s.size());
    s.copy(0, got.size(), got.data());
    CHECK(got == expect);
    CHECK(w.documents() == 61);
    // a "line" longer than the limit with no line break is refused, not buffered without bound
    CHECK(data::k_max_line_bytes == size_t(64) << 20);
}

TEST_CASE("piece_chars sums to the characters of UTF-8 text, piece_bytes to its bytes (+1 for the leading ▁)") {
    const auto& tok = test_tokenizer();
    const auto chars = data::piece_chars(tok);
    REQUIRE(chars.size() == size_t(tok.vocab_size()));
    for (std::string line : {std::string("Once upon a time Zoë went to the café."), std::string("日本の猫 — naïve ∑ emoji 🐈 end")}) {
        const auto ids = tok.encode(line);
        int64_t c = 0, b = 0;
        for (int32_t id : ids) c += chars[size_t(id)], b += tok.piece_bytes()[size_t(id)];
        CHECK(c == data::utf8_chars(line) + 1);
        CHECK(b == int64_t(line.size()) + 1);
    }
    CHECK(chars[size_t(tok.eos_id())] == 1);
    CHECK(data::utf8_chars("café") == 4);
}

TEST_CASE("evaluate over a stream of shards equals evaluate over the same tokens in memory") {
    examples::BoltConfig c{300, 32, 1, 4, 64, 16};
    examples::Bolt<float> model("bolt", c);
    Rng rng(3);
    model.init(rng);
    TempDir dir;
    const auto docs = make_docs(30, 300, 2);
    std::vector<uint16_t> all;
    {
        data::ShardWriter w(dir.p.string(), 300, 40, {});
        for (const auto& d : docs) {
            all.insert(all.end(), d.begin(), d.end());
            w.add_document(d.data(), d.size());
        }
        w.finish();
    }
    auto s = data::TokenStream::open(dir.p.string(), {300, 0, false});
    std::vector<int> bytes(300, 2), chars(300, 1);
    auto a = train::evaluate(model, s, 16, 3, bytes, chars);
    auto b = train::evaluate(model, all.data(), all.size(), 16, 3, bytes);
    CHECK(a.windows == int64_t((all.size() - 1) / 16));
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    CHECK(a.bpb == doctest::Approx(a.loss / (2 * std::log(2.0))).epsilon(1e-12));
    CHECK(a.bpc == doctest::Approx(a.loss / std::log(2.0)).epsilon(1e-12));
}
