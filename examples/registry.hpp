#pragma once
// --model NAME → factory and upstream recipe. Adding a variant means one entry here plus its header.
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "examples/bolt.hpp"

namespace flashlm::examples {

struct ModelEntry {
    std::string name, description;
    std::function<Recipe(int cores)> recipe;
    std::function<std::unique_ptr<LanguageModel<float>>(const nlohmann::json& cfg)> make;
};

inline const std::vector<ModelEntry>& registry() {
    static const std::vector<ModelEntry> r = {
        {"bolt", "v4 Bolt small: gated causal conv k=8, ternary (Q1), D=192, 6 blocks, 4.36M params",
         [](int cores) {
             Recipe rc;
             rc.lr = 4e-3, rc.batch = std::max(2, std::min(8, cores)), rc.accum = 1, rc.seq = 256;
             return rc;
         },
         [](const nlohmann::json& c) {
             return std::make_unique<Bolt<float>>("bolt", BoltConfig::from_json(c, BoltConfig::small()));
         }},
        {"bolt-large", "v4 Bolt large: D=384, 8 blocks, GLU 1024, 16.85M params",
         [](int cores) {
             Recipe rc;
             rc.lr = 3e-3, rc.batch = std::max(4, std::min(64, 2 * cores)), rc.accum = 2, rc.seq = 512;
             return rc;
         },
         [](const nlohmann::json& c) {
             return std::make_unique<Bolt<float>>("bolt-large", BoltConfig::from_json(c, BoltConfig::large()));
         }},
    };
    return r;
}

inline const ModelEntry& find_model(const std::string& name) {
    for (auto& e : registry())
        if (e.name == name) return e;
    std::string known;
    for (auto& e : registry()) known += (known.empty() ? "" : ", ") + e.name;
    throw std::invalid_argument("unknown model '" + name + "' (known: " + known + ")");
}

}  // namespace flashlm::examples
