#pragma once
// Characters (Unicode code points) each token stands for in decoded text, the per-character twin of
// SpTokenizer::piece_bytes() and on the same conventions: ▁ is one space, EOS the one line break it
// replaced, other control tokens nothing. A byte-fallback piece <0xAB> counts 1 when it starts a UTF-8
// sequence and 0 for a continuation byte, so the pieces of any valid text sum to its character count.
#include <sentencepiece_processor.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "flashlm/data/sp_tokenizer.hpp"

namespace flashlm::data {

inline bool utf8_lead(unsigned char c) { return (c & 0xC0) != 0x80; }

// Code points of UTF-8 text (bytes that are not continuation bytes), as Python's len() of valid text.
inline int64_t utf8_chars(std::string_view s) {
    int64_t n = 0;
    for (unsigned char c : s) n += utf8_lead(c);
    return n;
}

inline std::vector<int> sp_piece_chars(const SpTokenizer& tok) {
    sentencepiece::SentencePieceProcessor sp;
    if (!sp.LoadFromSerializedProto(tok.serialized()).ok()) throw std::runtime_error("tokenizer does not parse");
    const int n = sp.GetPieceSize();
    std::vector<int> out(size_t(n), 0);
    for (int i = 0; i < n; ++i) {
        if (i == sp.eos_id()) {
            out[size_t(i)] = 1;
        } else if (sp.IsControl(i)) {
            out[size_t(i)] = 0;
        } else if (sp.IsUnknown(i)) {
            out[size_t(i)] = 1;
        } else if (sp.IsByte(i)) {
            // "<0xAB>"
            const std::string& p = sp.IdToPiece(i);
            const unsigned long v = p.size() == 6 ? std::stoul(p.substr(3, 2), nullptr, 16) : 0;
            out[size_t(i)] = utf8_lead(static_cast<unsigned char>(v)) ? 1 : 0;
        } else {
            out[size_t(i)] = int(utf8_chars(sp.IdToPiece(i)));  // U+2581 is one code point: one space
        }
    }
    return out;
}

// Any tokenizer: SentencePiece exactly as above; others (byte-level BPE, GPT-2 + remap) count the UTF-8
// lead bytes of each token's decoded text, which is exact for tokens that hold whole characters and
// counts a character split across tokens where its replacement-character decode lands.
inline std::vector<int> piece_chars(const Tokenizer& tok) {
    if (auto* sp = dynamic_cast<const SpTokenizer*>(&tok)) return sp_piece_chars(*sp);
    std::vector<int> out(size_t(tok.vocab_size()), 0);
    for (int32_t i = 0; i < tok.vocab_size(); ++i)
        out[size_t(i)] = i == tok.eos_id() ? 1 : int(utf8_chars(tok.decode({i})));
    return out;
}

}  // namespace flashlm::data
