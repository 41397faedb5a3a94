#pragma once
// Fused SwiGLU gate: y = SiLU(a) ⊙ b, one activation instead of silu → mul (two activations and two
// gradients); backward recomputes σ(a).
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

template <class T>
void swiglu_backward(Node<T>& n) {
    const Tensor<T>& a = n.in[0];
    const Tensor<T>& b = n.in[1];
    const int64_t N = n.out.numel();
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T s = sigmoid_scalar(a.data[i]), g = n.out.grad[i];
            if (a.grad) a.grad[i] += g * b.data[i] * s * (T(1) + a.data[i] * (T(1) - s));
            if (b.grad) b.grad[i] += g * a.data[i] * s;
        }
    });
}

template <class T>
Tensor<T> swiglu(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "swiglu: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    const int64_t N = a.numel();
    parallel_for(N, 8 * N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y.data[i] = a.data[i] * sigmoid_scalar(a.data[i]) * b.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&swiglu_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
