#pragma once
#include "flashlm/nn/bitlinear.hpp"
#include "flashlm/ops/swiglu.hpp"

namespace flashlm::nn {

// SwiGLU feed-forward with ternary weights: W_down(SiLU(W_gate x) ⊙ W_up x). Upstream names W_gate,
// W_up, W_down.
template <class T>
struct TernaryGLU {
    BitLinear<T> gate, up, down;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t dim, int64_t hidden, BitLinearOptions o = {}) {
        gate.declare(p, join(prefix, "W_gate"), dim, hidden, o);
        up.declare(p, join(prefix, "W_up"), dim, hidden, o);
        down.declare(p, join(prefix, "W_down"), hidden, dim, o);
    }
    void init(Rng& rng) {
        gate.init(rng);
        up.init(rng);
        down.init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return down(tape, ops::swiglu(tape, gate(tape, x), up(tape, x)));
    }
};

}  // namespace flashlm::nn
