#pragma once
// Text → token ids: one tokenizer encode per line with EOS after each story (upstream P4 appends
// EOS after every story), cached as uint16 .bin files next to the checkpoint. A JSON sidecar records
// the source file's size and mtime and the tokenizer's hash; a matching sidecar means the cache is reused.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flashlm/data/tokenizer.hpp"
#include "flashlm/data/text.hpp"
#include "flashlm/data/token_file.hpp"
#include "flashlm/io/checkpoint.hpp"

namespace flashlm::data {

inline std::vector<int32_t> encode_lines(const Tokenizer& tok, std::string_view text) {
    if (tok.eos_id() < 0)
        throw std::runtime_error("the " + tok.kind() + " tokenizer has no end-of-story token to put after each line "
                                 "(an added token <eos>, <|eos|>, </s> or <|endoftext|>)");
    std::vector<int32_t> out;
    for (std::string_view line : split_lines(text)) {
        auto ids = tok.encode(line);
        out.insert(out.end(), ids.begin(), ids.end());
        out.push_back(tok.eos_id());
    }
    return out;
}

inline nlohmann::json source_stamp(const std::string& path, const std::string& part, const Tokenizer& tok) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat '" + path + "'");
    return {{"source", std::filesystem::absolute(path).string()},
            {"size", int64_t(st.st_size)},
            {"mtime", int64_t(st.st_mtime)},
            {"part", part},
            {"tokenizer_fnv1a", io::fnv1a(tok.serialized().data(), tok.serialized().size())}};
}

// Encodes `text` (the `part` of `source`) into cache_path unless a matching cache exists; returns the
// mapped token file.
inline TokenFile cached_tokens(const std::string& cache_path, const std::string& source, const std::string& part,
                               std::string_view text, const Tokenizer& tok) {
    const nlohmann::json stamp = source_stamp(source, part, tok);
    const std::string side = cache_path + ".json";
    if (std::filesystem::exists(cache_path) && std::filesystem::exists(side)) {
        try {
            std::ifstream f(side);
            if (nlohmann::json::parse(f) == stamp) return TokenFile(cache_path, tok.vocab_size());
        } catch (const std::exception& e) {
            // stale or damaged cache (e.g. an id outside the vocabulary, an odd size): rebuild it below
            std::fprintf(stderr, "note: rebuilding the token cache: %s\n", e.what());
        }
    }
    auto ids = encode_lines(tok, text);
    if (ids.size() < 2) throw std::runtime_error("'" + source + "' (" + part + ") holds too little text to train on");
    write_token_file(cache_path, ids);
    std::ofstream(side) << stamp.dump(2);
    return TokenFile(cache_path, tok.vocab_size());
}

}  // namespace flashlm::data
