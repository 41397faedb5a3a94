#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/conv1d.hpp"

namespace flashlm::nn {

// Causal depthwise Conv1d (groups = channels, no bias), weight [C, 1, K] as in PyTorch.
template <class T>
struct CausalDepthwiseConv1d {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t channels, int64_t kernel) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{channels, 1, kernel});
    }
    void init(Rng& rng) { init_kaiming_fan_out(ps->get(weight), rng); }
    Tensor<T> w() const { return ps->get(weight); }
    // x: [B, T, C]
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return ops::causal_dwconv1d(tape, x, ps->get(weight));
    }
};

}  // namespace flashlm::nn
