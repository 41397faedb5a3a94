#pragma once
// `flashlm import` and `flashlm export` (docs/import-export.md): upstream PyTorch state dicts, stored as
// .safetensors under the upstream tensor names (tools/convert_pytorch.py makes one from a .pt file), in
// and out of flashlm checkpoints.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <flashlm/flashlm.hpp>

#include "examples/registry.hpp"

namespace flashlm::examples {

// Builds entry's model for `config` with at most `limit` parameter values: the config of an untrusted
// file (or one inferred from its shapes) must not make us allocate terabytes.
inline std::unique_ptr<LanguageModel<float>> make_bounded(const ModelEntry& entry, const std::string& path,
                                                          const nlohmann::json& config, std::size_t limit) {
    ParamLimit guard(std::max<std::size_t>(limit, 1));
    try {
        return entry.make(config);
    } catch (const std::length_error& e) {
        throw io::FormatError(path + ": as " + entry.name + " with config " + config.dump() + ": " + e.what());
    } catch (const std::exception& e) {
        throw io::FormatError(path + ": bad " + entry.name + " config " + config.dump() + ": " + e.what());
    }
}

// The values a file's tensors hold (+ ParamStore's alignment per tensor): the bound for a checkpoint's model.
inline std::size_t values_held(const io::SafeTensors& st) {
    std::size_t held = 0;
    for (const auto& n : st.names()) held += std::size_t(st.at(n).numel()) + 16;
    return held;
}

// The config to build `entry` for a state-dict file: the model's defaults, overridden by the config the
// file carries (__metadata__ "config", which convert_pytorch.py copies from an upstream checkpoint's
// "config"), then by the keys the tensor shapes determine (entry.infer_config), then by `overrides`.
inline nlohmann::json import_config(const ModelEntry& entry, const io::SafeTensors& st, const std::string& path,
                                    const nlohmann::json& overrides) {
    nlohmann::json cfg = nlohmann::json::object();
    const auto& meta = st.metadata();
    if (auto it = meta.find("config"); it != meta.end()) {
        nlohmann::json fc = nlohmann::json::parse(it->second, nullptr, false);
        if (!fc.is_object()) throw io::FormatError(path + ": metadata 'config' is not a JSON object");
        cfg.update(fc);
    }
    if (entry.infer_config) cfg.update(entry.infer_config(io::tensor_shapes(st)));
    cfg.update(overrides);
    return cfg;
}

// The model a state-dict file holds, built as `entry` and loaded (any float dtype). Every missing,
// unexpected, mis-shaped or non-float tensor is listed in one FormatError, which also names the
// registered models the tensors do fit, if any. Upstream buffers the model recomputes (entry.upstream_buffers)
// are skipped and, with `skipped`, listed there.
inline std::unique_ptr<LanguageModel<float>> import_state_dict(const ModelEntry& entry, const io::SafeTensors& st,
                                                               const std::string& path,
                                                               const nlohmann::json& overrides = nlohmann::json::object(),
                                                               std::vector<std::string>* skipped = nullptr) {
    const auto& meta = st.metadata();
    if (auto f = meta.find("format"); f != meta.end() && f->second == io::k_checkpoint_format)
        throw std::invalid_argument(path + " is already a flashlm checkpoint: use it directly (eval, generate, "
                                           "train --resume) or `flashlm export` it");
    // Room for a model somewhat larger than the file, so that a wrong shape or a wrong --model is listed
    // tensor by tensor rather than refused as too large, while a hostile config stays bounded.
    const std::size_t limit = 4 * values_held(st) + (std::size_t(1) << 24);
    auto fits_elsewhere = [&] {
        std::string fits;
        for (const auto& other : registry()) {
            if (other.name == entry.name) continue;
            try {
                auto m = make_bounded(other, path, import_config(other, st, path, overrides), limit);
                if (io::check_state_dict(st, m->params(), other.upstream_buffers).empty()) fits += (fits.empty() ? "" : ", ") + other.name;
            } catch (const std::exception&) {
                // not that model either
            }
        }
        return fits.empty() ? std::string() : "\n  the tensors fit --model " + fits;
    };
    const nlohmann::json cfg = import_config(entry, st, path, overrides);
    std::unique_ptr<LanguageModel<float>> model;
    try {
        model = make_bounded(entry, path, cfg, limit);
    } catch (const io::FormatError& e) {
        throw io::FormatError(e.what() + fits_elsewhere());
    }
    const io::StateDictProblems pr = io::check_state_dict(st, model->params(), entry.upstream_buffers);
    if (!pr.empty()) {
        std::string msg = path + ": the tensors do not match --model " + entry.name + " with config " + cfg.dump() +
                          " (" + std::to_string(pr.count()) + " problem" + (pr.count() == 1 ? "" : "s") + "):" +
                          pr.describe();
        const std::string fits = fits_elsewhere();
        msg += fits.empty() ? "\n  (config keys the tensor shapes do not determine come from --config or the file's "
                              "metadata)"
                            : fits;
        throw io::FormatError(msg);
    }
    if (entry.buffer_values) {
        const auto bad = check_upstream_buffers(st, entry.buffer_values(model->config()));
        if (!bad.empty()) {
            std::string msg = path + ": upstream buffers that are not what --model " + entry.name + " with config " +
                              cfg.dump() + " computes (" + std::to_string(bad.size()) + "):";
            for (std::size_t i = 0; i < bad.size() && i < 12; ++i) msg += "\n  " + bad[i];
            if (bad.size() > 12) msg += "\n  … and " + std::to_string(bad.size() - 12) + " more";
            throw io::FormatError(msg + "\n  (a different seq_len, decay or head size? pass it with --config)");
        }
    }
    io::load_state_dict(st, path, model->params(), entry.upstream_buffers);
    if (skipped) *skipped = pr.buffers;
    return model;
}

struct ImportArgs {
    std::string model, from, tokenizer, out, config;
    uint64_t seed = 42;
};

inline int cmd_import(const ImportArgs& a) {
    const auto& entry = find_model(a.model);
    nlohmann::json overrides = nlohmann::json::object();
    if (!a.config.empty()) {
        overrides = nlohmann::json::parse(a.config, nullptr, false);
        if (!overrides.is_object())
            throw std::invalid_argument("--config must be a JSON object such as '{\"seq_len\": 512}', got '" + a.config + "'");
    }
    if (std::filesystem::exists(a.out) && std::filesystem::equivalent(a.out, a.from))
        throw std::invalid_argument("--out " + a.out + " is the --from file; choose another name");
    io::SafeTensors st = io::SafeTensors::load(a.from);
    std::vector<std::string> skipped;
    auto model = import_state_dict(entry, st, a.from, overrides, &skipped);

    // Any kind load_tokenizer reads: SentencePiece .model, HF tokenizer.json, GPT-2/tiktoken ranks, remap JSON.
    const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(a.tokenizer);
    if (tok->vocab_size() != model->vocab_size())
        throw std::invalid_argument(fmt::format("--tokenizer {} has {} pieces but the weights' vocabulary is {}; pass the "
                                                "tokenizer the weights were trained with",
                                                a.tokenizer, tok->vocab_size(), model->vocab_size()));

    // A fresh training state and zero AdamW moments: `train --resume` fine-tunes from step 0.
    train::TrainState ts;
    ts.rng = Rng(a.seed).state();
    nlohmann::json train_state = ts.to_json();
    train_state["imported_from"] = a.from;
    optim::AdamW<float> opt(model->params(), {});
    io::save_checkpoint(a.out, model->params(), &opt, io::CheckpointInfo{entry.name, model->config(), tok->serialized(), train_state});

    std::map<std::string, int> dtypes;
    for (const auto& n : st.names()) ++dtypes[io::dtype_name(st.at(n).dtype)];
    std::string dt;
    for (const auto& [d, n] : dtypes) dt += fmt::format("{}{} {}", dt.empty() ? "" : ", ", n, d);
    fmt::print("imported {} tensors ({}) from {} as {} | {} parameters | config {} | {} tokenizer\nwrote {}\n",
               st.names().size(), dt, a.from, entry.name, model->params().count(), model->config().dump(), tok->kind(), a.out);
    if (!skipped.empty())
        fmt::print("skipped {} upstream buffer(s) that {} computes itself: {}{}\n", skipped.size(), entry.name, skipped[0],
                   skipped.size() > 1 ? ", …" : "");
    return 0;
}

struct ExportArgs {
    std::string checkpoint, out, tokenizer_out;
};

inline int cmd_export(const ExportArgs& a) {
    if (std::filesystem::exists(a.out) && std::filesystem::equivalent(a.out, a.checkpoint))
        throw std::invalid_argument("--out " + a.out + " is the checkpoint itself; choose another name");
    io::CheckpointInfo info;
    io::SafeTensors st = io::open_checkpoint(a.checkpoint, info);
    const auto& entry = find_model(info.model);
    auto model = make_bounded(entry, a.checkpoint, info.config, values_held(st));
    io::load_params(st, a.checkpoint, model->params());
    // Upstream's persistent buffers too, so that load_state_dict(strict=True) accepts the file.
    const std::vector<UpstreamBuffer> bufs = entry.buffer_values ? entry.buffer_values(model->config()) : std::vector<UpstreamBuffer>{};
    io::save_state_dict(a.out, model->params(),
                        {{"format", "pytorch-state-dict"}, {"model", entry.name}, {"config", model->config().dump()},
                         {"producer", "flashlm export"}},
                        buffer_refs(bufs));
    if (!a.tokenizer_out.empty()) {
        std::ofstream f(a.tokenizer_out, std::ios::binary);
        f << info.tokenizer;
        if (!f.flush()) throw std::runtime_error("cannot write " + a.tokenizer_out);
    }
    std::string tied;
    for (const auto& [alias, target] : model->params().aliases()) tied += fmt::format(", {} = {}", alias, target);
    fmt::print("exported {} ({} parameters, {} tensors{}{}) from {} to {}{}\n", entry.name, model->params().count(),
               model->params().infos().size() + model->params().aliases().size() + bufs.size(), tied,
               bufs.empty() ? std::string() : fmt::format(", {} upstream buffers such as {}", bufs.size(), bufs[0].name),
               a.checkpoint, a.out, a.tokenizer_out.empty() ? "" : " and its tokenizer to " + a.tokenizer_out);
    return 0;
}

}  // namespace flashlm::examples
