#pragma once
// Pointwise activations: sigmoid and SiLU (x·σ(x)), forward and backward side by side.
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
inline T sigmoid_scalar(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

template <class T>
void sigmoid_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* y = n.out.data;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += n.out.grad[i] * y[i] * (T(1) - y[i]);
    });
}

template <class T>
Tensor<T> sigmoid(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = sigmoid_scalar(x.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&sigmoid_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

template <class T>
void silu_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* x = n.in[0].data;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            const T s = sigmoid_scalar(x[i]);
            n.in[0].grad[i] += n.out.grad[i] * s * (T(1) + x[i] * (T(1) - s));
        }
    });
}

template <class T>
Tensor<T> silu(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] * sigmoid_scalar(x.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&silu_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
