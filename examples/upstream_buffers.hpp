#pragma once
// Tensors upstream PyTorch modules register as persistent buffers (constants, not parameters). flashlm
// computes them rather than storing them, but upstream's load_state_dict(strict=True) requires every one,
// so `flashlm export` writes them and `flashlm import` checks a file's copies against what the config
// implies (a decay mask of another decay or length would mean another model).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <flashlm/io/state_dict.hpp>

#include "examples/cortex.hpp"
#include "examples/nova.hpp"

namespace flashlm::examples {

struct UpstreamBuffer {
    std::string name;
    std::vector<int64_t> shape;
    std::shared_ptr<const std::vector<float>> values;  // shared: every block holds the same constant
};

// CORTEX-VI (VARIANTS.md §10.2, upstream v7/train_v72.py after a3105d5): blocks.{i}.decay_mask
// [seq_len, seq_len], mask[i][j] = decay^(j−i) for i ≤ j, else 0 (upper triangular: causal).
inline std::vector<UpstreamBuffer> cortex_upstream_buffers(const nlohmann::json& model_config) {
    const CortexConfig c = CortexConfig::from_json(model_config, CortexConfig::cortex6());
    if (!c.memory()) return {};
    const int64_t T = c.seq_len;
    auto mask = std::make_shared<std::vector<float>>(std::size_t(T * T), 0.0f);
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = i; j < T; ++j) (*mask)[std::size_t(i * T + j)] = float(std::pow(c.decay, double(j - i)));
    std::vector<UpstreamBuffer> out;
    for (int64_t l = 0; l < c.n_layers; ++l) out.push_back({fmt::format("blocks.{}.decay_mask", l), {T, T}, mask});
    return out;
}

// Nova as shipped (VARIANTS.md §7.3, upstream train_v52.py@03ccd85): blocks.{i}.attn.rotary.inv_freq
// [d_head/2] = 10000^(−2k/d_head).
inline std::vector<UpstreamBuffer> nova_upstream_buffers(const nlohmann::json& model_config) {
    const NovaConfig c = NovaConfig::from_json(model_config, NovaConfig{});
    auto inv = std::make_shared<std::vector<float>>(std::size_t(c.d_head / 2));
    for (int64_t k = 0; k < c.d_head / 2; ++k)
        (*inv)[std::size_t(k)] = float(1.0 / std::pow(10000.0, double(2 * k) / double(c.d_head)));
    std::vector<UpstreamBuffer> out;
    for (int64_t l = 0; l < c.n_layers; ++l) out.push_back({fmt::format("blocks.{}.attn.rotary.inv_freq", l), {c.d_head / 2}, inv});
    return out;
}

inline std::vector<io::TensorRef> buffer_refs(const std::vector<UpstreamBuffer>& bufs) {
    std::vector<io::TensorRef> refs;
    for (const auto& b : bufs) refs.push_back(io::TensorRef{b.name, io::DType::F32, b.shape, b.values->data()});
    return refs;
}

// The file's copies of `bufs` (each optional: a state dict saved from a module whose buffer was not
// persistent lacks it) must have the computed shape and values, to F16/BF16 rounding. Returns one line
// per problem.
inline std::vector<std::string> check_upstream_buffers(const io::SafeTensors& st, const std::vector<UpstreamBuffer>& bufs) {
    std::vector<std::string> bad;
    for (const auto& b : bufs) {
        if (!st.contains(b.name)) continue;
        const io::Entry& e = st.at(b.name);
        if (e.shape != b.shape) {
            bad.push_back(b.name + ": file " + io::shape_str(e.shape) + ", computed " + io::shape_str(b.shape));
            continue;
        }
        if (!io::is_float_dtype(e.dtype)) {
            bad.push_back(b.name + ": " + io::dtype_name(e.dtype) + " (F32, F16, BF16 or F64 expected)");
            continue;
        }
        std::vector<double> got(b.values->size());
        st.copy_to(b.name, got.data(), got.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double want = (*b.values)[i];
            if (!(std::abs(got[i] - want) <= 1e-4 + std::abs(want) / 128)) {
                bad.push_back(fmt::format("{}: element {} is {}, computed {}", b.name, i, got[i], want));
                break;
            }
        }
    }
    return bad;
}

}  // namespace flashlm::examples
