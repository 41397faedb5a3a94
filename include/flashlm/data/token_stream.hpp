#pragma once
// Token shards at scale: flat little-endian token files (uint16, the upstream .bin format; uint32 when the
// vocabulary exceeds 65,535 pieces), each with an optional JSON sidecar NAME.bin.json (dtype, token count,
// tokenizer hash, document count) and a document index NAME.docs (little-endian uint64 offsets of every
// document start). A TokenStream reads one file, or a directory of shards in name order, as one sequence
// through mmap: training touches only the pages its windows land on, so a corpus far larger than memory
// costs resident memory only for those pages.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace flashlm::data {

static_assert(std::endian::native == std::endian::little, "token files are little-endian; this host needs a byte swap");

// Bytes per token id: the upstream uint16 unless an id can exceed 65,535.
inline int token_width_for_vocab(int64_t vocab) { return vocab > 65535 ? 4 : 2; }
inline const char* token_dtype_name(int width) { return width == 4 ? "uint32" : "uint16"; }

// A read-only mapping of a whole file.
class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) throw std::runtime_error("cannot open token file '" + path + "': " + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            throw std::runtime_error("token file '" + path + "' is not a regular file");
        }
        size_ = size_t(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (p == MAP_FAILED) {
                const int err = errno;
                ::close(fd);
                throw std::runtime_error("cannot mmap '" + path + "': " + std::strerror(err));
            }
            data_ = static_cast<const unsigned char*>(p);
            ::madvise(p, size_, MADV_RANDOM);  // windows land anywhere: no read-ahead of pages never used
        }
        ::close(fd);
    }
    ~MappedFile() { release(); }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
    MappedFile& operator=(MappedFile&& o) noexcept {
        if (this != &o) {
            release();
            data_ = o.data_, size_ = o.size_;
            o.data_ = nullptr, o.size_ = 0;
        }
        return *this;
    }
    const unsigned char* data() const { return data_; }
    size_t size() const { return size_; }
    // Unmaps every page from this process (they stay in the page cache; the next read maps them again).
    void drop_pages() const {
        if (data_) ::madvise(const_cast<unsigned char*>(data_), size_, MADV_DONTNEED);
    }

    // Calls f(ptr, bytes, offset) over the file in 4 MiB pieces and drops each piece from this process's
    // resident set afterwards, so a full validation pass over a large file leaves resident memory flat
    // (the pages stay in the page cache).
    template <class F>
    void scan(F&& f) const {
        constexpr size_t chunk = size_t(4) << 20;
        for (size_t off = 0; off < size_; off += chunk) {
            const size_t n = std::min(chunk, size_ - off);
            f(data_ + off, n, off);
            ::madvise(const_cast<unsigned char*>(data_ + off), n, MADV_DONTNEED);
        }
    }

private:
    void release() {
        if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
        data_ = nullptr, size_ = 0;
    }
    const unsigned char* data_ = nullptr;
    size_t size_ = 0;
};

// What a token file must agree with: the tokenizer that will read it.
struct TokenCheck {
    int64_t vocab = 0;                // ids must lie below it (0: unchecked)
    uint64_t tokenizer_fnv1a = 0;     // must equal the sidecar's, when both are known
    bool check_tokenizer = false;
};

