// libFuzzer target: a uint16 token file (train.bin/val.bin) opened with data::TokenFile against a
// vocabulary, then read as training and evaluation batches. Input: 2 bytes of vocabulary size (0: no
// check), the rest is the file. Only std::runtime_error (the validation messages) may escape.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <flashlm/data/batcher.hpp>
#include <flashlm/data/token_file.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace flashlm;
    if (size < 2) return 0;
    static const std::string path = "/tmp/flashlm_fuzz_tokens_" + std::to_string(::getpid()) + ".bin";
    const int64_t vocab = int64_t(data[0]) | int64_t(data[1]) << 8;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data + 2, 1, size - 2, f);
    std::fclose(f);
    try {
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
    } catch (const std::runtime_error&) {
    }
    return 0;
}
