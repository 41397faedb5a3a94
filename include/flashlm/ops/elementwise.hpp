#pragma once
// Elementwise add and multiply of same-shaped tensors (residual adds, gates).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void add_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    for (int k = 0; k < 2; ++k) {
        T* g = n.in[k].grad;
        if (!g) continue;
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) g[i] += n.out.grad[i];
        });
    }
}

template <class T>
Tensor<T> add(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "add: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    const int64_t N = a.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = a.data[i] + b.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&add_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

template <class T>
void mul_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const Tensor<T>& a = n.in[0];
    const Tensor<T>& b = n.in[1];
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            const T g = n.out.grad[i];
            if (a.grad) a.grad[i] += g * b.data[i];
            if (b.grad) b.grad[i] += g * a.data[i];
        }
    });
}

template <class T>
Tensor<T> mul(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b) {
    FLASHLM_CHECK(a.shape == b.shape, "mul: shapes " + a.shape.str() + " and " + b.shape.str() + " differ");
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b}));
    const int64_t N = a.numel();
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = a.data[i] * b.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&mul_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
