#pragma once
// Writes token shards (see token_stream.hpp) one document at a time with constant memory: DIR/shard-NNNNN.bin
// (flat little-endian uint16, or uint32 above 65,535 pieces), its document index shard-NNNNN.docs and its
// sidecar shard-NNNNN.bin.json. A document never straddles two shards; each file is written under a .tmp
// name and renamed when complete, so a shard with a sidecar is whole.
#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/data/token_stream.hpp"

namespace flashlm::data {

class ShardWriter {
public:
    // `meta` goes into every sidecar (tokenizer hash, vocabulary, eos id, sources).
    ShardWriter(std::string dir, int64_t vocab, uint64_t shard_tokens, nlohmann::json meta)
        : dir_(std::move(dir)), vocab_(vocab), width_(token_width_for_vocab(vocab)),
          shard_tokens_(std::max<uint64_t>(shard_tokens, 1)), meta_(std::move(meta)) {}
    ~ShardWriter() {
        if (bin_) std::fclose(bin_), std::remove(tmp_bin_.c_str());
        if (docs_) std::fclose(docs_), std::remove(tmp_docs_.c_str());
    }
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // One document's ids (its end-of-text token included by the caller).
    void add_document(const int32_t* ids, size_t n) {
        if (n == 0) return;
        if (bin_ && cur_tokens_ > 0 && cur_tokens_ + n > shard_tokens_) close_shard();
        if (!bin_) open_shard();
        doc_buf_.push_back(cur_tokens_);
        for (size_t i = 0; i < n; ++i) {
            if (ids[i] < 0 || ids[i] >= vocab_)
                throw std::runtime_error(fmt::format("token id {} is outside the vocabulary of {}", ids[i], vocab_));
            if (width_ == 2) {
                const uint16_t v = uint16_t(ids[i]);
                buf_.insert(buf_.end(), reinterpret_cast<const char*>(&v), reinterpret_cast<const char*>(&v) + 2);
            } else {
                const uint32_t v = uint32_t(ids[i]);
                buf_.insert(buf_.end(), reinterpret_cast<const char*>(&v), reinterpret_cast<const char*>(&v) + 4);
            }
        }
        cur_tokens_ += n, ++cur_docs_;
        total_tokens_ += n, ++total_docs_;
        if (buf_.size() >= (size_t(1) << 22)) flush();
    }
    // Closes the last shard; returns the number of shards written.
    size_t finish() {
        if (bin_) close_shard();
        return shards_;
    }
    uint64_t tokens() const { return total_tokens_; }
    uint64_t documents() const { return total_docs_; }
    int width() const { return width_; }

private:
    std::string name(size_t i, const char* ext) const { return fmt::format("shard-{:05}{}", i, ext); }
    void open_shard() {
        namespace fs = std::filesystem;
        tmp_bin_ = (fs::path(dir_) / (name(shards_, ".bin") + ".tmp")).string();
        tmp_docs_ = (fs::path(dir_) / (name(shards_, ".docs") + ".tmp")).string();
        bin_ = std::fopen(tmp_bin_.c_str(), "wb");
        if (!bin_) throw std::runtime_error("cannot write '" + tmp_bin_ + "': " + std::strerror(errno));
        docs_ = std::fopen(tmp_docs_.c_str(), "wb");
        if (!docs_) throw std::runtime_error("cannot write '" + tmp_docs_ + "': " + std::strerror(errno));
        cur_tokens_ = cur_docs_ = 0;
    }
    void flush() {
        if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), bin_) != buf_.size())
            throw std::runtime_error("cannot write '" + tmp_bin_ + "': " + std::strerror(errno));
        if (!doc_buf_.empty() && std::fwrite(doc_buf_.data(), 8, doc_buf_.size(), docs_) != doc_buf_.size())
            throw std::runtime_error("cannot write '" + tmp_docs_ + "': " + std::strerror(errno));
        buf_.clear(), doc_buf_.clear();
    }
    void close_shard() {
        namespace fs = std::filesystem;
        flush();
        const bool ok = std::fflush(bin_) == 0 && std::fflush(docs_) == 0;
        const int err = errno;
        std::fclose(bin_), std::fclose(docs_);
        bin_ = docs_ = nullptr;
        const std::string bin = (fs::path(dir_) / name(shards_, ".bin")).string();
        const std::string docs = (fs::path(dir_) / name(shards_, ".docs")).string();
        if (!ok || std::rename(tmp_bin_.c_str(), bin.c_str()) != 0 || std::rename(tmp_docs_.c_str(), docs.c_str()) != 0)
            throw std::runtime_error("cannot write '" + bin + "': " + std::strerror(ok ? errno : err));
        nlohmann::json side = meta_;
        side["format"] = "flashlm-tokens";
        side["version"] = 1;
        side["dtype"] = token_dtype_name(width_);
        side["tokens"] = cur_tokens_;
        side["documents"] = cur_docs_;
        side["doc_index"] = name(shards_, ".docs");
        const std::string side_path = bin + ".json", tmp = side_path + ".tmp";
        {
            std::ofstream f(tmp);
            f << side.dump(2) << "\n";
            if (!f) throw std::runtime_error("cannot write '" + tmp + "'");
        }
        if (std::rename(tmp.c_str(), side_path.c_str()) != 0)
            throw std::runtime_error("cannot write '" + side_path + "': " + std::strerror(errno));
        ++shards_;
    }

    std::string dir_;
    int64_t vocab_;
    int width_;
    uint64_t shard_tokens_;
    nlohmann::json meta_;
    std::FILE* bin_ = nullptr;
    std::FILE* docs_ = nullptr;
    std::string tmp_bin_, tmp_docs_;
    std::vector<char> buf_;
    std::vector<uint64_t> doc_buf_;
    uint64_t cur_tokens_ = 0, cur_docs_ = 0, total_tokens_ = 0, total_docs_ = 0;
    size_t shards_ = 0;
};

}  // namespace flashlm::data