// One token file, mapped, validated, with its document starts (from NAME.docs or found by scanning).
class TokenShard {
public:
    static constexpr std::uintmax_t k_max_sidecar_bytes = 1u << 20;
    static std::shared_ptr<TokenShard> open(const std::string& path, const TokenCheck& chk) {
        auto s = std::shared_ptr<TokenShard>(new TokenShard());
        s->path_ = path;
        nlohmann::json side = nlohmann::json::object();
        const std::string side_path = path + ".json";
        if (std::filesystem::exists(side_path)) {
            // A sidecar is a few hundred bytes (its "sources" list grows with the inputs); a large one is
            // not ours, and parsing it would cost many times its size.
            std::error_code ec;
            const auto side_bytes = std::filesystem::file_size(side_path, ec);
            if (!ec && side_bytes > k_max_sidecar_bytes)
                throw std::runtime_error("sidecar '" + side_path + "' has " + std::to_string(side_bytes) + " bytes; a token file's sidecar has at most " +
                                         std::to_string(k_max_sidecar_bytes));
            try {
                std::ifstream f(side_path);
                side = nlohmann::json::parse(f);
                if (!side.is_object()) throw std::runtime_error("not a JSON object");
            } catch (const std::exception& e) {
                throw std::runtime_error("sidecar '" + side_path + "' does not parse: " + e.what());
            }
        }
        s->side_ = side;
        auto field = [&](const char* k) { return side.contains(k) ? side.at(k) : nlohmann::json(); };
        try {
            if (auto d = field("dtype"); !d.is_null()) {
                const std::string dt = d.get<std::string>();
                if (dt != "uint16" && dt != "uint32")
                    throw std::runtime_error("sidecar '" + side_path + "': dtype '" + dt + "' (expected uint16 or uint32)");
                s->width_ = dt == "uint32" ? 4 : 2;
            } else {
                s->width_ = token_width_for_vocab(chk.vocab);
            }
            for (const char* k : {"vocab_size", "tokenizer_fnv1a", "tokens", "documents"})
                if (auto v = field(k); !v.is_null() && !v.is_number_integer())
                    throw std::runtime_error("sidecar '" + side_path + "': " + k + " must be an integer, got " + v.dump().substr(0, 40));
            if (auto v = field("vocab_size"); !v.is_null() && chk.vocab > 0 && v.get<int64_t>() != chk.vocab)
                throw std::runtime_error("token file '" + path + "' was made with a tokenizer of " +
                                         std::to_string(v.get<int64_t>()) + " pieces (its sidecar says), but this one has " +
                                         std::to_string(chk.vocab) +
                                         "; tokenize again with this tokenizer, or train with the one the shards were made with");
            if (auto h = field("tokenizer_fnv1a"); !h.is_null() && chk.check_tokenizer && h.get<uint64_t>() != chk.tokenizer_fnv1a)
                throw std::runtime_error("token file '" + path + "' was made with another tokenizer (sidecar fnv1a " +
                                         std::to_string(h.get<uint64_t>()) + ", this tokenizer " +
                                         std::to_string(chk.tokenizer_fnv1a) +
                                         "); tokenize again with this tokenizer, or train with the one the shards were made with");
        } catch (const nlohmann::json::exception& e) {
            throw std::runtime_error("sidecar '" + side_path + "' has a malformed field: " + e.what());
        }
        s->file_ = MappedFile(path);
        const size_t bytes = s->file_.size();
        if (bytes == 0 || bytes % size_t(s->width_) != 0)
            throw std::runtime_error("token file '" + path + "' has " + std::to_string(bytes) + " bytes; expected a non-zero " +
                                     (s->width_ == 2 ? "even size (uint16 tokens)" : "multiple of 4 (uint32 tokens)"));
        s->tokens_ = bytes / size_t(s->width_);
        if (auto t = field("tokens"); t.is_number_integer() && t.get<uint64_t>() != s->tokens_)
            throw std::runtime_error("token file '" + path + "' holds " + std::to_string(s->tokens_) + " tokens but its sidecar says " +
                                     std::to_string(t.get<uint64_t>()) + " (truncated or rewritten after tokenizing?)");
        if (chk.vocab > 0) s->check_ids(chk.vocab);
        if (auto d = field("doc_index"); d.is_string()) s->open_doc_index(d.get<std::string>(), field("documents"));
        return s;
    }
    // A non-owning view of tokens in memory (tests, text evaluation).
    static std::shared_ptr<TokenShard> view(const uint16_t* p, size_t n) {
        auto s = std::shared_ptr<TokenShard>(new TokenShard());
        s->view_ = p, s->tokens_ = n, s->width_ = 2, s->path_ = "(memory)";
        return s;
    }

