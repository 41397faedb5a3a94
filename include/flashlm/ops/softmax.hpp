#pragma once
// Row softmax over the last dimension (routers, scale mixers, slot reads):
//   y_i = exp(x_i − max_j x_j) / Σ_j exp(x_j − max_j x_j).
// Backward reads the output instead of saving anything: dx = y ⊙ (dy − Σ_j dy_j y_j).
// The row helpers are also the inference path (generators call them on single rows).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

// y = softmax(x) for one row of n (y may alias x).
template <class T>
void softmax_row(const T* x, T* y, int64_t n) {
    T mx = x[0];
    for (int64_t j = 1; j < n; ++j) mx = std::max(mx, x[j]);
    T s = 0;
    for (int64_t j = 0; j < n; ++j) s += (y[j] = std::exp(x[j] - mx));
    const T inv = T(1) / s;
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
}

// dx (+)= y ⊙ (dy − Σ dy⊙y) for one row; with accumulate = false dx is overwritten (dx may alias dy then).
template <class T>
void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n, bool accumulate) {
    T dot = 0;
    for (int64_t j = 0; j < n; ++j) dot += dy[j] * y[j];
    if (accumulate)
        for (int64_t j = 0; j < n; ++j) dx[j] += y[j] * (dy[j] - dot);
    else
        for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - dot);
}

template <class T>
void softmax_backward(Node<T>& n) {
    const int64_t M = n.out.rows(), C = n.out.cols();
    parallel_for(M, 4 * M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r)
            softmax_row_backward(n.out.data + r * C, n.out.grad + r * C, n.in[0].grad + r * C, C, true);
    });
}

// x: [..., C] -> [..., C], softmax over the last dimension.
template <class T>
Tensor<T> softmax(Tape<T>& tape, const Tensor<T>& x) {
    FLASHLM_CHECK(x.shape.rank >= 1 && x.cols() >= 1, "softmax: empty input " + x.shape.str());
    const int64_t M = x.rows(), C = x.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    parallel_for(M, 4 * M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) softmax_row(x.data + r * C, y.data + r * C, C);
    });
    if (y.grad) {
        auto& n = tape.record(&softmax_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
