#pragma once
// tiktoken's byte-pair encoding with the GPT-2 split (`gpt2` / `r50k_base`): rank table of byte strings,
// each piece of the pattern looked up whole first, else merged from single bytes by lowest rank
// (leftmost on ties), as tiktoken's byte_pair_merge. Text is encoded as tiktoken's encode_ordinary (a
// literal "<|endoftext|>" in the text is text). Ranks come from a `.tiktoken` file ("base64 rank" per
// line) or from the js-tiktoken npm package's ranks module (ranks/gpt2.js: JSON with the compressed
// "bpe_ranks"), which scripts/install-deps.sh installs.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "flashlm/data/byte_level.hpp"
#include "flashlm/data/tokenizer.hpp"
#include "flashlm/data/unicode.hpp"
#include "flashlm/io/base64.hpp"

namespace flashlm::data {

inline constexpr const char* k_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
inline constexpr const char* k_gpt2_pattern_tiktoken =
    "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class TiktokenBpe : public Tokenizer {
public:
    // A .tiktoken file, a js-tiktoken ranks module (.js/.cjs) or this class's own serialized JSON.
    static TiktokenBpe load(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw std::runtime_error("cannot open tiktoken ranks '" + path + "'");
        std::ostringstream ss;
        ss << f.rdbuf();
        return parse(ss.str(), "tiktoken ranks '" + path + "'");
    }
    static TiktokenBpe parse(const std::string& text, const std::string& what = "tiktoken ranks") {
        TiktokenBpe t;
        try {
            const size_t first = text.find_first_not_of(" \t\r\n");
            const std::string_view head = std::string_view(text).substr(0, 256);
            const bool is_module = first != std::string::npos &&
                                (text[first] == '{' || head.find("export default") != std::string_view::npos ||
                                 head.find("module.exports") != std::string_view::npos);
            if (is_module) {
                const size_t brace = text.find('{'), close = text.rfind('}');
                if (brace == std::string::npos || close == std::string::npos || close < brace)
                    throw std::runtime_error("no JSON object in the module");
                t.parse_module(nlohmann::json::parse(text.substr(brace, close - brace + 1)));
            } else {
                t.parse_tiktoken(text);
            }
            t.finish();
        } catch (const std::exception& e) {
            throw std::runtime_error(what + " does not parse: " + e.what());
        }
        return t;
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int32_t> ids;
        const unicode::CodePoints cp = unicode::decode(text);
        for (auto [b, e] : byte_level::gpt2_split(cp)) encode_piece(std::string_view(cp.bytes).substr(b, e - b), ids);
        return ids;
    }
    // Bytes of the tokens (special tokens as their text), lossy UTF-8 (tiktoken's errors="replace").
    std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special) const {
        std::string bytes;
        for (int32_t id : ids) {
            if (id < 0 || size_t(id) >= tokens_.size()) continue;
            if (skip_special && is_special_[size_t(id)]) continue;
            bytes += tokens_[size_t(id)];
        }
        return unicode::repair_utf8(bytes);
    }
    std::string decode(const std::vector<int32_t>& ids) const override { return decode_bytes(ids, true); }
    int32_t vocab_size() const override { return int32_t(tokens_.size()); }
    int32_t eos_id() const override { return eos_; }
    const std::string& serialized() const override { return blob_; }
    const std::vector<int>& piece_bytes() const override { return piece_bytes_; }
    std::string kind() const override { return "tiktoken"; }
    std::string file_name() const override { return "tokenizer.tiktoken.json"; }
    // The bytes of token `id` ("" outside the vocabulary).
    const std::string& token_bytes(int32_t id) const {
        static const std::string none;
        return id >= 0 && size_t(id) < tokens_.size() ? tokens_[size_t(id)] : none;
    }
    bool is_special(int32_t id) const { return id >= 0 && size_t(id) < is_special_.size() && is_special_[size_t(id)]; }

