#pragma once
// Pointwise activations: sigmoid and SiLU (x·σ(x)), forward and backward side by side.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/expf.hpp"

namespace flashlm::ops {

template <class T>
inline T sigmoid_scalar(T x) {
    return T(1) / (T(1) + std::exp(-x));
}

// s[i] = sigmoid_scalar(x[i]) for i < n, the same bits: float goes through kernels::expf_array (libm's
// expf, vectorised) in stack chunks; s may equal x.
template <class T>
void sigmoid_array(const T* x, T* s, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        constexpr int64_t chunk = 256;
        alignas(64) float neg[chunk], e[chunk];
        for (int64_t c0 = 0; c0 < n; c0 += chunk) {
            const int64_t len = std::min(chunk, n - c0);
            for (int64_t j = 0; j < len; ++j) neg[j] = -x[c0 + j];
            kernels::expf_array(neg, e, len);
            for (int64_t j = 0; j < len; ++j) s[c0 + j] = 1.0f / (1.0f + e[j]);
        }
    } else {
        for (int64_t i = 0; i < n; ++i) s[i] = sigmoid_scalar(x[i]);
    }
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
        sigmoid_array(x.data + b_, y.data + b_, e_ - b_);
    });
    if (y.grad) {
        auto& n = tape.record(&sigmoid_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

// saved[0]: σ(x) from forward, so backward spends no exp (libm's expf is scalar; the two calls per
// element were most of SiLU's cost). Same values as recomputing it.
template <class T>
void silu_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* x = n.in[0].data;
    const T* sg = n.saved[0];
    T* dx = n.in[0].grad;
    const T* dy = n.out.grad;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            const T s = sg[i];
            dx[i] += dy[i] * s * (T(1) + x[i] * (T(1) - s));
        }
    });
}

template <class T>
Tensor<T> silu(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    T* sg = y.grad ? tape.scratch(N) : nullptr;
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        // without a tape σ goes into y itself, which the product then overwrites
        T* s = sg ? sg : y.data;
        sigmoid_array(x.data + b_, s + b_, e_ - b_);
        for (int64_t i = b_; i < e_; ++i) y.data[i] = x.data[i] * s[i];
    });
    if (y.grad) {
        auto& n = tape.record(&silu_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.saved[0] = sg;
    }
    return y;
}

}  // namespace flashlm::ops
