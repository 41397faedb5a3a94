#pragma once
// A `tokenizers` (Hugging Face) tokenizer.json of the byte-level BPE kind — what ByteLevelBPETokenizer and
// Tokenizer(BPE()) + ByteLevel pre-tokenizer save (upstream pipelines P5…P7): vocab, merges, added tokens,
// the ByteLevel pre-tokenizer (prefix space, GPT-2 split) and the ByteLevel decoder. Encoding follows the
// Rust library step for step: added tokens are cut out first (leftmost-longest, with single_word / lstrip /
// rstrip), every other piece is pre-tokenized and merged by rank (lowest rank first, leftmost on ties);
// characters missing from the vocabulary become unk / <0xXX> byte tokens or are dropped, as configured.
// Anything else in the file (normalizers, other models or pre-tokenizers, post-processors that add
// tokens, BPE dropout) is refused with one error naming it rather than encoded differently.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <memory>
#include <mutex>
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

namespace flashlm::data {

class HfTokenizer : public Tokenizer {
public:
    // `what` names the source in errors ("tokenizer file 'x.json'" or "embedded tokenizer").
    static HfTokenizer from_json(const std::string& text, const std::string& what = "tokenizer.json") {
        HfTokenizer t;
        t.json_ = text;
        try {
            t.parse(nlohmann::json::parse(text));
        } catch (const nlohmann::json::exception& e) {
            throw std::runtime_error(what + " does not parse: " + e.what());
        } catch (const std::runtime_error& e) {
            throw std::runtime_error(what + " does not parse: " + e.what());
        }
        return t;
    }
    static HfTokenizer load(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw std::runtime_error("cannot open tokenizer file '" + path + "'");
        std::ostringstream ss;
        ss << f.rdbuf();
        return from_json(ss.str(), "tokenizer file '" + path + "'");
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int32_t> ids;
        const unicode::CodePoints cp = unicode::decode(text);
        const std::string& s = cp.bytes;
        // Pass 1 cuts out the added tokens matched on raw text, pass 2 (after the — absent — normalizer)
        // those matched on normalized text, as the library's AddedVocabulary does.
        for (auto& [b, e, id] : split_added(s, 0, s.size(), raw_matchers_)) {
            if (id >= 0) {
                ids.push_back(id);
                continue;
            }
            for (auto& [b2, e2, id2] : split_added(s, b, e, norm_matchers_)) {
                if (id2 >= 0) ids.push_back(id2);
                else encode_piece(std::string_view(s).substr(b2, e2 - b2), ids);
            }
        }
        return ids;
    }

    // The library's Tokenizer.decode(ids, skip_special_tokens) (ids outside the vocabulary are dropped,
    // no decoder joins the tokens with spaces).
    std::string decode_like_library(const std::vector<int32_t>& ids, bool skip_special = true) const {
        std::vector<const std::string*> toks;
        for (int32_t id : ids) {
            if (id < 0 || size_t(id) >= id_to_token_.size() || !has_id_[size_t(id)]) continue;
            if (skip_special && is_special_[size_t(id)]) continue;
            toks.push_back(&id_to_token_[size_t(id)]);
        }
        if (!byte_level_decoder_) {
            std::string out;
            for (size_t i = 0; i < toks.size(); ++i) {
                if (i) out += ' ';
                out += *toks[i];
            }
            return out;
        }
        return byte_level_join(toks);
    }
    // Text for people: the library's decode, except that a byte-level tokenizer saved without a decoder
    // (upstream P52…P7) is still decoded byte-level rather than printed as joined byte markers.
    std::string decode(const std::vector<int32_t>& ids) const override {
        if (byte_level_decoder_ || !byte_level_pre_) return decode_like_library(ids, true);
        std::vector<const std::string*> toks;
        for (int32_t id : ids)
            if (id >= 0 && size_t(id) < id_to_token_.size() && has_id_[size_t(id)] && !is_special_[size_t(id)])
                toks.push_back(&id_to_token_[size_t(id)]);
        return byte_level_join(toks);
    }