    size_t size() const { return tokens_; }
    int width() const { return width_; }
    const std::string& path() const { return path_; }
    const nlohmann::json& sidecar() const { return side_; }
    uint32_t at(size_t i) const {
        if (view_) return view_[i];
        const unsigned char* p = file_.data() + i * size_t(width_);
        if (width_ == 2) {
            uint16_t v;
            std::memcpy(&v, p, 2);
            return v;
        }
        uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
    }
    void copy(size_t pos, size_t n, int32_t* out) const {
        if (view_) {
            for (size_t i = 0; i < n; ++i) out[i] = view_[pos + i];
        } else if (width_ == 2) {
            const unsigned char* p = file_.data() + pos * 2;
            for (size_t i = 0; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, p + 2 * i, 2);
                out[i] = v;
            }
        } else {
            const unsigned char* p = file_.data() + pos * 4;
            for (size_t i = 0; i < n; ++i) {
                uint32_t v;
                std::memcpy(&v, p + 4 * i, 4);
                out[i] = int32_t(v);
            }
        }
    }

    void drop_pages() const { file_.drop_pages(), docs_file_.drop_pages(); }

    // Document starts, ascending: from the index file, or position 0 and every position after `eos`.
    bool has_doc_index() const { return docs_file_.size() > 0; }
    void index_documents(int32_t eos) {
        if (has_doc_index() || docs_scanned_) return;
        docs_.clear();
        docs_.push_back(0);
        auto note = [&](size_t i, uint32_t v) {
            if (int64_t(v) == int64_t(eos) && i + 1 < tokens_) docs_.push_back(i + 1);
        };
        if (view_) {
            for (size_t i = 0; i < tokens_; ++i) note(i, view_[i]);
        } else {
            file_.scan([&](const unsigned char*, size_t n, size_t off) {
                for (size_t i = off / size_t(width_), e = (off + n) / size_t(width_); i < e; ++i) note(i, at(i));
            });
        }
        docs_scanned_ = true;
    }
    size_t documents() const { return has_doc_index() ? docs_file_.size() / 8 : docs_.size(); }
    uint64_t document_start(size_t k) const {
        if (!has_doc_index()) return docs_[k];
        uint64_t v;
        std::memcpy(&v, docs_file_.data() + 8 * k, 8);
        return v;
    }
    // Index of the first document starting at or after pos.
    size_t first_document_at(size_t pos) const {
        size_t lo = 0, hi = documents();
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (document_start(mid) < pos) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

private:
    TokenShard() = default;

    void check_ids(int64_t vocab) const {
        file_.scan([&](const unsigned char* p, size_t n, size_t off) {
            const size_t cnt = n / size_t(width_);
            for (size_t i = 0; i < cnt; ++i) {
                uint32_t v;
                if (width_ == 2) {
                    uint16_t h;
                    std::memcpy(&h, p + 2 * i, 2);
                    v = h;
                } else {
                    std::memcpy(&v, p + 4 * i, 4);
                }
                if (int64_t(v) >= vocab)
                    throw std::runtime_error("token file '" + path_ + "': token " + std::to_string(v) + " at position " +
                                             std::to_string(off / size_t(width_) + i) + " is outside the vocabulary of " +
                                             std::to_string(vocab));
            }
        });
    }

    void open_doc_index(const std::string& name, const nlohmann::json& count) {
        // Only a file beside the shard: a sidecar from elsewhere must not make us map an arbitrary path.
        if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
            throw std::runtime_error("sidecar '" + path_ + ".json': doc_index '" + name +
                                     "' is not a file name in the shard's directory");
        const std::string p = (std::filesystem::path(path_).parent_path() / name).string();
        MappedFile f(p);
        const size_t n = f.size() / 8;
        if (f.size() % 8 != 0 || n == 0 || (count.is_number_integer() && count.get<uint64_t>() != n))
            throw std::runtime_error("document index '" + p + "' has " + std::to_string(f.size()) + " bytes; expected " +
                                     (count.is_number_integer() ? std::to_string(count.get<uint64_t>()) : std::string("a positive number of")) +
                                     " uint64 document starts (its sidecar's count)");
        uint64_t prev = 0;
        bool first = true;
        f.scan([&](const unsigned char* d, size_t bytes, size_t off) {
            for (size_t i = 0; i < bytes / 8; ++i) {
                uint64_t v;
                std::memcpy(&v, d + 8 * i, 8);
                if ((first && v != 0) || (!first && v <= prev) || v >= tokens_)
                    throw std::runtime_error("document index '" + p + "': entry " + std::to_string(off / 8 + i) + " (" +
                                             std::to_string(v) + ") is not an ascending start inside the " +
                                             std::to_string(tokens_) + " tokens of '" + path_ + "'");
                prev = v, first = false;
            }
        });
        docs_file_ = std::move(f);
    }

    std::string path_;
    nlohmann::json side_ = nlohmann::json::object();
    MappedFile file_, docs_file_;
    const uint16_t* view_ = nullptr;
    size_t tokens_ = 0;
    int width_ = 2;
    std::vector<uint64_t> docs_;
    bool docs_scanned_ = false;
};

