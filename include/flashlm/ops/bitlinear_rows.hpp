#pragma once
// BitLinear with the Q2 per-row absmean quantizer (FlashLM v5.2-announced, v6, v7; VARIANTS.md §2):
//   α_r = max(mean_j |W_rj|, 1e-5);  W̃_r = clamp(round(W_r / α_r), -1, 1) · α_r;  y = x W̃ᵀ.
// Backward is the identity straight-through estimator, as for Q1 (ops/bitlinear.hpp): dW gets dyᵀ x,
// dx uses W̃.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/ops/linear.hpp"
#include "flashlm/ops/ternary_linear.hpp"

namespace flashlm::ops {

// Q2 ternarisation of a [rows, cols] matrix into out (row r in {-α_r, 0, α_r}); α_r into alpha when
// given. The row mean is accumulated in double and rounded once (torch reduces in float; both land on
// the correctly rounded mean or next to it). round() is half-to-even, like torch.round.
template <class T>
void quantize_absmean_rows(const T* w, T* out, int64_t rows, int64_t cols, T* alpha = nullptr) {
    parallel_for(rows, rows * cols, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
            const T* wr = w + r * cols;
            double s = 0;
            for (int64_t j = 0; j < cols; ++j) s += std::abs(double(wr[j]));
            const T a = std::max(T(s / double(cols)), T(1e-5));
            if (alpha) alpha[r] = a;
            T* o = out + r * cols;
            for (int64_t j = 0; j < cols; ++j) {
                T q = std::nearbyint(wr[j] / a);
                q = q > T(1) ? T(1) : (q < T(-1) ? T(-1) : q);
                o[j] = q * a;
            }
        }
    });
}

template <class T>
void bitlinear_rows_backward(Node<T>& n) {
    ternary_linear_backward_raw(n.in[0], n.saved[0], n.in[1].grad, n.in[1].dim(0), n.out);
}

// x: [..., K], W: [N, K] -> [..., N]
template <class T>
Tensor<T> bitlinear_rows(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "bitlinear_rows: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    quantize_absmean_rows(W.data, wq, N, K);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    ternary_linear_forward(x.rows(), N, K, x.data, wq, y.data);  // int8 under --quant int8
    if (y.grad) {
        auto& n = tape.record(&bitlinear_rows_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.out = y;
        n.saved[0] = wq;
    }
    return y;
}

}  // namespace flashlm::ops
