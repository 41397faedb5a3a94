#pragma once
// GPT-2's byte-level pieces: the pre-tokenizer pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (the `tokenizers` ByteLevel pre-tokenizer and tiktoken's gpt2/r50k encodings) matched by hand over code
// points, and the bytes_to_unicode alphabet that turns every byte into a printable character.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flashlm/data/unicode.hpp"

namespace flashlm::data::byte_level {

// [begin, end) byte ranges of the pattern's successive matches in `t.bytes`. The alternatives are tried in
// order at each position, as a backtracking regex engine does; the pattern matches every character, so
// the pieces tile the text.
inline std::vector<std::pair<uint32_t, uint32_t>> gpt2_split(const unicode::CodePoints& t) {
    using namespace unicode;
    const std::u32string& c = t.cp;
    const size_t n = c.size();
    enum : uint8_t { L, N, S, O };
    std::vector<uint8_t> cls(n);
    for (size_t i = 0; i < n; ++i) cls[i] = is_letter(c[i]) ? L : is_number(c[i]) ? N : is_space(c[i]) ? S : O;
    std::vector<std::pair<uint32_t, uint32_t>> out;
    size_t i = 0;
    auto run = [&](size_t j, uint8_t k) {
        while (j < n && cls[j] == k) ++j;
        return j;
    };
    while (i < n) {
        size_t e = i;
        if (c[i] == '\'' && i + 1 < n) {
            const char32_t a = c[i + 1], b = i + 2 < n ? c[i + 2] : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') e = i + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) e = i + 3;
        }
        if (e == i) {
            for (uint8_t k : {L, N, O}) {  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
                if (c[i] == ' ' && i + 1 < n && cls[i + 1] == k) e = run(i + 1, k);
                else if (cls[i] == k) e = run(i, k);
                if (e != i) break;
            }
        }
        if (e == i) {  // cls[i] == S: `\s+(?!\S)` leaves the last space to the next word, else `\s+`
            const size_t r = run(i, S);
            e = (r < n && r - i > 1) ? r - 1 : r;
        }
        out.emplace_back(t.offsets[i], t.offsets[e]);
        i = e;
    }
    return out;
}

// bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 for U+0100 upwards.
struct Alphabet {
    std::array<char32_t, 256> to_char{};
    std::array<std::string, 256> to_utf8{};
    std::array<int16_t, 324> to_byte{};  // code point → byte, -1 when not in the alphabet
    Alphabet() {
        to_byte.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_char[size_t(b)] = self ? char32_t(b) : char32_t(256 + extra++);
            unicode::append_utf8(to_utf8[size_t(b)], to_char[size_t(b)]);
            to_byte[to_char[size_t(b)]] = int16_t(b);
        }
    }
    int byte_of(char32_t c) const { return c < to_byte.size() ? to_byte[c] : -1; }
};

inline const Alphabet& alphabet() {
    static const Alphabet a;
    return a;
}

inline std::string encode_bytes(std::string_view bytes) {
    const Alphabet& a = alphabet();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) out += a.to_utf8[b];
    return out;
}

// A token's characters back to bytes; false (and `out` untouched) if one is outside the alphabet.
inline bool decode_chars(std::string_view token, std::string& out) {
    const Alphabet& a = alphabet();
    std::string tmp;
    for (size_t i = 0; i < token.size();) {
        char32_t c = 0;
        size_t bad = 0;
        const size_t k = unicode::decode_one(token, i, c, bad);
        if (!k) return false;
        const int b = a.byte_of(c);
        if (b < 0) return false;
        tmp += char(b);
        i += k;
    }
    out += tmp;
    return true;
}

}  // namespace flashlm::data::byte_level
