#pragma once
// What training, evaluation and generation need from a tokenizer, whatever its kind: SentencePiece
// (sp_tokenizer.hpp), a `tokenizers` tokenizer.json (hf_tokenizer.hpp), tiktoken ranks (tiktoken_bpe.hpp)
// and the frequency remap over any of them (remap_tokenizer.hpp). load_tokenizer.hpp reads any of them
// from a file or from the blob a checkpoint embeds.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flashlm::data {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    virtual std::vector<int32_t> encode(std::string_view text) const = 0;
    // Text for people (special tokens dropped).
    virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
    virtual int32_t vocab_size() const = 0;
    // The end-of-story token training appends after every line; -1 if the tokenizer has none.
    virtual int32_t eos_id() const = 0;
    // Self-describing bytes that load_tokenizer.hpp's tokenizer_from_blob turns back into this tokenizer;
    // what checkpoints embed.
    virtual const std::string& serialized() const = 0;
    // UTF-8 bytes each token stands for in decoded text (EOS: the one line break it replaces); bits per byte.
    virtual const std::vector<int>& piece_bytes() const = 0;
    // "sentencepiece", "tokenizer.json", "tiktoken", "remap"
    virtual std::string kind() const = 0;
    // File name (in the run folder) a copy of serialized() is written under.
    virtual std::string file_name() const = 0;
};

}  // namespace flashlm::data
