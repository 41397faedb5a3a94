#pragma once
// Layers hold parameter ids in a ParamStore shared by the whole model; a layer registers its tensors
// under "<prefix>.<name>", mirroring the nested module names of the upstream PyTorch code.
#include <cmath>
#include <string>

#include "flashlm/core/param_store.hpp"
#include "flashlm/core/rng.hpp"

namespace flashlm::nn {

inline std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
}

template <class T>
void init_normal(Tensor<T> t, Rng& rng, double std) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = T(rng.normal(0.0, std));
}
template <class T>
void init_constant(Tensor<T> t, T v) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = v;
}
// torch.nn.init.kaiming_normal_(w, mode='fan_out') with the default gain √2: std = √(2 / fan_out),
// fan_out = size(0) · (product of dims after the second).
template <class T>
void init_kaiming_fan_out(Tensor<T> t, Rng& rng) {
    int64_t fan_out = t.dim(0);
    for (int i = 2; i < t.shape.rank; ++i) fan_out *= t.dim(i);
    init_normal(t, rng, std::sqrt(2.0 / double(fan_out)));
}

}  // namespace flashlm::nn