private:
    void encode_piece(std::string_view p, std::vector<int32_t>& ids) const {
        auto whole = ranks_.find(std::string(p));
        if (whole != ranks_.end()) {
            ids.push_back(whole->second);
            return;
        }
        // parts[i] = [start_i, start_{i+1}); a min-heap of (rank, start) with stale entries skipped.
        const size_t n = p.size();
        std::vector<size_t> end(n), prev(n);
        std::vector<bool> alive(n, true);
        for (size_t i = 0; i < n; ++i) end[i] = i + 1, prev[i] = i - 1;
        struct M {
            int32_t rank;
            size_t start, mid, stop;
            bool operator>(const M& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
        };
        std::priority_queue<M, std::vector<M>, std::greater<M>> q;
        auto push = [&](size_t a) {
            if (a >= n || !alive[a] || end[a] >= n) return;
            const size_t b = end[a];
            auto it = ranks_.find(std::string(p.substr(a, end[b] - a)));
            if (it != ranks_.end()) q.push({it->second, a, b, end[b]});
        };
        for (size_t i = 0; i + 1 < n; ++i) push(i);
        while (!q.empty()) {
            const M m = q.top();
            q.pop();
            if (!alive[m.start] || end[m.start] != m.mid || !alive[m.mid] || end[m.mid] != m.stop) continue;
            alive[m.mid] = false;
            end[m.start] = m.stop;
            if (m.stop < n) prev[m.stop] = m.start;
            if (m.start > 0) push(prev[m.start]);
            push(m.start);
        }
        for (size_t i = 0; i < n; i = end[i]) {
            auto it = ranks_.find(std::string(p.substr(i, end[i] - i)));
            if (it == ranks_.end())  // a byte missing from the table: tiktoken would fail here too
                throw std::runtime_error("tiktoken ranks have no token for a byte of the input");
            ids.push_back(it->second);
        }
    }

    void add(const std::string& bytes, int64_t rank) {
        if (rank < 0 || rank >= 65535) throw std::runtime_error("rank " + std::to_string(rank) + " is outside [0, 65535)");
        if (bytes.empty()) throw std::runtime_error("an empty token");
        ranks_[bytes] = int32_t(rank);
    }
    void parse_tiktoken(const std::string& text) {
        std::istringstream in(text);
        std::string line;
        size_t no = 0;
        while (std::getline(in, line)) {
            ++no;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) continue;
            const size_t sp = line.find(' ');
            if (sp == std::string::npos) throw std::runtime_error("line " + std::to_string(no) + " is not 'base64 rank'");
            size_t used = 0;
            int64_t r = -1;
            try {
                r = std::stoll(line.substr(sp + 1), &used);
            } catch (const std::exception&) {
            }
            if (r < 0 || used != line.size() - sp - 1) throw std::runtime_error("line " + std::to_string(no) + " has no rank");
            add(io::base64_decode(line.substr(0, sp)), r);
        }
        specials_["<|endoftext|>"] = -1;  // placed after the ranks in finish(), as tiktoken's gpt2
    }
    void parse_module(const nlohmann::json& j) {
        if (!j.is_object() || !j.contains("bpe_ranks") || !j["bpe_ranks"].is_string())
            throw std::runtime_error("no \"bpe_ranks\" string");
        if (j.contains("pat_str")) {
            const std::string pat = j["pat_str"].get<std::string>();
            if (pat != k_gpt2_pattern && pat != k_gpt2_pattern_tiktoken)
                throw std::runtime_error("pattern '" + pat + "' is not GPT-2's (only the gpt2/r50k split is implemented)");
        }
        std::istringstream in(j["bpe_ranks"].get<std::string>());
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            std::istringstream ls(line);
            std::string marker, tok;
            int64_t offset = -1;
            if (!(ls >> marker >> offset) || offset < 0) throw std::runtime_error("a bpe_ranks line has no offset");
            for (int64_t i = 0; ls >> tok; ++i) add(io::base64_decode(tok), offset + i);
        }
        if (j.contains("special_tokens")) {
            if (!j["special_tokens"].is_object()) throw std::runtime_error("special_tokens must be an object");
            for (auto& [k, v] : j["special_tokens"].items()) {
                if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= 65535)
                    throw std::runtime_error("special token '" + k + "' has no integer id in [0, 65535)");
                specials_[k] = v.get<int64_t>();
            }
        }
    }
    void finish() {
        if (ranks_.empty()) throw std::runtime_error("no ranks");
        int64_t n = 0;
        for (auto& [b, r] : ranks_) n = std::max<int64_t>(n, r + 1);
        for (auto& [s, id] : specials_)
            if (id < 0) id = n;
        for (auto& [s, id] : specials_) n = std::max<int64_t>(n, id + 1);
        if (n > 65535) throw std::runtime_error(std::to_string(n) + " tokens do not fit uint16 token files");
        // Two tokens of one rank would share an id, and the serialized form (one token per rank) would
        // drop one of them, so a checkpoint could not load its own tokenizer; tiktoken refuses them too.
        std::vector<const std::string*> by_rank(size_t(n), nullptr);
        for (auto& [b, r] : ranks_) {
            if (by_rank[size_t(r)])
                throw std::runtime_error("rank " + std::to_string(r) + " is given to two tokens");
            by_rank[size_t(r)] = &b;
        }
        tokens_.assign(size_t(n), {});
        is_special_.assign(size_t(n), false);
        for (auto& [b, r] : ranks_) tokens_[size_t(r)] = b;
        for (auto& [s, id] : specials_) {
            if (id < 0 || id >= n) throw std::runtime_error("special token id out of range");
            tokens_[size_t(id)] = s, is_special_[size_t(id)] = true;
        }
        for (int b = 0; b < 256; ++b)
            if (!ranks_.count(std::string(1, char(b))))
                throw std::runtime_error("no token for byte " + std::to_string(b) + " (every byte needs one)");
        auto eot = specials_.find("<|endoftext|>");
        eos_ = eot == specials_.end() ? -1 : int32_t(eot->second);
        piece_bytes_.assign(size_t(n), 0);
        for (size_t i = 0; i < size_t(n); ++i) piece_bytes_[i] = is_special_[i] ? (int32_t(i) == eos_ ? 1 : 0) : int(tokens_[i].size());
        // The compact serialized form: js-tiktoken's layout, one line per run of consecutive ranks.
        std::string lines;
        for (size_t r = 0; r < by_rank.size();) {
            if (!by_rank[r]) {
                ++r;
                continue;
            }
            lines += lines.empty() ? "! " : "\n! ";
            lines += std::to_string(r);
            for (; r < by_rank.size() && by_rank[r]; ++r) {
                lines += ' ';
                lines += io::base64_encode(*by_rank[r]);
            }
        }
        nlohmann::json sp = nlohmann::json::object();
        for (auto& [s, id] : specials_) sp[s] = id;
        blob_ = nlohmann::json{{"flashlm_tokenizer", "tiktoken/1"}, {"pat_str", k_gpt2_pattern}, {"special_tokens", sp},
                               {"bpe_ranks", lines}}
                    .dump();
    }

    TiktokenBpe() = default;
    std::unordered_map<std::string, int32_t> ranks_;
    std::unordered_map<std::string, int64_t> specials_;
    std::vector<std::string> tokens_;
    std::vector<bool> is_special_;
    std::vector<int> piece_bytes_;
    std::string blob_;
    int32_t eos_ = -1;
};

}  // namespace flashlm::data
