#pragma once
// A frequency remap over any base tokenizer (upstream P4, v4 "Bolt": tiktoken gpt2 ids remapped to a
// 10,000-token vocabulary). build() counts the base ids over the first `max_stories` lines of a corpus;
// ids 0…k−1 are the specials (default <pad> <unk> <bos> <eos>), the most frequent base ids follow in
// descending frequency (ties: first seen first, as Python's Counter.most_common), every other base id
// encodes to the UNK id. Decoding drops the specials (upstream: "decode drops ids < 4").
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "flashlm/data/tokenizer.hpp"
#include "flashlm/io/base64.hpp"

namespace flashlm::data {

class RemapTokenizer : public Tokenizer {
public:
    using BaseLoader = std::function<std::shared_ptr<const Tokenizer>(const std::string& blob)>;

    static RemapTokenizer build(std::shared_ptr<const Tokenizer> base, const std::vector<std::string_view>& stories,
                                int64_t vocab, size_t max_stories = 50000,
                                std::vector<std::string> specials = {"<pad>", "<unk>", "<bos>", "<eos>"},
                                int32_t unk_id = 1, int32_t eos_id = 3) {
        if (vocab <= int64_t(specials.size()) || vocab > 65535)
            throw std::invalid_argument("remap vocabulary must be in (" + std::to_string(specials.size()) + ", 65535]");
        std::vector<int64_t> count(size_t(base->vocab_size()), 0);
        std::vector<int32_t> order;  // base ids in first-seen order
        for (size_t s = 0; s < stories.size() && s < max_stories; ++s)
            for (int32_t id : base->encode(stories[s])) {
                if (id < 0 || id >= base->vocab_size()) continue;
                if (count[size_t(id)]++ == 0) order.push_back(id);
            }
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return count[size_t(a)] > count[size_t(b)]; });
        order.resize(std::min(order.size(), size_t(vocab) - specials.size()));
        RemapTokenizer t;
        t.base_ = std::move(base);
        t.specials_ = std::move(specials);
        t.unk_ = unk_id, t.eos_ = eos_id;
        t.base_ids_ = std::move(order);
        t.vocab_ = int32_t(vocab);
        t.finish();
        return t;
    }
    static RemapTokenizer from_json(const nlohmann::json& j, const BaseLoader& load_base) {
        RemapTokenizer t;
        auto need = [&](const char* k) -> const nlohmann::json& {
            if (!j.contains(k)) throw std::runtime_error(std::string("remap has no \"") + k + "\"");
            return j[k];
        };
        // Integers checked before conversion: a float or an out-of-range number must not wrap (or be UB).
        auto id = [](const nlohmann::json& v, const char* what) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 65535)
                throw std::runtime_error(std::string("remap ") + what + " must be an integer in [0, 65535], got " + v.dump().substr(0, 40));
            return int32_t(v.get<int64_t>());
        };
        t.specials_ = need("specials").get<std::vector<std::string>>();
        t.unk_ = id(need("unk_id"), "unk_id");
        t.eos_ = id(need("eos_id"), "eos_id");
        t.vocab_ = id(need("vocab_size"), "vocab_size");
        const auto& bi = need("base_ids");
        if (!bi.is_array() || bi.size() > 65535) throw std::runtime_error("remap base_ids must be an array of at most 65535 ids");
        for (const auto& v : bi) t.base_ids_.push_back(id(v, "base id"));
        const auto& b = need("base");
        t.base_ = load_base(b.is_string() ? io::base64_decode(b.get<std::string>()) : b.dump());
        const int32_t k = int32_t(t.specials_.size());
        if (t.vocab_ <= k || t.vocab_ > 65535 || int64_t(t.base_ids_.size()) > int64_t(t.vocab_) - k)
            throw std::runtime_error("remap vocab_size does not fit its specials and base ids");
        for (int32_t s : {t.unk_, t.eos_})
            if (s < 0 || s >= k) throw std::runtime_error("remap unk_id/eos_id must name one of the specials");
        for (int32_t id : t.base_ids_)
            if (id < 0 || id >= t.base_->vocab_size()) throw std::runtime_error("remap base id " + std::to_string(id) + " is outside the base vocabulary");
        t.finish();
        return t;
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int32_t> ids = base_->encode(text);
        for (int32_t& id : ids) id = id >= 0 && size_t(id) < to_new_.size() ? to_new_[size_t(id)] : unk_;
        return ids;
    }
    std::string decode(const std::vector<int32_t>& ids) const override {
        std::vector<int32_t> b;
        const int32_t k = int32_t(specials_.size());
        for (int32_t id : ids)
            if (id >= k && size_t(id - k) < base_ids_.size()) b.push_back(base_ids_[size_t(id - k)]);
        return base_->decode(b);
    }
    int32_t vocab_size() const override { return vocab_; }
    int32_t eos_id() const override { return eos_; }
    int32_t unk_id() const { return unk_; }
    const std::string& serialized() const override { return blob_; }
    const std::vector<int>& piece_bytes() const override { return piece_bytes_; }
    std::string kind() const override { return "remap"; }
    std::string file_name() const override { return "tokenizer.remap.json"; }
    const Tokenizer& base() const { return *base_; }
    // The base id behind new id `id` (-1 for the specials and unused ids).
    int32_t base_id(int32_t id) const {
        const int32_t k = int32_t(specials_.size());
        return id >= k && size_t(id - k) < base_ids_.size() ? base_ids_[size_t(id - k)] : -1;
    }

private:
    void finish() {
        const int32_t k = int32_t(specials_.size());
        to_new_.assign(size_t(base_->vocab_size()), unk_);
        for (size_t i = 0; i < base_ids_.size(); ++i) to_new_[size_t(base_ids_[i])] = k + int32_t(i);
        piece_bytes_.assign(size_t(vocab_), 0);
        piece_bytes_[size_t(eos_)] = 1;
        piece_bytes_[size_t(unk_)] = 1;
        for (size_t i = 0; i < base_ids_.size(); ++i)
            piece_bytes_[size_t(k) + i] = base_->piece_bytes()[size_t(base_ids_[i])];
        const std::string& bb = base_->serialized();
        nlohmann::json base_json;
        const bool json_base = !bb.empty() && bb[0] == '{';
        if (json_base) base_json = nlohmann::json::parse(bb);
        blob_ = nlohmann::json{{"flashlm_tokenizer", "remap/1"},
                               {"specials", specials_},
                               {"unk_id", unk_},
                               {"eos_id", eos_},
                               {"vocab_size", vocab_},
                               {"base_ids", base_ids_},
                               {"base", json_base ? base_json : nlohmann::json(io::base64_encode(bb))}}
                    .dump();
    }

    RemapTokenizer() = default;
    std::shared_ptr<const Tokenizer> base_;
    std::vector<std::string> specials_;
    std::vector<int32_t> base_ids_, to_new_;
    std::vector<int> piece_bytes_;
    std::string blob_;
    int32_t unk_ = 1, eos_ = 3, vocab_ = 0;
};

}  // namespace flashlm::data
