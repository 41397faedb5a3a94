#pragma once
// --model NAME → factory and upstream recipe. Adding a variant means one entry here plus its header.
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "examples/bolt.hpp"
#include "examples/bolt_deltanet.hpp"
#include "examples/cortex.hpp"
#include "examples/cortex7.hpp"

namespace flashlm::examples {

struct ModelEntry {
    std::string name, description;
    std::function<Recipe(int cores)> recipe;
    std::function<std::unique_ptr<LanguageModel<float>>(const nlohmann::json& cfg)> make;
};

// v7.1/v7.2 recipe (VARIANTS.md §10): AdamW 3e-3, betas (0.9, 0.95), wd 0.01, batch 16 × accum 1,
// seq 256, 500 warm-up steps, cosine to 1e-5, clip 1.0, vocab 4096; independent of the core count.
inline Recipe cortex_recipe() {
    Recipe rc;
    rc.lr = 3e-3, rc.min_lr = 1e-5, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 500, rc.batch = 16, rc.accum = 1, rc.seq = 256, rc.vocab = 4096;
    return rc;
}

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
        {"cortex3", "v7.1 CORTEX-III: gated causal conv k=15 + SwiGLU, float, D=256, 6 layers, 4.61M params",
         [](int) { return cortex_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex<float>>("cortex3", CortexConfig::from_json(c, CortexConfig::cortex3()));
         }},
        {"cortex6", "v7.2 CORTEX-VI: CORTEX-III + decayed Hebbian memory (64x64), float, 5.01M params",
         [](int) { return cortex_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex<float>>("cortex6", CortexConfig::from_json(c, CortexConfig::cortex6()));
         }},
        {"cortex", "v7 CORTEX: ternary (Q2) simplified RWKV time mix (decayed cumsum) + early-exit heads, D=256, 6 layers, 7.12M params",
         [](int) { return cortex7_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex7<float>>("cortex", Cortex7Config::from_json(c, Cortex7Config{}));
         }},
        {"bolt-deltanet", "altpav TeenyLM Delta small: ternary (Q1) Gated DeltaNet (4 heads, matrix state) + GLU, D=192, 6 blocks, 5.04M params",
         [](int cores) { return bolt_deltanet_recipe(cores, false); },
         [](const nlohmann::json& c) {
             return std::make_unique<BoltDeltaNet<float>>("bolt-deltanet", BoltDeltaNetConfig::from_json(c, BoltDeltaNetConfig::small()));
         }},
        {"bolt-deltanet-large", "altpav TeenyLM Delta large: D=384, 8 blocks, 6 heads, GLU 1024, 20.44M params",
         [](int cores) { return bolt_deltanet_recipe(cores, true); },
         [](const nlohmann::json& c) {
             return std::make_unique<BoltDeltaNet<float>>("bolt-deltanet-large", BoltDeltaNetConfig::from_json(c, BoltDeltaNetConfig::large()));
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
