#pragma once
// Plain-text corpus loading and the held-out split.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace flashlm::data {

inline std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open data file '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    if (s.find_first_not_of(" \t\r\n") == std::string::npos)
        throw std::runtime_error("data file '" + path + "' is empty");
    return s;
}

// Last `val_fraction` of the text, cut at the first line break at or after the split point, so no
// story straddles the two sets. Returns {train, val}.
inline std::pair<std::string_view, std::string_view> split_train_val(std::string_view text, double val_fraction = 0.1) {
    size_t cut = text.find('\n', size_t(double(text.size()) * (1.0 - val_fraction)));
    if (cut == std::string_view::npos || cut + 1 >= text.size() ||
        text.substr(cut + 1).find_first_not_of(" \t\r\n") == std::string_view::npos)
        throw std::runtime_error(
            "cannot hold out a validation split: the text has no line break in its last 10%; pass --val-data FILE");
    return {text.substr(0, cut + 1), text.substr(cut + 1)};
}

// Non-empty lines (TinyStories text holds one story or paragraph per line).
inline std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> out;
    size_t p = 0;
    while (p < text.size()) {
        size_t e = text.find('\n', p);
        if (e == std::string_view::npos) e = text.size();
        std::string_view line = text.substr(p, e - p);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find_first_not_of(" \t") != std::string_view::npos) out.push_back(line);
        p = e + 1;
    }
    return out;
}

}  // namespace flashlm::data
