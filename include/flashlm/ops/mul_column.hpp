#pragma once
// Rows scaled by one column of a weight matrix: y[r, :] = w[r, j] · x[r, :] (a per-position mixture
// Σ_j w[:, j] ⊙ x_j is a sum of these; v6.1's MultiScaleReasoningBank).
#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void mul_column_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t M = x.rows(), C = x.cols(), S = w.cols(), j = n.i[0];
    parallel_for(M, 2 * M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* dy = n.out.grad + r * C;
            const T wr = w.data[r * S + j];
            T dot = 0;
            for (int64_t c = 0; c < C; ++c) {
                dot += dy[c] * x.data[r * C + c];
                if (x.grad) x.grad[r * C + c] += wr * dy[c];
            }
            if (w.grad) w.grad[r * S + j] += dot;
        }
    });
}

// x: [..., C], w: [..., S] with the same rows, 0 ≤ j < S → [..., C].
template <class T>
Tensor<T> mul_column(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, int64_t j) {
    FLASHLM_CHECK(x.rows() == w.rows() && j >= 0 && j < w.cols(),
                  "mul_column: " + x.shape.str() + " and column " + std::to_string(j) + " of " + w.shape.str());
    const int64_t M = x.rows(), C = x.cols(), S = w.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    parallel_for(M, M * C, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T wr = w.data[r * S + j];
            for (int64_t c = 0; c < C; ++c) y.data[r * C + c] = wr * x.data[r * C + c];
        }
    });
    if (y.grad) {
        auto& n = tape.record(&mul_column_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.i[0] = j;
    }
    return y;
}

}  // namespace flashlm::ops
