#pragma once
#include "flashlm/nn/bitlinear.hpp"
#include "flashlm/nn/causal_conv.hpp"
#include "flashlm/ops/gated_conv.hpp"

namespace flashlm::nn {

// v4 token mixer: [g, v] = split(up(x)); out = down(conv(v) ⊙ σ(g)).
template <class T>
struct GatedConvMixer {
    BitLinear<T> up, down;
    CausalDepthwiseConv1d<T> conv;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t dim, int64_t kernel, BitLinearOptions o = {}) {
        up.declare(p, join(prefix, "up"), dim, 2 * dim, o);
        conv.declare(p, join(prefix, "conv"), dim, kernel);
        down.declare(p, join(prefix, "down"), dim, dim, o);
    }
    void init(Rng& rng) {
        up.init(rng);
        conv.init(rng);
        down.init(rng);
    }
    // x: [B, T, D]
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return down(tape, ops::gated_causal_conv(tape, up(tape, x), conv.w()));
    }
};

}  // namespace flashlm::nn
