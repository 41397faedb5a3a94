// The model registry's definitions (declared in examples/registry.hpp): the factories below are where every
// variant's class template is instantiated, once for all the binaries that link flashlm_models.
#include "examples/registry.hpp"

namespace flashlm::examples {

// The one copy of every float model that flashlm_models' users link (examples/*.hpp declare them extern there).
// FLASHLM_HAS_<FAMILY> is 1 for the families CMake's FLASHLM_MODELS lists (default: all).
#if FLASHLM_HAS_BOLT
template class Bolt<float>;
#endif
#if FLASHLM_HAS_BOLT_DELTANET
template class BoltDeltaNet<float>;
#endif
#if FLASHLM_HAS_CORTEX
template class Cortex<float>;
#endif
#if FLASHLM_HAS_CORTEX7
template class Cortex7<float>;
#endif
#if FLASHLM_HAS_NOVA
template class Nova<float>;
#endif
#if FLASHLM_HAS_NOVA_DIFF
template class NovaDiff<float>;
#endif
#if FLASHLM_HAS_SUPERNOVA
template class Supernova<float>;
#endif
#if FLASHLM_HAS_SUPERNOVA2
template class Supernova2<float>;
#endif
#if FLASHLM_HAS_SUPERNOVA2_ENGINE
template class Supernova2Engine<float>;
#endif
#if FLASHLM_HAS_THUNDERBOLT
template class Thunderbolt<float>;
#endif
#if FLASHLM_HAS_V3
template class V3<float>;
#endif

namespace {

// v7.1/v7.2 recipe (VARIANTS.md §10): AdamW 3e-3, betas (0.9, 0.95), wd 0.01, batch 16 × accum 1,
// seq 256, 500 warm-up steps, cosine to 1e-5, clip 1.0, vocab 4096; independent of the core count.
[[maybe_unused]] Recipe cortex_recipe() {
    Recipe rc;
    rc.lr = 3e-3, rc.min_lr = 1e-5, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 500, rc.batch = 16, rc.accum = 1, rc.seq = 256, rc.vocab = 4096;
    return rc;
}

// v5 recipe (VARIANTS.md §6.3): AdamW 3e-3, betas (0.9, 0.95), wd 0.05, clip 1.0, 500 warm-up steps, cosine
// to 3e-4, seq 256, vocab 8192. Upstream's 64 × accum 2 sequences per step become 16 × accum 8: the same
// 32,768 tokens per optimizer step in a quarter of the activation memory (b16 × 256 peaks at 6.2 GB RSS,
// so b64 would need ~23 GB).
[[maybe_unused]] Recipe thunderbolt_recipe() {
    Recipe rc;
    rc.lr = 3e-3, rc.min_lr = 3e-4, rc.weight_decay = 0.05, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 500, rc.batch = 16, rc.accum = 8, rc.seq = 256, rc.vocab = 8192;
    return rc;
}

// v5.2 Nova-Ignition as shipped (VARIANTS.md §7.3): AdamW 5e-4, betas (0.9, 0.95), wd 0.01, batch 4 × accum 8,
// seq 128, 100 warm-up steps, cosine to 1e-5, clip 1.0, vocab 4096.
[[maybe_unused]] Recipe nova_recipe() {
    Recipe rc;
    rc.lr = 5e-4, rc.min_lr = 1e-5, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 100, rc.batch = 4, rc.accum = 8, rc.seq = 128, rc.vocab = 4096;
    return rc;
}

// v5.2 Nova-Ignition as announced (VARIANTS.md §7.1): AdamW 3e-3, betas (0.9, 0.95), wd 0.05, 100 warm-up
// steps, clip 1.0, batch 4 × accum 32, seq 256, vocab 5120, and upstream's cosine with warm restarts after
// warm-up (400-step cycles, peak 3e-3·0.85^cycle, floor 3e-5).
[[maybe_unused]] Recipe nova_diff_recipe() {
    Recipe rc;
    rc.lr = 3e-3, rc.min_lr = 3e-5, rc.weight_decay = 0.05, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 100, rc.batch = 4, rc.accum = 32, rc.seq = 256, rc.vocab = 5120;
    rc.lr_cycle = 400, rc.lr_cycle_decay = 0.85;
    return rc;
}

// `flashlm import` of a bare state dict for the variants without their own inference: the vocabulary and
// width from the embedding and the depth from the block count; other sizes come from the variant's
// defaults, the file's config metadata or --config (docs/import-export.md).
[[maybe_unused]] std::function<nlohmann::json(const io::TensorShapes&)> infer_from_embedding(
    std::string embedding, std::string width_key, std::string depth_key) {
    return [=](const io::TensorShapes& s) {
        nlohmann::json j = nlohmann::json::object();
        if (auto v = io::dim_of(s, embedding, 0)) j["vocab_size"] = *v;
        if (auto d = io::dim_of(s, embedding, 1)) j[width_key] = *d;
        if (!depth_key.empty())
            if (int64_t n = io::count_indexed(s, "blocks.")) j[depth_key] = n;
        return j;
    };
}

}  // namespace

const std::vector<ModelEntry>& registry() {
    static const std::vector<ModelEntry> r = {
#if FLASHLM_HAS_BOLT
        {"bolt", "v4 Bolt small: gated causal conv k=8, ternary (Q1), D=192, 6 blocks, 4.36M params",
         [](int cores) {
             Recipe rc;
             rc.lr = 4e-3, rc.batch = std::max(2, std::min(8, cores)), rc.accum = 1, rc.seq = 256;
             return rc;
         },
         [](const nlohmann::json& c) {
             return std::make_unique<Bolt<float>>("bolt", BoltConfig::from_json(c, BoltConfig::small()));
         },
         infer_bolt_config},
        {"bolt-large", "v4 Bolt large: D=384, 8 blocks, GLU 1024, 16.85M params",
         [](int cores) {
             Recipe rc;
             rc.lr = 3e-3, rc.batch = std::max(4, std::min(64, 2 * cores)), rc.accum = 2, rc.seq = 512;
             return rc;
         },
         [](const nlohmann::json& c) {
             return std::make_unique<Bolt<float>>("bolt-large", BoltConfig::from_json(c, BoltConfig::large()));
         },
         infer_bolt_config},
        {"bolt-blockwise",
         "altpav TeenyLM: Bolt small with Q5 blockwise quant + RMSNorm inside every BitLinear, 4.37M params",
         [](int) {
             // A:trainv4.py@036e90d: batch 128 on both configs, 1,000 warm-up steps, otherwise v4 small.
             // Upstream's per-epoch 128 -> 256 -> 512 sequence curriculum is not reproduced: seq 256.
             Recipe rc;
             rc.lr = 4e-3, rc.batch = 128, rc.accum = 1, rc.seq = 256, rc.warmup = 1000;
             return rc;
         },
         [](const nlohmann::json& c) {
             return std::make_unique<Bolt<float>>("bolt-blockwise", BoltConfig::from_json(c, BoltConfig::altpav_small()));
         },
         infer_bolt_config},
#endif
#if FLASHLM_HAS_V3
        {"v3", "v3 prototype: one gated dilated grouped causal-conv block (dilations 1/4/64) applied twice, Q0 ternary, D=256, 13.56M params",
         [](int) {
             // FlashLMv3.ipynb@635ce9c: AdamW (3e-4, betas 0.9/0.95, wd 0.1), batch 4, warm-up 200, clip 1.0,
             // GPT-2 vocabulary size, the loss on a random 25 % of the positions; seq 256 × accum 8 is the
             // notebook's third phase. Not reproduced: NorMuon for the 2-D weights, the seq/accum phases, WSD
             // schedule, EMA, label smoothing and z-loss (docs/variants/v3.md).
             Recipe rc;
             rc.lr = 3e-4, rc.weight_decay = 0.1, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
             rc.warmup = 200, rc.batch = 4, rc.accum = 8, rc.seq = 256, rc.vocab = 50257, rc.pos_fraction = 0.25;
             return rc;
         },
         [](const nlohmann::json& c) { return std::make_unique<V3<float>>("v3", V3Config::from_json(c, V3Config{})); },
         infer_from_embedding("embedding.weight", "d_model", "")},
#endif
#if FLASHLM_HAS_CORTEX
        {"cortex3", "v7.1 CORTEX-III: gated causal conv k=15 + SwiGLU, float, D=256, 6 layers, 4.61M params",
         [](int) { return cortex_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex<float>>("cortex3", CortexConfig::from_json(c, CortexConfig::cortex3()));
         },
         infer_cortex_config},
        {"cortex6", "v7.2 CORTEX-VI: CORTEX-III + decayed Hebbian memory (64x64), float, 5.01M params",
         [](int) { return cortex_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex<float>>("cortex6", CortexConfig::from_json(c, CortexConfig::cortex6()));
         },
         infer_cortex_config,
         {"blocks.*.decay_mask"},
         cortex_upstream_buffers},
#endif
#if FLASHLM_HAS_NOVA
        {"nova", "v5.2 Nova-Ignition as shipped: causal MHA + RoPE, GeGLU FFN, float, D=256, 6 layers, 4.99M params",
         [](int) { return nova_recipe(); },
         [](const nlohmann::json& c) { return std::make_unique<Nova<float>>("nova", NovaConfig::from_json(c, NovaConfig{})); },
         infer_from_embedding("embed.weight", "d_model", "n_layers"),
         {"blocks.*.attn.rotary.inv_freq"},
         nova_upstream_buffers},
#endif
#if FLASHLM_HAS_NOVA_DIFF
        {"nova-diff", "v5.2 Nova-Ignition as announced: ternary (Q2) differential attention + soft MoD + shared/top-1 MoE (6 experts), D=288, 12 layers, 36.87M params",
         [](int) { return nova_diff_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<NovaDiff<float>>("nova-diff", NovaDiffConfig::from_json(c, NovaDiffConfig{}));
         },
         infer_from_embedding("embed.weight", "d_model", "n_layers")},
#endif
#if FLASHLM_HAS_CORTEX7
        {"cortex", "v7 CORTEX: ternary (Q2) simplified RWKV time mix (decayed cumsum) + early-exit heads, D=256, 6 layers, 7.12M params",
         [](int) { return cortex7_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Cortex7<float>>("cortex", Cortex7Config::from_json(c, Cortex7Config{}));
         },
         infer_cortex7_config},
#endif
#if FLASHLM_HAS_THUNDERBOLT
        {"thunderbolt", "v5 Thunderbolt: gated linear recurrence + token shift, ternary (Q1'), D=384, 18 layers, 29.75M params",
         [](int) { return thunderbolt_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Thunderbolt<float>>("thunderbolt", ThunderboltConfig::from_json(c, {}));
         },
         infer_from_embedding("embed.weight", "d_model", "n_layers")},
#endif
#if FLASHLM_HAS_BOLT_DELTANET
        {"bolt-deltanet", "altpav TeenyLM Delta small: ternary (Q1) Gated DeltaNet (4 heads, matrix state) + GLU, D=192, 6 blocks, 5.04M params",
         [](int cores) { return bolt_deltanet_recipe(cores, false); },
         [](const nlohmann::json& c) {
             return std::make_unique<BoltDeltaNet<float>>("bolt-deltanet", BoltDeltaNetConfig::from_json(c, BoltDeltaNetConfig::small()));
         },
         infer_from_embedding("embedding.weight", "dim", "n_blocks")},
        {"bolt-deltanet-large", "altpav TeenyLM Delta large: D=384, 8 blocks, 6 heads, GLU 1024, 20.44M params",
         [](int cores) { return bolt_deltanet_recipe(cores, true); },
         [](const nlohmann::json& c) {
             return std::make_unique<BoltDeltaNet<float>>("bolt-deltanet-large", BoltDeltaNetConfig::from_json(c, BoltDeltaNetConfig::large()));
         },
         infer_from_embedding("embedding.weight", "dim", "n_blocks")},
#endif
#if FLASHLM_HAS_SUPERNOVA
        {"supernova", "v6 SUPERNOVA: shift-concat mixer + P-RCSM (shift bank, planner gate, slot memory), ternary (Q2), D=192, 6 blocks, 4.14M params",
         [](int) { return supernova_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Supernova<float>>("supernova", SupernovaConfig::from_json(c, SupernovaConfig{}));
         },
         infer_supernova_config},
#endif
#if FLASHLM_HAS_SUPERNOVA2_ENGINE
        {"supernova2-engine", "v6.1 SUPERNOVA II (C engine): per-token FFN stack, ternary weights AND activations (Q4, popcount GEMM), no token mixing, D=192, 6 layers, 1.08M params",
         [](int) { return supernova2_engine_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Supernova2Engine<float>>("supernova2-engine", Supernova2EngineConfig::from_json(c, {}));
         },
         infer_supernova2_engine_config},
#endif
#if FLASHLM_HAS_SUPERNOVA2
        {"supernova2", "v6.1 SUPERNOVA II (torch): gated shift mix + reasoning bank + state gate + slot memory + top-2 of 4 ternary GLU experts, Q3 ternary, D=384, 8 layers, 43.04M params (28.89M active)",
         [](int) { return supernova2_recipe(); },
         [](const nlohmann::json& c) {
             return std::make_unique<Supernova2<float>>("supernova2", Supernova2Config::from_json(c, Supernova2Config{}));
         },
         [](const io::TensorShapes& s) {
             nlohmann::json j = infer_from_embedding("token_emb.weight", "d_model", "")(s);
             if (int64_t n = io::count_indexed(s, "layers.")) j["n_layers"] = n;
             if (auto v = io::dim_of(s, "pos_emb.weight", 0)) j["max_seq_len"] = *v;
             if (auto f = io::dim_of(s, "layers.0.ffn.experts.0.w_gate.weight", 0)) j["d_ffn"] = *f;
             if (auto r = io::dim_of(s, "layers.0.reasoning.out_proj.weight", 1)) j["d_reason"] = *r;
             if (auto n = io::dim_of(s, "layers.0.reasoning.router.weight", 0)) j["n_scales"] = *n;
             if (auto n = io::dim_of(s, "layers.0.slot_mem.slots", 0)) j["n_slots"] = *n;
             if (auto n = io::dim_of(s, "layers.0.ffn.router.weight", 0)) j["n_experts"] = *n;
             return j;
         }},
#endif
    };
    return r;
}

const ModelEntry& find_model(const std::string& name) {
    for (auto& e : registry())
        if (e.name == name) return e;
    std::string known;
    for (auto& e : registry()) known += (known.empty() ? "" : ", ") + e.name;
    throw std::invalid_argument("unknown model '" + name + "' (known: " + known + ")");
}

}  // namespace flashlm::examples