    int32_t vocab_size() const override { return int32_t(id_to_token_.size()); }
    int32_t eos_id() const override { return eos_; }
    const std::string& serialized() const override { return json_; }
    const std::vector<int>& piece_bytes() const override { return piece_bytes_; }
    std::string kind() const override { return "tokenizer.json"; }
    std::string file_name() const override { return "tokenizer.json"; }
    int32_t token_to_id(const std::string& tok) const {
        auto it = added_ids_.find(tok);
        if (it != added_ids_.end()) return it->second;
        auto v = vocab_.find(tok);
        return v == vocab_.end() ? -1 : v->second;
    }
    bool has_decoder() const { return byte_level_decoder_; }

private:
    struct Added {
        std::string content;
        int32_t id;
        bool single_word, lstrip, rstrip, normalized, special;
    };
    struct Piece {
        size_t begin, end;
        int32_t id;  // -1: text to pre-tokenize
    };

    // The library's AddedVocabulary::find_matches over s[from, to) for one matcher set.
    std::vector<Piece> split_added(const std::string& s, size_t from, size_t to, const std::vector<size_t>& set) const {
        std::vector<Piece> out;
        if (set.empty() || from == to) {
            out.push_back({from, to, -1});
            return out;
        }
        const std::string_view text = std::string_view(s).substr(0, to);
        std::vector<size_t> next(set.size());
        for (size_t k = 0; k < set.size(); ++k) next[k] = text.find(added_[set[k]].content, from);
        size_t pos = from, start_offset = from;
        for (;;) {
            size_t best = std::string_view::npos, best_len = 0, which = 0;
            for (size_t k = 0; k < set.size(); ++k) {
                if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(added_[set[k]].content, pos);
                const size_t len = added_[set[k]].content.size();
                if (next[k] != std::string_view::npos && (next[k] < best || (next[k] == best && len > best_len)))
                    best = next[k], best_len = len, which = k;
            }
            if (best == std::string_view::npos) break;
            const Added& a = added_[set[which]];
            size_t start = best, stop = best + best_len;
            pos = stop;  // matches never overlap, even when one is skipped below
            if (a.single_word) {
                const bool start_space = start == from || !ends_with_word(text.substr(from, start - from));
                const bool stop_space = stop == to || !starts_with_word(text.substr(stop));
                if (!start_space || !stop_space) continue;
            }
            if (a.lstrip) start = std::max(space_start_at_end(text.substr(0, start), from), start_offset);
            if (a.rstrip) stop += space_len_at_start(text.substr(stop));
            if (start > start_offset) out.push_back({start_offset, start, -1});
            out.push_back({start, stop, a.id});
            start_offset = stop;
        }
        if (start_offset != to) out.push_back({start_offset, to, -1});
        return out;
    }
    static char32_t first_char(std::string_view s) {
        char32_t c = 0;
        size_t bad = 0;
        return s.empty() || !unicode::decode_one(s, 0, c, bad) ? 0 : c;
    }
    static char32_t last_char(std::string_view s) {
        size_t i = s.size();
        while (i > 0 && (uint8_t(s[i - 1]) & 0xC0) == 0x80) --i;
        return i == 0 ? 0 : first_char(s.substr(i - 1));
    }
    static bool starts_with_word(std::string_view s) { return !s.empty() && unicode::is_word_char(first_char(s)); }
    static bool ends_with_word(std::string_view s) { return !s.empty() && unicode::is_word_char(last_char(s)); }
    // Byte offset where the trailing whitespace of text[from, end) starts.
    static size_t space_start_at_end(std::string_view text, size_t from) {
        size_t i = text.size();
        while (i > from) {
            size_t j = i - 1;
            while (j > from && (uint8_t(text[j]) & 0xC0) == 0x80) --j;
            if (!unicode::is_space(first_char(text.substr(j)))) break;
            i = j;
        }
        return i;
    }
    static size_t space_len_at_start(std::string_view s) {
        size_t i = 0;
        while (i < s.size()) {
            char32_t c = 0;
            size_t bad = 0;
            const size_t k = unicode::decode_one(s, i, c, bad);
            if (!k || !unicode::is_space(c)) break;
            i += k;
        }
        return i;
    }

    void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
        if (piece.empty()) return;
        if (!byte_level_pre_) {
            bpe_word(std::string(piece), ids);
            return;
        }
        std::string buf;
        if (add_prefix_space_ && piece.front() != ' ') buf = " ";
        buf.append(piece);
        if (!use_regex_) {
            bpe_word(byte_level::encode_bytes(buf), ids);
            return;
        }
        const unicode::CodePoints cp = unicode::decode(buf);
        for (auto [b, e] : byte_level::gpt2_split(cp)) bpe_word(byte_level::encode_bytes(std::string_view(cp.bytes).substr(b, e - b)), ids);
    }

