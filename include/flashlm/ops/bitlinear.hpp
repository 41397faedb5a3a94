#pragma once
// BitLinear with the Q1 absmean quantizer (FlashLM v4, VARIANTS.md §2):
//   α = mean|W| (whole tensor); W̃ = clamp(round(W / (α + 1e-8)), -1, 1) · α;  y = x W̃ᵀ.
// Backward is the identity straight-through estimator: dW receives dyᵀ x as if W̃ were W, while dx uses
// W̃. W̃ is computed once per forward (one use per step) and kept in the arena for the backward.
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/ops/linear.hpp"
#include "flashlm/ops/ternary_linear.hpp"

namespace flashlm::ops {

// Q1 absmean ternarisation of n weights into out (values in {-α, 0, α}). Returns α.
// round() is half-to-even (std::nearbyint), like torch.round.
template <class T>
T quantize_absmean(const T* w, T* out, int64_t n) {
    const double s = parallel_sum(n, n, [&](int64_t b, int64_t e) {
        double acc = 0;
        for (int64_t i = b; i < e; ++i) acc += std::abs(double(w[i]));
        return acc;
    });
    const T alpha = T(s / double(n));
    const T denom = alpha + T(1e-8);
    parallel_for(n, 8 * n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            T q = std::nearbyint(w[i] / denom);
            q = q > T(1) ? T(1) : (q < T(-1) ? T(-1) : q);
            out[i] = q * alpha;
        }
    });
    return alpha;
}

template <class T>
void bitlinear_backward(Node<T>& n) {
    ternary_linear_backward_raw(n.in[0], n.saved[0], n.in[1].grad, n.in[1].dim(0), n.out);
}

template <class T>
Tensor<T> bitlinear(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                "bitlinear: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    quantize_absmean(W.data, wq, N * K);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    ternary_linear_forward(x.rows(), N, K, x.data, wq, y.data);  // int8 under --quant int8
    if (y.grad) {
        auto& n = tape.record(&bitlinear_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.out = y;
        n.saved[0] = wq;
    }
    return y;
}

}  // namespace flashlm::ops
