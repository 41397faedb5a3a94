#pragma once
// SentencePiece BPE with byte fallback (Debian libsentencepiece). The serialized model proto is what
// checkpoints embed, so one .safetensors file is all eval and generate need.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "flashlm/data/tokenizer.hpp"

namespace flashlm::data {

class SpTokenizer : public Tokenizer {
public:
    static SpTokenizer from_serialized(const std::string& proto) {
        SpTokenizer t;
        sentencepiece::util::Status st;
        try {
            st = t.sp_->LoadFromSerializedProto(proto);
        } catch (const std::exception& e) {
            // libsentencepiece's bundled darts-clone throws (e.g. "zero-length key") on some malformed
            // protos instead of returning a status; found by tests/fuzz/fuzz_tokenizer.
            throw std::runtime_error(std::string("tokenizer does not parse: ") + e.what());
        }
        if (!st.ok()) throw std::runtime_error("tokenizer does not parse: " + st.ToString());
        t.proto_ = proto;
        t.build_tables();
        return t;
    }
    static SpTokenizer load(const std::string& path) {
        SpTokenizer t;
        sentencepiece::util::Status st;
        try {
            st = t.sp_->Load(path);
        } catch (const std::exception& e) {
            throw std::runtime_error("tokenizer file '" + path + "' does not parse: " + e.what());
        }
        if (!st.ok()) throw std::runtime_error("tokenizer file '" + path + "' does not parse: " + st.ToString());
        t.proto_ = t.sp_->serialized_model_proto();
        t.build_tables();
        return t;
    }
    // Trains a BPE model on the given lines. hard_vocab_limit=false lets a small corpus produce fewer
    // pieces than asked; the caller reads vocab_size() and reports the difference.
    // model_type: "bpe" or "unigram".
    static SpTokenizer train(const std::vector<std::string_view>& lines, int vocab, int threads = 1,
                             const std::string& model_type = "bpe") {
        LineIterator it(lines);
        std::string proto;
        const std::string args = "--model_type=" + model_type + " --vocab_size=" + std::to_string(vocab) +
                                 " --byte_fallback=true --hard_vocab_limit=false --character_coverage=0.9995"
                                 " --max_sentence_length=65536 --minloglevel=2 --num_threads=" +
                                 std::to_string(threads < 1 ? 1 : threads);
        // The trainer logs its command line to stderr before it parses --minloglevel; failures come back
        // through the status, so silence stderr for the call.
        std::fflush(stderr);
        const int saved = ::dup(2), devnull = ::open("/dev/null", O_WRONLY);
        if (saved >= 0 && devnull >= 0) ::dup2(devnull, 2);
        auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
        if (saved >= 0 && devnull >= 0) ::dup2(saved, 2);
        if (devnull >= 0) ::close(devnull);
        if (saved >= 0) ::close(saved);
        if (!st.ok()) throw std::runtime_error("tokenizer training failed: " + st.ToString());
        return from_serialized(proto);
    }

    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int> ids;
        auto st = sp_->Encode(text, &ids);
        if (!st.ok()) throw std::runtime_error("encode failed: " + st.ToString());
        return std::vector<int32_t>(ids.begin(), ids.end());
    }
    std::string decode(const std::vector<int32_t>& ids) const override {
        std::string out;
        auto st = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
        if (!st.ok()) throw std::runtime_error("decode failed: " + st.ToString());
        return out;
    }
    int32_t vocab_size() const override { return sp_->GetPieceSize(); }
    int32_t eos_id() const override { return sp_->eos_id(); }
    bool is_control(int32_t id) const { return sp_->IsControl(id); }
    const std::string& serialized() const override { return proto_; }
    std::string kind() const override { return "sentencepiece"; }
    std::string file_name() const override { return "tokenizer.model"; }
    // UTF-8 bytes a token stands for in decoded text (▁ counts as one space byte, <0xAB> as one byte,
    // EOS as the one line break it replaces, other control tokens as zero); used for bits-per-byte.
    const std::vector<int>& piece_bytes() const override { return piece_bytes_; }

private:
    SpTokenizer() : sp_(std::make_shared<sentencepiece::SentencePieceProcessor>()) {}

    void build_tables() {
        const int n = sp_->GetPieceSize();
        piece_bytes_.assign(n, 0);
        for (int i = 0; i < n; ++i) {
            if (i == sp_->eos_id()) {  // end of story: stands for the line break it replaced
                piece_bytes_[i] = 1;
                continue;
            }
            if (sp_->IsControl(i)) continue;
            if (sp_->IsByte(i) || sp_->IsUnknown(i)) {
                piece_bytes_[i] = 1;
                continue;
            }
            const std::string& p = sp_->IdToPiece(i);
            int b = 0;
            for (size_t k = 0; k < p.size();) {
                if (p.compare(k, 3, "\xE2\x96\x81") == 0) {  // U+2581 stands for a space
                    b += 1;
                    k += 3;
                } else {
                    b += 1;
                    k += 1;
                }
            }
            piece_bytes_[i] = b;
        }
    }

    class LineIterator : public sentencepiece::SentenceIterator {
    public:
        explicit LineIterator(const std::vector<std::string_view>& l) : lines_(l) { load(); }
        bool done() const override { return i_ >= lines_.size(); }
        void Next() override {
            ++i_;
            load();
        }
        const std::string& value() const override { return cur_; }
        sentencepiece::util::Status status() const override { return {}; }

    private:
        void load() {
            if (i_ < lines_.size()) cur_.assign(lines_[i_]);
        }
        const std::vector<std::string_view>& lines_;
        size_t i_ = 0;
        std::string cur_;
    };

    std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string proto_;
    std::vector<int> piece_bytes_;
};

}  // namespace flashlm::data
