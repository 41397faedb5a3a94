// C++ side of the tokenizer parity test: reads what parity.mjs recorded from the JavaScript ports of
// `tokenizers` and tiktoken and checks flashlm's HfTokenizer and TiktokenBpe produce the same ids and the
// same decoded text. Usage: tokenizer_parity OUT_DIR/expected.json
#include <flashlm/data/hf_tokenizer.hpp>
#include <flashlm/data/tiktoken_bpe.hpp>
#include <flashlm/io/base64.hpp>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

using namespace flashlm;

namespace {
std::string show(const std::vector<int32_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 40; ++i) {
        if (i) s += ' ';
        s += std::to_string(v[i]);
    }
    return v.size() > 40 ? s + " … (" + std::to_string(v.size()) + " ids)" : s;
}
std::string preview(const std::string& s) {
    std::string p = s.substr(0, 60);
    for (char& c : p)
        if (c == '\n') c = '|';
    return "'" + p + (s.size() > 60 ? "…'" : "'");
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: tokenizer_parity expected.json\n";
        return 2;
    }
    std::ifstream f(argv[1]);
    const nlohmann::json e = nlohmann::json::parse(f);
    int passed = 0, failed = 0, skipped = 0;
    auto check = [&](bool ok, const std::string& what) {
        if (ok) ++passed;
        else ++failed, std::cout << "FAIL " << what << "\n";
    };
    for (const auto& v : e["hf"]) {
        const auto tok = data::HfTokenizer::load(v["file"].get<std::string>());
        const std::string name = v["name"].get<std::string>();
        for (const auto& c : v["cases"]) {
            const std::string text = io::base64_decode(c["b64"].get<std::string>());
            const auto want = c["ids"].get<std::vector<int32_t>>();
            const auto got = tok.encode(text);
            if (c.value("unknown_chars", false)) ++skipped;  // see parity.mjs: the JS port differs there
            else check(got == want, name + " encode " + preview(text) + "\n  js:  " + show(want) + "\n  c++: " + show(got));
            const std::string d = tok.decode_like_library(want, true), da = tok.decode_like_library(want, false);
            check(d == c["decoded"].get<std::string>(), name + " decode " + preview(text) + ": js " +
                                                             preview(c["decoded"].get<std::string>()) + " c++ " + preview(d));
            check(da == c["decoded_all"].get<std::string>(), name + " decode with specials " + preview(text) + ": js " +
                                                                  preview(c["decoded_all"].get<std::string>()) + " c++ " + preview(da));
        }
    }
    const auto tt = data::TiktokenBpe::load(e["tiktoken"]["ranks"].get<std::string>());
    for (const auto& c : e["tiktoken"]["cases"]) {
        const std::string text = io::base64_decode(c["b64"].get<std::string>());
        const auto want = c["ids"].get<std::vector<int32_t>>();
        const auto got = tt.encode(text);
        check(got == want, "tiktoken gpt2 encode " + preview(text) + "\n  js:  " + show(want) + "\n  c++: " + show(got));
        const std::string d = tt.decode_bytes(want, false);
        check(d == c["decoded"].get<std::string>(), "tiktoken gpt2 decode " + preview(text));
    }
    std::cout << "tokenizer parity: " << passed << " passed, " << failed << " failed, " << skipped
              << " skipped (characters outside a pruned vocabulary, where the JS port is not the library)\n";
    return failed ? 1 : 0;
}
