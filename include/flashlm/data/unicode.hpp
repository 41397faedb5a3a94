#pragma once
// UTF-8 code points and the Unicode character classes the byte-level pre-tokenizers need (\p{L}, \p{N},
// White_Space, \w), from ICU's property tables (Debian libicu-dev) rather than hand-copied ranges.
#include <unicode/uchar.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flashlm::data::unicode {

// The text as code points with the byte offset of each (offsets has one more entry: the end). Invalid
// UTF-8 becomes U+FFFD, one per maximal ill-formed subpart (the Unicode/WHATWG rule that Python's
// errors="replace", Node's Buffer.toString and Rust's from_utf8_lossy share), so `bytes` is that repaired
// text and offsets index into it.
struct CodePoints {
    std::u32string cp;
    std::vector<uint32_t> offsets;
    std::string bytes;
};

inline void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += char(c);
    } else if (c < 0x800) {
        out += char(0xC0 | (c >> 6));
        out += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += char(0xE0 | (c >> 12));
        out += char(0x80 | ((c >> 6) & 0x3F));
        out += char(0x80 | (c & 0x3F));
    } else {
        out += char(0xF0 | (c >> 18));
        out += char(0x80 | ((c >> 12) & 0x3F));
        out += char(0x80 | ((c >> 6) & 0x3F));
        out += char(0x80 | (c & 0x3F));
    }
}

// Decodes one code point at s[i]; returns its length, or 0 with `bad` = bytes of the ill-formed subpart.
inline size_t decode_one(std::string_view s, size_t i, char32_t& c, size_t& bad) {
    const auto b = [&](size_t k) { return uint8_t(s[k]); };
    const uint8_t b0 = b(i);
    if (b0 < 0x80) {
        c = b0;
        return 1;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 1, c = b0 & 0x1F;
    else if (b0 == 0xE0) need = 2, lo = 0xA0, c = b0 & 0x0F;
    else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) need = 2, c = b0 & 0x0F;
    else if (b0 == 0xED) need = 2, hi = 0x9F, c = b0 & 0x0F;
    else if (b0 == 0xF0) need = 3, lo = 0x90, c = b0 & 0x07;
    else if (b0 >= 0xF1 && b0 <= 0xF3) need = 3, c = b0 & 0x07;
    else if (b0 == 0xF4) need = 3, hi = 0x8F, c = b0 & 0x07;
    else {
        bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; ++k) {
        if (i + k >= s.size() || b(i + k) < lo || b(i + k) > hi) {
            bad = k;
            return 0;
        }
        c = (c << 6) | (b(i + k) & 0x3F);
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

inline CodePoints decode(std::string_view s) {
    CodePoints r;
    r.cp.reserve(s.size());
    r.offsets.reserve(s.size() + 1);
    r.bytes.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        char32_t c = 0;
        size_t bad = 0;
        const size_t n = decode_one(s, i, c, bad);
        r.offsets.push_back(uint32_t(r.bytes.size()));
        if (n) {
            r.cp.push_back(c);
            r.bytes.append(s.substr(i, n));
            i += n;
        } else {
            r.cp.push_back(0xFFFD);
            r.bytes += "\xEF\xBF\xBD";
            i += bad;
        }
    }
    r.offsets.push_back(uint32_t(r.bytes.size()));
    return r;
}

// Bytes → valid UTF-8 with U+FFFD replacements (the lossy decode of every byte-level decoder).
inline std::string repair_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i)
        if (uint8_t(s[i]) >= 0x80) return decode(s).bytes;
    return std::string(s);
}

inline bool is_letter(char32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return (U_GET_GC_MASK(UChar32(c)) & U_GC_L_MASK) != 0;
}
inline bool is_number(char32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return (U_GET_GC_MASK(UChar32(c)) & U_GC_N_MASK) != 0;
}
// \s of Oniguruma (the `tokenizers` library), of Rust's regex crate (tiktoken) and Rust's
// char::is_whitespace: the White_Space property. JavaScript's \s differs at U+0085 and U+FEFF.
inline bool is_space(char32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return u_isUWhiteSpace(UChar32(c)) != 0;
}
// \w of Rust's regex crate (added tokens' single_word): Alphabetic, marks, decimal digits, connector
// punctuation, Join_Control.
inline bool is_word_char(char32_t c) {
    if (c < 0x80) return is_letter(c) || is_number(c) || c == '_';
    return u_hasBinaryProperty(UChar32(c), UCHAR_ALPHABETIC) ||
           (U_GET_GC_MASK(UChar32(c)) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 ||
           u_hasBinaryProperty(UChar32(c), UCHAR_JOIN_CONTROL);
}

}  // namespace flashlm::data::unicode
