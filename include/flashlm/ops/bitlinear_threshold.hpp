#pragma once
// BitLinear with the Q0 threshold quantizer (FlashLM v3, VARIANTS.md §2):
//   t = mean|W| (whole tensor); W̃ = +1 where W > t, -1 where W < -t, else 0 — no rescale, the layer
//   multiplies by raw ±1;  y = x W̃ᵀ.
// Backward: the identity straight-through estimator of bitlinear.hpp (dW gets dyᵀx as if W̃ were W).
#include <cmath>

#include "flashlm/ops/bitlinear.hpp"

namespace flashlm::ops {

// Q0 of n weights into out (values in {-1, 0, 1}). Returns the threshold t.
template <class T>
T quantize_threshold(const T* w, T* out, int64_t n) {
    const double s = parallel_sum(n, n, [&](int64_t b, int64_t e) {
        double acc = 0;
        for (int64_t i = b; i < e; ++i) acc += std::abs(double(w[i]));
        return acc;
    });
    const T t = T(s / double(n));
    parallel_for(n, 2 * n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = w[i] > t ? T(1) : (w[i] < -t ? T(-1) : T(0));
    });
    return t;
}

template <class T>
Tensor<T> bitlinear_threshold(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "bitlinear_threshold: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    quantize_threshold(W.data, wq, N * K);
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
