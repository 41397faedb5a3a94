#pragma once
// Squared ReLU, y = max(x, 0)² (the FlashLM v5 FFN activation, VARIANTS.md §6.2); dy/dx = 2·max(x, 0).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void relu_squared_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* x = n.in[0].data;
    T* dx = n.in[0].grad;
    const T* dy = n.out.grad;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) dx[i] += x[i] > T(0) ? T(2) * x[i] * dy[i] : T(0);
    });
}

template <class T>
Tensor<T> relu_squared(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] > T(0) ? x.data[i] * x.data[i] : T(0);
    });
    if (y.grad) {
        auto& n = tape.record(&relu_squared_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
