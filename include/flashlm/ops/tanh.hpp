#pragma once
// Pointwise tanh; the backward reads the output: dx = dy (1 − y²).
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void tanh_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* y = n.out.data;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += n.out.grad[i] * (T(1) - y[i] * y[i]);
    });
}

template <class T>
Tensor<T> tanh(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, 4 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = std::tanh(x.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&tanh_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
