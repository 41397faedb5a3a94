#pragma once
// ReLU, y = max(x, 0); backward passes the gradient where y > 0 (torch's threshold_backward).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void relu_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i)
            if (n.out.data[i] > T(0)) n.in[0].grad[i] += n.out.grad[i];
    });
}

template <class T>
Tensor<T> relu(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] > T(0) ? x.data[i] : T(0);
    });
    if (y.grad) {
        auto& n = tape.record(&relu_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
