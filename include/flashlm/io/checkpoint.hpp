#pragma once
// Checkpoints: one .safetensors file holding the parameters under their upstream names, the AdamW
// moments (optimizer.exp_avg.<name>, optimizer.exp_avg_sq.<name>) and, in __metadata__, the model name,
// its config, the tokenizer (base64 of its serialized form: a SentencePiece proto, a tokenizer.json or
// flashlm's tiktoken/remap JSON; data/load_tokenizer.hpp reads any), the training state (step, tokens seen,
// RNG state, elapsed time) and an FNV-1a checksum of all tensor bytes that catches silent corruption.
// Written through save_safetensors: temporary file, fsync, rename — a crash keeps the previous file.
#include <cstdint>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flashlm/core/param_store.hpp"
#include "flashlm/io/base64.hpp"
#include "flashlm/io/safetensors.hpp"
#include "flashlm/optim/adamw.hpp"

namespace flashlm::io {

inline constexpr const char* k_checkpoint_format = "flashlm-checkpoint/1";

inline uint64_t fnv1a(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
    auto b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

struct CheckpointInfo {
    std::string model;
    nlohmann::json config;
    std::string tokenizer;  // serialized tokenizer (data::Tokenizer::serialized(), any kind)
    nlohmann::json train_state = nlohmann::json::object();
};

template <class T>
void save_checkpoint(const std::string& path, const ParamStore<T>& params, const optim::AdamW<T>* opt,
                     const CheckpointInfo& info) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    const DType dt = sizeof(T) == 4 ? DType::F32 : DType::F64;
    std::vector<TensorRef> refs;
    auto add = [&](const std::string& name, const ParamInfo& p, const T* base) {
        std::vector<int64_t> shape(p.shape.dims.begin(), p.shape.dims.begin() + p.shape.rank);
        refs.push_back(TensorRef{name, dt, shape, base + p.offset});
    };
    for (auto& p : params.infos()) add(p.name, p, params.values());
    if (opt) {
        auto* o = const_cast<optim::AdamW<T>*>(opt);
        for (auto& p : params.infos()) add("optimizer.exp_avg." + p.name, p, o->exp_avg().data());
        for (auto& p : params.infos()) add("optimizer.exp_avg_sq." + p.name, p, o->exp_avg_sq().data());
    }
    uint64_t h = 1469598103934665603ull;
    for (auto& r : refs) {
        int64_t n = 1;
        for (auto d : r.shape) n *= d;
        h = fnv1a(r.data, size_t(n) * sizeof(T), h);
    }
    nlohmann::json ts = info.train_state;
    if (opt) ts["adam_step"] = opt->steps();
    nlohmann::json tied = nlohmann::json::object();
    for (auto& [alias, target] : params.aliases()) tied[alias] = target;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    std::map<std::string, std::string> meta{{"format", k_checkpoint_format},
                                            {"model", info.model},
                                            {"config", info.config.dump()},
                                            {"tied", tied.dump()},
                                            {"tokenizer", base64_encode(info.tokenizer)},
                                            {"train_state", ts.dump()},
                                            {"checksum", hex}};
    save_safetensors(path, refs, meta);
}

// The checkpoint metadata of a parsed file: format, model, config, train state and tokenizer (the
// checksum is checked separately). Throws FormatError naming path.
inline void read_checkpoint_info(const SafeTensors& st, const std::string& path, CheckpointInfo& info) {
    const auto& m = st.metadata();
    auto get = [&](const char* k) -> const std::string& {
        auto it = m.find(k);
        if (it == m.end()) throw FormatError(path + ": not a flashlm checkpoint (metadata has no '" + k + "')");
        return it->second;
    };
    if (get("format") != k_checkpoint_format)
        throw FormatError(path + ": unsupported checkpoint format '" + get("format") + "'");
    info.model = get("model");
    try {
        info.config = nlohmann::json::parse(get("config"));
        info.train_state = nlohmann::json::parse(get("train_state"));
        info.tokenizer = base64_decode(get("tokenizer"));
    } catch (const std::exception& e) {
        throw FormatError(path + ": malformed metadata: " + e.what());
    }
    if (!info.config.is_object() || !info.train_state.is_object())
        throw FormatError(path + ": malformed metadata: config and train_state must be JSON objects");
}

// FNV-1a over every tensor's bytes in file order against __metadata__.checksum.
inline void verify_checksum(const SafeTensors& st, const std::string& path) {
    const auto& m = st.metadata();
    auto it = m.find("checksum");
    if (it == m.end()) throw FormatError(path + ": not a flashlm checkpoint (metadata has no 'checksum')");
    uint64_t h = 1469598103934665603ull;
    for (auto& n : st.names()) {
        const Entry& e = st.at(n);
        h = fnv1a(e.data, e.nbytes, h);
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    if (it->second != hex)
        throw FormatError(path + ": checksum mismatch — the file is corrupted (stored " + it->second + ", computed " +
                          hex + ")");
}

// Opens a checkpoint and checks its format and checksum; throws FormatError with the file name.
inline SafeTensors open_checkpoint(const std::string& path, CheckpointInfo& info) {
    SafeTensors st = SafeTensors::load(path);
    const auto& m = st.metadata();
    auto f = m.find("format");
    if (f == m.end()) throw FormatError(path + ": not a flashlm checkpoint (metadata has no 'format')");
    if (f->second != k_checkpoint_format) throw FormatError(path + ": unsupported checkpoint format '" + f->second + "'");
    verify_checksum(st, path);
    read_checkpoint_info(st, path, info);
    return st;
}

namespace detail {
template <class T>
void copy_checked(const SafeTensors& st, const std::string& path, const std::string& name, const ParamInfo& p, T* dst) {
    if (!st.contains(name)) throw FormatError(path + ": missing tensor '" + name + "'");
    const Entry& e = st.at(name);
    std::vector<int64_t> want(p.shape.dims.begin(), p.shape.dims.begin() + p.shape.rank);
    if (e.shape != want) {
        std::string got = "[", exp = p.shape.str();
        for (size_t i = 0; i < e.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(e.shape[i]);
        throw FormatError(path + ": tensor '" + name + "' has shape " + got + "] but the model expects " + exp);
    }
    st.copy_to(name, dst, size_t(p.shape.numel()));
}
}  // namespace detail

template <class T>
void load_params(const SafeTensors& st, const std::string& path, ParamStore<T>& params) {
    for (auto& p : params.infos()) detail::copy_checked(st, path, p.name, p, params.values() + p.offset);
}

template <class T>
void load_optimizer(const SafeTensors& st, const std::string& path, const ParamStore<T>& params, optim::AdamW<T>& opt,
                    int64_t adam_step) {
    for (auto& p : params.infos()) {
        detail::copy_checked(st, path, "optimizer.exp_avg." + p.name, p, opt.exp_avg().data() + p.offset);
        detail::copy_checked(st, path, "optimizer.exp_avg_sq." + p.name, p, opt.exp_avg_sq().data() + p.offset);
    }
    opt.set_steps(adam_step);
}

}  // namespace flashlm::io