// True for what `--data` treats as tokens rather than text: a directory or a NAME.bin file.
inline bool is_token_path(const std::string& path) {
    namespace fs = std::filesystem;
    if (fs::is_directory(path)) return true;
    const std::string ext = fs::path(path).extension().string();
    return ext == ".bin";
}

// The tokenizer that `flashlm tokenize` leaves beside its shards (DIR/tokenizer.model), if present.
inline std::string tokenizer_beside(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
    const fs::path t = dir / "tokenizer.model";
    return fs::exists(t) ? t.string() : std::string();
}

// Shard files of a directory (NAME.bin, in name order) or the one file given.
inline std::vector<std::string> token_shard_paths(const std::string& path) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    if (fs::is_directory(path)) {
        for (const auto& e : fs::directory_iterator(path))
            if (e.is_regular_file() && e.path().extension() == ".bin") out.push_back(e.path().string());
        std::sort(out.begin(), out.end());
        if (out.empty()) throw std::runtime_error("directory '" + path + "' holds no .bin token shards (make them with flashlm tokenize)");
    } else {
        if (!fs::exists(path)) throw std::runtime_error("cannot open token file '" + path + "': No such file or directory");
        out.push_back(path);
    }
    return out;
}

// A sequence of tokens over one or more shards (or a slice of them), read without copying.
class TokenStream {
public:
    TokenStream() = default;
    static TokenStream open(const std::string& path, const TokenCheck& chk) {
        TokenStream s;
        for (const auto& p : token_shard_paths(path)) s.append(TokenShard::open(p, chk));
        return s;
    }
    static TokenStream view(const uint16_t* p, size_t n) {
        TokenStream s;
        if (n > 0) s.append(TokenShard::view(p, n));
        return s;
    }

