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
#include "examples/nova.hpp"
#include "examples/nova_diff.hpp"
#include "examples/cortex7.hpp"
#include "examples/supernova.hpp"
#include "examples/thunderbolt.hpp"
#include "examples/v3.hpp"
#include "examples/supernova2_engine.hpp"
#include "examples/upstream_buffers.hpp"
#include "examples/supernova2.hpp"

namespace flashlm::examples {

struct ModelEntry {
    std::string name, description;
    std::function<Recipe(int cores)> recipe;
    std::function<std::unique_ptr<LanguageModel<float>>(const nlohmann::json& cfg)> make;
    // Optional, for `flashlm import`: the config keys an upstream state dict's tensor shapes determine
    // (unset: the defaults plus whatever config the file or --config carries).
    std::function<nlohmann::json(const io::TensorShapes&)> infer_config = {};
    // Tensors upstream state dicts carry as module buffers that flashlm recomputes ('*' = a block index):
    // `flashlm import` skips them.
    std::vector<std::string> upstream_buffers = {};
    // Those buffers' values for a model config (examples/upstream_buffers.hpp): `flashlm export` writes them
    // so that upstream's load_state_dict(strict=True) finds them; `flashlm import` checks a file's copies.
    std::function<std::vector<UpstreamBuffer>(const nlohmann::json& model_config)> buffer_values = {};
};

// Defined in examples/registry.cpp, the one translation unit that instantiates every model (the CLI, the
// training benchmark and test_variants link it as the flashlm_models library instead of compiling every
// model's forward and backward again).
const std::vector<ModelEntry>& registry();
const ModelEntry& find_model(const std::string& name);

}  // namespace flashlm::examples
