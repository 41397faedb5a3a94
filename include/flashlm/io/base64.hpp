#pragma once
// Base64 for binary blobs inside safetensors metadata, which must be strings (the tokenizer model).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace flashlm::io {

inline std::string base64_encode(std::string_view in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out += tbl[v >> 18], out += tbl[(v >> 12) & 63], out += tbl[(v >> 6) & 63], out += tbl[v & 63];
    }
    if (i < in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | (i + 1 < in.size() ? uint32_t(uint8_t(in[i + 1])) << 8 : 0);
        out += tbl[v >> 18], out += tbl[(v >> 12) & 63];
        out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

inline std::string base64_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (in.size() % 4 != 0) throw std::runtime_error("base64: length is not a multiple of 4");
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        int a = val(in[i]), b = val(in[i + 1]);
        int c = in[i + 2] == '=' ? 0 : val(in[i + 2]), d = in[i + 3] == '=' ? 0 : val(in[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0) throw std::runtime_error("base64: invalid character");
        uint32_t v = uint32_t(a) << 18 | uint32_t(b) << 12 | uint32_t(c) << 6 | uint32_t(d);
        out += char(v >> 16);
        if (in[i + 2] != '=') out += char((v >> 8) & 255);
        if (in[i + 3] != '=') out += char(v & 255);
    }
    return out;
}

}  // namespace flashlm::io