    size_t size() const { return total_; }
    size_t shards() const { return segs_.size(); }
    const TokenShard& shard(size_t i) const { return *segs_[i].shard; }
    uint32_t at(size_t i) const {
        const Segment& g = segment_of(i);
        return g.shard->at(g.begin + (i - g.offset));
    }
    // Tokens [pos, pos + n) into out, across shard boundaries.
    void copy(size_t pos, size_t n, int32_t* out) const {
        if (pos + n > total_) throw std::out_of_range("token stream: read past the end");
        // Mapped file pages count as resident, and one random window maps far more than it reads (the
        // kernel maps whole page-cache folios around a fault: ~2 MB per window measured on Debian 12's
        // kernel), so a long run over a 1 GB corpus would end with most of it in its RSS. Every
        // k_reads_per_drop reads the mappings are dropped (one madvise; the page cache keeps the data).
        if (++reads_ % k_reads_per_drop == 0) drop_pages();
        while (n > 0) {
            const Segment& g = segment_of(pos);
            const size_t local = pos - g.offset, take = std::min(n, (g.end - g.begin) - local);
            g.shard->copy(g.begin + local, take, out);
            out += take, pos += take, n -= take;
        }
    }
    // Tokens [b, e) as a stream of their own (shares the mappings).
    TokenStream slice(size_t b, size_t e) const {
        TokenStream s;
        for (const Segment& g : segs_) {
            const size_t gb = std::max(b, g.offset), ge = std::min(e, g.offset + (g.end - g.begin));
            if (gb < ge) s.append(g.shard, g.begin + (gb - g.offset), g.begin + (ge - g.offset));
        }
        return s;
    }
    // Position just after the first `eos` at or after pos (size() if none): where a held-out split can
    // begin without cutting a document.
    size_t next_document_boundary(size_t pos, int32_t eos) const {
        for (size_t i = pos; i < total_; ++i)
            if (int64_t(at(i)) == int64_t(eos)) return i + 1;
        return total_;
    }

    // Prepares document_start(): shards without an index file are scanned for `eos` once.
    void index_documents(int32_t eos) {
        docs_total_ = 0;
        last_query_ = size_t(-1);
        for (Segment& g : segs_) {
            g.shard->index_documents(eos);
            g.doc_begin = g.shard->first_document_at(g.begin);
            g.doc_end = g.shard->first_document_at(g.end);
            g.doc_offset = docs_total_;
            docs_total_ += g.doc_end - g.doc_begin;
        }
        docs_indexed_ = true;
        drop_pages();  // the binary searches above mapped folios all over the index files
    }
    bool documents_indexed() const { return docs_indexed_; }
    void drop_pages() const {
        for (const Segment& g : segs_) g.shard->drop_pages();
    }
    static constexpr size_t k_reads_per_drop = 16;
    size_t documents() const { return docs_total_; }
    // Stream position of document k (after index_documents).
    size_t document_start(size_t k) const {
        size_t lo = 0, hi = segs_.size();
        while (hi - lo > 1) {
            const size_t mid = (lo + hi) / 2;
            if (segs_[mid].doc_offset <= k) lo = mid;
            else hi = mid;
        }
        const Segment& g = segs_[lo];
        return g.offset + size_t(g.shard->document_start(g.doc_begin + (k - g.doc_offset)) - g.begin);
    }
    // Number of documents starting at or before pos (the last query is remembered: the sampler asks the
    // same one for every batch).
    size_t documents_starting_by(size_t pos) const {
        if (pos == last_query_ && docs_indexed_) return last_answer_;
        size_t lo = 0, hi = docs_total_;
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (document_start(mid) <= pos) lo = mid + 1;
            else hi = mid;
        }
        last_query_ = pos, last_answer_ = lo;
        return lo;
    }

private:
    struct Segment {
        std::shared_ptr<TokenShard> shard;
        size_t begin = 0, end = 0, offset = 0;
        size_t doc_begin = 0, doc_end = 0, doc_offset = 0;
    };
    void append(std::shared_ptr<TokenShard> s) {
        const size_t n = s->size();
        append(std::move(s), 0, n);
    }
    void append(std::shared_ptr<TokenShard> s, size_t b, size_t e) {
        segs_.push_back(Segment{std::move(s), b, e, total_});
        total_ += e - b;
        docs_indexed_ = false;
    }
    const Segment& segment_of(size_t pos) const {
        size_t lo = 0, hi = segs_.size();
        while (hi - lo > 1) {
            const size_t mid = (lo + hi) / 2;
            if (segs_[mid].offset <= pos) lo = mid;
            else hi = mid;
        }
        return segs_[lo];
    }

    std::vector<Segment> segs_;
    size_t total_ = 0, docs_total_ = 0;
    bool docs_indexed_ = false;
    mutable size_t reads_ = 0;
    mutable size_t last_query_ = size_t(-1), last_answer_ = 0;
};

}  // namespace flashlm::data
