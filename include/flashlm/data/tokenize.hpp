#pragma once
// Text of any size → token shards with constant memory: each input is read in 4 MiB blocks, the complete
// lines of a block are encoded in parallel (one document per non-blank line, end-of-text after each, the
// same stream encode_lines gives for the whole text) and written in order through a ShardWriter.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/data/shard_writer.hpp"
#include "flashlm/data/sp_tokenizer.hpp"
#include "flashlm/data/text.hpp"

namespace flashlm::data {

struct TokenizeProgress {
    uint64_t bytes = 0, total_bytes = 0;  // total 0: unknown (stdin)
    uint64_t tokens = 0, documents = 0;
    double seconds = 0;
};

// A line longer than this without a line break is refused rather than buffered without bound.
inline constexpr size_t k_max_line_bytes = size_t(64) << 20;

// Reads each input ("-" is stdin) in `block`-byte reads and writes its documents; `progress` is called
// after every block and once more at the end with done = true.
inline void tokenize_texts(const SpTokenizer& tok, const std::vector<std::string>& inputs, ShardWriter& out,
                           const std::function<void(const TokenizeProgress&, bool done)>& progress = {},
                           size_t block = size_t(4) << 20) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    TokenizeProgress p;
    for (const auto& in : inputs)
        if (in != "-") {
            std::FILE* f = std::fopen(in.c_str(), "rb");
            if (!f) throw std::runtime_error("cannot open data file '" + in + "': " + std::strerror(errno));
            std::fseek(f, 0, SEEK_END);
            const long n = std::ftell(f);
            std::fclose(f);
            if (n > 0) p.total_bytes += uint64_t(n);
        }
    const int32_t eos = tok.eos_id();
    std::vector<char> buf;
    std::vector<std::vector<int32_t>> ids;
    auto encode_and_write = [&](std::string_view text) {
        const auto lines = split_lines(text);
        ids.resize(lines.size());
        std::vector<std::exception_ptr> errors(static_cast<size_t>(k_max_threads));
        parallel_for_tid(int64_t(lines.size()), int64_t(text.size()) * 64, [&](int64_t b, int64_t e, int t) {
            try {
                for (int64_t i = b; i < e; ++i) {
                    ids[size_t(i)] = tok.encode(lines[size_t(i)]);
                    ids[size_t(i)].push_back(eos);
                }
            } catch (...) {
                errors[size_t(t)] = std::current_exception();
            }
        });
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
        for (size_t i = 0; i < lines.size(); ++i) out.add_document(ids[i].data(), ids[i].size());
    };
    for (const auto& in : inputs) {
        std::FILE* f = in == "-" ? stdin : std::fopen(in.c_str(), "rb");
        if (!f) throw std::runtime_error("cannot open data file '" + in + "': " + std::strerror(errno));
        buf.clear();
        uint64_t file_bytes = 0;
        while (true) {
            const size_t keep = buf.size();
            buf.resize(keep + block);
            const size_t got = std::fread(buf.data() + keep, 1, block, f);
            buf.resize(keep + got);
            file_bytes += got;
            const bool eof = got < block;
            if (eof && std::ferror(f)) {
                if (f != stdin) std::fclose(f);
                throw std::runtime_error("cannot read data file '" + in + "': " + std::strerror(errno));
            }
            // Encode up to the last line break; the partial line waits for the next block.
            const size_t nl = std::string_view(buf.data(), buf.size()).rfind('\n');
            const size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
            if (buf.size() - line_start > k_max_line_bytes) {
                if (f != stdin) std::fclose(f);
                throw std::runtime_error("data file '" + in + "' has a line longer than " +
                                         std::to_string(k_max_line_bytes >> 20) + " MiB near byte " + std::to_string(file_bytes) +
                                         "; flashlm tokenize encodes one document per line (is it text?)");
            }
            const size_t cut = eof ? buf.size() : line_start;
            if (cut > 0) {
                encode_and_write(std::string_view(buf.data(), cut));
                buf.erase(buf.begin(), buf.begin() + std::ptrdiff_t(cut));
            }
            p.bytes += got;
            p.tokens = out.tokens(), p.documents = out.documents();
            p.seconds = std::chrono::duration<double>(clock::now() - t0).count();
            if (progress) progress(p, false);
            if (eof) break;
        }
        if (f != stdin) std::fclose(f);
    }
    p.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (progress) progress(p, true);
}

}  // namespace flashlm::data
