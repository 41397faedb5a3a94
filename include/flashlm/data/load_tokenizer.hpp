#pragma once
// Any supported tokenizer from a file or from the blob a checkpoint embeds, told apart by content: a
// `tokenizers` tokenizer.json (JSON with "model"), flashlm's own JSON ("flashlm_tokenizer": "tiktoken/1"
// or "remap/1"), tiktoken ranks (a .tiktoken file or js-tiktoken's ranks module), else a SentencePiece
// model proto. A file or blob that is none of them ends in one runtime_error naming it.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "flashlm/data/hf_tokenizer.hpp"
#include "flashlm/data/remap_tokenizer.hpp"
#include "flashlm/data/sp_tokenizer.hpp"
#include "flashlm/data/tiktoken_bpe.hpp"
#include "flashlm/data/tokenizer.hpp"

namespace flashlm::data {

namespace detail {
inline bool looks_like_tiktoken_lines(const std::string& s) {
    // "<base64> <rank>\n" lines: the first line has exactly one space and digits after it.
    const size_t nl = std::min(s.find('\n'), s.size());
    const std::string first = s.substr(0, nl);
    const size_t sp = first.find(' ');
    if (sp == 0 || sp == std::string::npos || sp + 1 >= first.size()) return false;
    for (size_t i = 0; i < sp; ++i) {
        const char c = first[i];
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
    }
    for (size_t i = sp + 1; i < first.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(first[i])) && !(first[i] == '\r' && i + 1 == first.size())) return false;
    return true;
}
}  // namespace detail

// `what` names the source in errors, e.g. "tokenizer file 'x.json'".
inline std::unique_ptr<Tokenizer> tokenizer_from_blob(const std::string& blob, const std::string& what = "tokenizer") {
    const size_t first = blob.find_first_not_of(" \t\r\n");
    const std::string head = blob.substr(0, 256);
    if (first != std::string::npos && blob[first] == '{') {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(blob);
        } catch (const std::exception& e) {
            throw std::runtime_error(what + " does not parse: " + e.what());
        }
        if (j.is_object() && j.contains("flashlm_tokenizer")) {
            const auto& k = j["flashlm_tokenizer"];
            if (k == "tiktoken/1") return std::make_unique<TiktokenBpe>(TiktokenBpe::parse(blob, what));
            if (k == "remap/1") {
                try {
                    auto base = [&](const std::string& b) -> std::shared_ptr<const Tokenizer> {
                        return tokenizer_from_blob(b, what + " (remap base)");
                    };
                    return std::make_unique<RemapTokenizer>(RemapTokenizer::from_json(j, base));
                } catch (const nlohmann::json::exception& e) {
                    throw std::runtime_error(what + " does not parse: " + e.what());
                } catch (const std::invalid_argument& e) {
                    throw std::runtime_error(what + " does not parse: " + e.what());
                } catch (const std::runtime_error& e) {
                    const std::string m = e.what();
                    throw std::runtime_error(m.rfind(what, 0) == 0 ? m : what + " does not parse: " + m);
                }
            }
            throw std::runtime_error(what + " does not parse: unknown flashlm_tokenizer " + k.dump());
        }
        if (j.is_object() && j.contains("bpe_ranks")) return std::make_unique<TiktokenBpe>(TiktokenBpe::parse(blob, what));
        if (j.is_object() && j.contains("model")) return std::make_unique<HfTokenizer>(HfTokenizer::from_json(blob, what));
        throw std::runtime_error(what + " does not parse: JSON that is neither a tokenizer.json (no \"model\") nor tiktoken ranks");
    }
    if (head.find("export default") != std::string::npos || head.find("module.exports") != std::string::npos ||
        detail::looks_like_tiktoken_lines(blob))
        return std::make_unique<TiktokenBpe>(TiktokenBpe::parse(blob, what));
    try {
        return std::make_unique<SpTokenizer>(SpTokenizer::from_serialized(blob));
    } catch (const std::runtime_error& e) {
        // SpTokenizer says "tokenizer does not parse: …"; name the file when there is one.
        const std::string m = e.what();
        if (what == "tokenizer") throw;
        throw std::runtime_error(what + m.substr(m.find(' ')));
    }
}

inline std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open tokenizer file '" + path + "'");
    std::ostringstream ss;
    ss << f.rdbuf();
    if (ss.str().empty()) throw std::runtime_error("tokenizer file '" + path + "' is empty");
    return tokenizer_from_blob(ss.str(), "tokenizer file '" + path + "'");
}

}  // namespace flashlm::data
