#pragma once
// y = c·x for a constant c (v5.2-announced's μP embedding scale D^-½).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void scale_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T c = T(n.f[0]);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += c * n.out.grad[i];
    });
}

template <class T>
Tensor<T> scale(Tape<T>& tape, const Tensor<T>& x, double c) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    const T ct = T(c);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] * ct;
    });
    if (y.grad) {
        auto& n = tape.record(&scale_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.f[0] = c;
    }
    return y;
}

}  // namespace flashlm::ops