    // Words repeat: their ids are cached (as the library does), up to a bound, under a lock so that
    // encode stays usable from several threads.
    void bpe_word(const std::string& w, std::vector<int32_t>& ids) const {
        if (w.size() >= 256) return merge_word(w, ids);
        {
            std::lock_guard<std::mutex> lock(cache_->mu);
            auto it = cache_->words.find(w);
            if (it != cache_->words.end()) {
                ids.insert(ids.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        const size_t from = ids.size();
        merge_word(w, ids);
        std::lock_guard<std::mutex> lock(cache_->mu);
        if (cache_->words.size() < 100000) cache_->words.emplace(w, std::vector<int32_t>(ids.begin() + long(from), ids.end()));
    }

    // The library's BPE::merge_word + Word::merge_all.
    void merge_word(const std::string& w, std::vector<int32_t>& ids) const {
        if (ignore_merges_) {
            auto it = vocab_.find(w);
            if (it != vocab_.end()) {
                ids.push_back(it->second);
                return;
            }
        }
        struct Sym {
            int32_t id;
            int prev, next;
            bool alive;
        };
        std::vector<Sym> sy;
        int32_t pending_unk = -1;
        auto add = [&](int32_t id) {
            sy.push_back({id, int(sy.size()) - 1, int(sy.size()) + 1, true});
        };
        for (size_t i = 0; i < w.size();) {
            char32_t c = 0;
            size_t bad = 0;
            size_t k = unicode::decode_one(w, i, c, bad);
            if (!k) k = bad;
            const std::string ch = w.substr(i, k);
            i += k;
            auto it = vocab_.find(ch);
            if (it != vocab_.end()) {
                if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
                add(it->second);
                continue;
            }
            if (byte_fallback_) {
                std::vector<int32_t> bytes;
                for (unsigned char b : ch) {
                    char name[8];
                    std::snprintf(name, sizeof name, "<0x%02X>", unsigned(b));
                    auto bt = vocab_.find(name);
                    if (bt == vocab_.end()) break;
                    bytes.push_back(bt->second);
                }
                if (bytes.size() == ch.size()) {
                    for (int32_t b : bytes) add(b);
                    continue;
                }
            }
            if (unk_ >= 0) {
                if (!fuse_unk_) {
                    if (pending_unk >= 0) add(pending_unk);
                    pending_unk = unk_;
                } else if (pending_unk < 0) {
                    pending_unk = unk_;
                }
            }
        }
        if (pending_unk >= 0) add(pending_unk);
        if (sy.empty()) return;
        sy.back().next = -1;
        struct Merge {
            uint32_t rank;
            int pos;
            int32_t new_id;
            bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
        };
        std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> q;
        auto lookup = [&](int32_t a, int32_t b) -> const std::pair<uint32_t, int32_t>* {
            auto it = merges_.find(pair_key(a, b));
            return it == merges_.end() ? nullptr : &it->second;
        };
        for (int i = 0; i + 1 < int(sy.size()); ++i)
            if (auto m = lookup(sy[size_t(i)].id, sy[size_t(i) + 1].id)) q.push({m->first, i, m->second});
        while (!q.empty()) {
            const Merge top = q.top();
            q.pop();
            Sym& cur = sy[size_t(top.pos)];
            if (!cur.alive || cur.next < 0) continue;
            Sym& right = sy[size_t(cur.next)];
            auto m = lookup(cur.id, right.id);
            if (!m || m->second != top.new_id) continue;
            cur.id = top.new_id;
            right.alive = false;
            cur.next = right.next;
            if (cur.next >= 0) sy[size_t(cur.next)].prev = top.pos;
            if (cur.prev >= 0)
                if (auto p = lookup(sy[size_t(cur.prev)].id, cur.id)) q.push({p->first, cur.prev, p->second});
            if (cur.next >= 0)
                if (auto n = lookup(cur.id, sy[size_t(cur.next)].id)) q.push({n->first, top.pos, n->second});
        }
        for (int i = 0; i >= 0; i = sy[size_t(i)].next) ids.push_back(sy[size_t(i)].id);
    }

    // The ByteLevel decoder: each token's characters back to bytes (a token with a character outside the
    // alphabet contributes its UTF-8 as is), then one lossy UTF-8 decode of the whole.
    static std::string byte_level_join(const std::vector<const std::string*>& toks) {
        std::string bytes;
        for (const std::string* t : toks)
            if (!byte_level::decode_chars(*t, bytes)) bytes += *t;
        return unicode::repair_utf8(bytes);
    }

    static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

    static const nlohmann::json* field(const nlohmann::json& j, const char* k) {
        auto it = j.find(k);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    static bool flag(const nlohmann::json& j, const char* k, bool dflt) {
        auto f = field(j, k);
        if (!f) return dflt;
        if (!f->is_boolean()) throw std::runtime_error(std::string("'") + k + "' must be true or false");
        return f->get<bool>();
    }
    static std::string type_of(const nlohmann::json& j, const char* what) {
        if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
            throw std::runtime_error(std::string(what) + " has no \"type\"");
        return j["type"].get<std::string>();
    }

    void parse(const nlohmann::json& j) {
        if (!j.is_object()) throw std::runtime_error("not a JSON object");
        if (auto n = field(j, "normalizer"))
            throw std::runtime_error("normalizer '" + type_of(*n, "normalizer") +
                                     "' is not supported (byte-level BPE files have none)");
        if (field(j, "truncation")) throw std::runtime_error("truncation is not supported");
        if (field(j, "padding")) throw std::runtime_error("padding is not supported");
        if (auto p = field(j, "pre_tokenizer")) {
            const nlohmann::json* bl = p;
            if (type_of(*p, "pre_tokenizer") == "Sequence") {
                auto s = field(*p, "pretokenizers");
                if (!s || !s->is_array() || s->size() != 1)
                    throw std::runtime_error("a pre_tokenizer Sequence is supported only around a single ByteLevel");
                bl = &(*s)[0];
            }
            const std::string t = type_of(*bl, "pre_tokenizer");
            if (t != "ByteLevel") throw std::runtime_error("pre_tokenizer '" + t + "' is not supported (only ByteLevel)");
            byte_level_pre_ = true;
            add_prefix_space_ = flag(*bl, "add_prefix_space", true);
            use_regex_ = flag(*bl, "use_regex", true);
        }
        if (auto d = field(j, "decoder")) {
            const std::string t = type_of(*d, "decoder");
            if (t != "ByteLevel") throw std::runtime_error("decoder '" + t + "' is not supported (only ByteLevel)");
            byte_level_decoder_ = true;
        }
        if (auto pp = field(j, "post_processor")) {
            const std::string t = type_of(*pp, "post_processor");
            if (t != "ByteLevel")
                throw std::runtime_error("post_processor '" + t + "' is not supported (only ByteLevel, which adds no tokens)");
        }
        auto m = field(j, "model");
        if (!m || !m->is_object()) throw std::runtime_error("no \"model\"");
        if (m->contains("type") && type_of(*m, "model") != "BPE")
            throw std::runtime_error("model '" + type_of(*m, "model") + "' is not supported (only BPE)");
        if (auto d = field(*m, "dropout"))
            if (!d->is_number() || d->get<double>() != 0.0) throw std::runtime_error("BPE dropout is not supported");
        for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (auto f = field(*m, k))
                if (!f->is_string() || !f->get<std::string>().empty())
                    throw std::runtime_error(std::string("BPE '") + k + "' is not supported");
        fuse_unk_ = flag(*m, "fuse_unk", false);
        byte_fallback_ = flag(*m, "byte_fallback", false);
        ignore_merges_ = flag(*m, "ignore_merges", false);
        auto v = field(*m, "vocab");
        if (!v || !v->is_object()) throw std::runtime_error("model has no \"vocab\" object");
        int64_t max_id = -1;
        for (auto& [tok, id] : v->items()) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 0x7fffffff)
                throw std::runtime_error("vocab id of '" + tok + "' is not a non-negative integer");
            vocab_[tok] = int32_t(id.get<int64_t>());
            max_id = std::max(max_id, id.get<int64_t>());
        }
        if (auto u = field(*m, "unk_token")) {
            if (!u->is_string()) throw std::runtime_error("unk_token must be a string");
            auto it = vocab_.find(u->get<std::string>());
            if (it == vocab_.end()) throw std::runtime_error("unk_token '" + u->get<std::string>() + "' is not in the vocab");
            unk_ = it->second;
        }
        auto ms = field(*m, "merges");
        if (!ms || !ms->is_array()) throw std::runtime_error("model has no \"merges\" array");
        uint32_t rank = 0;
        for (const auto& e : *ms) {
            std::string a, b;
            if (e.is_string()) {
                const std::string s = e.get<std::string>();
                const size_t sp = s.find(' ');
                if (sp == std::string::npos) throw std::runtime_error("merge '" + s + "' is not two tokens separated by a space");
                a = s.substr(0, sp), b = s.substr(sp + 1);
            } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                a = e[0].get<std::string>(), b = e[1].get<std::string>();
            } else {
                throw std::runtime_error("merge #" + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
            }
            auto ia = vocab_.find(a), ib = vocab_.find(b), in = vocab_.find(a + b);
            if (ia == vocab_.end() || ib == vocab_.end() || in == vocab_.end())
                throw std::runtime_error("merge #" + std::to_string(rank) + " ('" + a + "', '" + b +
                                         "') names a token that is not in the vocab");
            merges_[pair_key(ia->second, ib->second)] = {rank++, in->second};
        }
        if (auto at = field(j, "added_tokens")) {
            if (!at->is_array()) throw std::runtime_error("added_tokens must be an array");
            for (const auto& a : *at) {
                if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
                    a["id"].get<int64_t>() > 0x7fffffff || !a.contains("content") || !a["content"].is_string() ||
                    a["content"].get<std::string>().empty())
                    throw std::runtime_error("an added token needs an integer \"id\" and a non-empty \"content\"");
                Added t{a["content"].get<std::string>(), int32_t(a["id"].get<int64_t>()), flag(a, "single_word", false),
                        flag(a, "lstrip", false), flag(a, "rstrip", false), flag(a, "normalized", true),
                        flag(a, "special", false)};
                max_id = std::max<int64_t>(max_id, t.id);
                added_ids_[t.content] = t.id;
                (t.normalized ? norm_matchers_ : raw_matchers_).push_back(added_.size());
                added_.push_back(t);
            }
        }
        if (max_id < 0) throw std::runtime_error("the vocab is empty");
        if (max_id >= 65535) throw std::runtime_error("ids up to " + std::to_string(max_id) + " do not fit uint16 token files");
        id_to_token_.assign(size_t(max_id + 1), {});
        has_id_.assign(size_t(max_id + 1), false);
        is_special_.assign(size_t(max_id + 1), false);
        for (auto& [tok, id] : vocab_) id_to_token_[size_t(id)] = tok, has_id_[size_t(id)] = true;
        for (auto& a : added_) {
            id_to_token_[size_t(a.id)] = a.content, has_id_[size_t(a.id)] = true;
            is_special_[size_t(a.id)] = a.special;
        }
        for (const char* name : {"<eos>", "<|eos|>", "</s>", "<|endoftext|>"}) {
            auto it = added_ids_.find(name);
            if (it != added_ids_.end()) {
                eos_ = it->second;
                break;
            }
        }
        piece_bytes_.assign(id_to_token_.size(), 0);
        for (size_t i = 0; i < id_to_token_.size(); ++i) {
            if (!has_id_[i]) continue;
            if (int32_t(i) == eos_) piece_bytes_[i] = 1;
            else if (is_special_[i]) piece_bytes_[i] = 0;
            else {
                std::string b;
                if (!byte_level_pre_ || !byte_level::decode_chars(id_to_token_[i], b)) b = id_to_token_[i];
                piece_bytes_[i] = int(b.size());
            }
        }
    }

    HfTokenizer() = default;
    struct Cache {
        std::mutex mu;
        std::unordered_map<std::string, std::vector<int32_t>> words;
    };
    std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();

    std::string json_;
    std::unordered_map<std::string, int32_t> vocab_, added_ids_;
    std::unordered_map<uint64_t, std::pair<uint32_t, int32_t>> merges_;  // (a, b) → (rank, merged id)
    std::vector<Added> added_;
    std::vector<size_t> raw_matchers_, norm_matchers_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> has_id_, is_special_;
    std::vector<int> piece_bytes_;
    int32_t unk_ = -1, eos_ = -1;
    bool byte_level_pre_ = false, add_prefix_space_ = true, use_regex_ = true, byte_level_decoder_ = false;
    bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace flashlm::data
