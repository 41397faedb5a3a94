#pragma once
// Scaled log-sigmoid y = s · log σ(x) = −s · softplus(−x), computed as s · (min(x, 0) − log1p(e^−|x|))
// so it stays finite for any x (Gated DeltaNet's log decay uses s = 1/16). dy/dx = s · σ(−x).
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
inline T log_sigmoid_scalar(T x) {
    return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
}

template <class T>
void log_sigmoid_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T s = T(n.f[0]);
    const T* x = n.in[0].data;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += n.out.grad[i] * s / (T(1) + std::exp(x[i]));
    });
}

template <class T>
Tensor<T> log_sigmoid(Tape<T>& tape, const Tensor<T>& x, double scale = 1.0) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    const T s = T(scale);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = s * log_sigmoid_scalar(x.data[i]);
    });
    if (y.grad) {
        auto& n = tape.record(&log_sigmoid_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.f[0] = scale;
    }
    return y;
}

}  // namespace flashlm::ops
