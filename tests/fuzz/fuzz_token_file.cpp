// libFuzzer target: the token-file readers. Byte 0 selects the reader (bit 0), then bytes 1-2 are the
// vocabulary (0: no check), the rest the files:
//   even: a uint16 token file (train.bin/val.bin) through data::TokenFile, read as training and
//         evaluation batches;
//   odd:  a shard of `flashlm tokenize` (data::TokenStream over a directory): bytes 3-4 and 5-6 are the
//         lengths of its JSON sidecar (NAME.bin.json, 0: none) and of its document index (NAME.docs, 0:
//         none), which follow, then the .bin; byte 0 bit 1 asks for the sidecar's tokenizer hash to be
//         checked, bits 2-7 are the end-of-text id. The stream is indexed by documents and read as
//         window-sampled, document-packed and evaluation batches.
// Only std::runtime_error (the validation messages) may escape.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include <flashlm/data/batcher.hpp>
#include <flashlm/data/token_file.hpp>
#include <flashlm/data/token_stream.hpp>

namespace {

// The tokenizer hash make_seeds writes into the shard seeds' sidecars.
constexpr uint64_t k_seed_hash = 1234567890123ULL;

void put(const std::string& path, const uint8_t* p, size_t n) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return;
    if (n) std::fwrite(p, 1, n, f);
    std::fclose(f);
}

void token_file(const std::string& path, int64_t vocab) {
    using namespace flashlm;
    data::TokenFile tf(path, vocab);
    uint64_t sum = 0;
    for (size_t i = 0; i < tf.size(); ++i) sum += tf[i];
    (void)sum;
    const int64_t L = 4;
    data::Batch b;
    const int64_t W = data::eval_windows(tf.size(), L);
    if (W > 0) data::eval_batch(tf.data(), W - 1, 1, L, b);
    Rng rng(1);
    if (tf.size() > size_t(L)) data::sample_batch(tf.data(), tf.size(), 2, L, rng, b);
}

void shard(const std::string& dir, int64_t vocab, bool check_hash, int32_t eos) {
    using namespace flashlm;
    data::TokenStream s = data::TokenStream::open(dir, data::TokenCheck{vocab, k_seed_hash, check_hash});
    s.index_documents(eos);
    const int64_t L = 4;
    data::Batch b;
    Rng rng(1);
    if (s.size() < size_t(L) + 1) return;
    data::sample_batch_rows(s, 2, L, 0, 2, rng, b, data::Sampling::windows);
    const size_t W = (s.size() - 1) / size_t(L);
    data::eval_batch(s, int64_t(W - 1), 1, L, b);
    for (size_t k = 0; k < s.documents(); ++k) (void)s.document_start(k);
    // Holding out a tail as the training run does, then packing documents from what is left.
    data::TokenStream head = s.slice(0, s.next_document_boundary(s.size() / 2, eos));
    head.index_documents(eos);
    try {
        data::sample_batch_rows(s, 2, L, 0, 2, rng, b, data::Sampling::documents);
        if (head.size() > size_t(L)) data::sample_batch_rows(head, 2, L, 0, 2, rng, b, data::Sampling::documents);
    } catch (const std::runtime_error&) {
        // no document with L + 1 tokens after its start
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    namespace fs = std::filesystem;
    if (size < 3) return 0;
    static const std::string base = "/tmp/flashlm_fuzz_tokens_" + std::to_string(::getpid());
    const int64_t vocab = int64_t(data[1]) | int64_t(data[2]) << 8;
    try {
        if ((data[0] & 1) == 0) {
            put(base + ".bin", data + 3, size - 3);
            token_file(base + ".bin", vocab);
            return 0;
        }
        if (size < 7) return 0;
        const size_t side_n = std::min<size_t>(size_t(data[3]) | size_t(data[4]) << 8, size - 7);
        const size_t docs_n = std::min<size_t>(size_t(data[5]) | size_t(data[6]) << 8, size - 7 - side_n);
        const uint8_t* p = data + 7;
        static const std::string dir = base + ".d";
        static const bool made = fs::create_directories(dir) || fs::is_directory(dir);
        (void)made;
        const std::string bin = dir + "/shard-00000.bin", side = bin + ".json", docs = dir + "/shard-00000.docs";
        std::error_code ec;
        if (side_n) put(side, p, side_n);
        else fs::remove(side, ec);
        if (docs_n) put(docs, p + side_n, docs_n);
        else fs::remove(docs, ec);
        put(bin, p + side_n + docs_n, size - 7 - side_n - docs_n);
        shard(dir, vocab, (data[0] & 2) != 0, int32_t(data[0] >> 2));
    } catch (const std::runtime_error&) {
    }
    return 0;
}
