#pragma once
// GeGLU feed-forward (v5.2 FastFFN): down(gelu(h₁) ⊙ h₂), [h₁, h₂] = chunk₂(up(x)); up [2F, D], down [D, F].
#include "flashlm/nn/linear.hpp"
#include "flashlm/ops/gelu.hpp"

namespace flashlm::nn {

template <class T>
struct GeGLUFFN {
    Linear<T> up, down;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t d_model, int64_t d_ffn) {
        up.declare(p, join(prefix, "up"), d_model, 2 * d_ffn);
        down.declare(p, join(prefix, "down"), d_ffn, d_model);
    }
    void init_normal_std(Rng& rng, double std) {
        up.init_normal_std(rng, std);
        down.init_normal_std(rng, std);
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return down(tape, ops::geglu(tape, up(tape, x))); }
};

}  // namespace flashlm::nn
