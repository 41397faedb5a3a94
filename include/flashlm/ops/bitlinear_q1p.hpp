#pragma once
// BitLinear with FlashLM v5's Q1' quantizer (VARIANTS.md §2): α = max(mean|W|, 1e-5) (per tensor);
// W̃ = clamp(round(W / α), −1, 1)·α. Q1 (ops/bitlinear.hpp) divides by α + 1e-8 instead of clamping α;
// the two differ only for near-zero tensors or weights within float round-off of a rounding tie.
// Backward: the identity straight-through estimator, as for Q1.
#include <algorithm>
#include <cmath>

#include <Eigen/Core>

#include "flashlm/ops/bitlinear.hpp"

namespace flashlm::ops {

// Q1' ternarisation of n weights: codes (if non-null) in {−1, 0, 1} and/or values q·α (if non-null).
// round() is half-to-even (std::nearbyint), like torch.round. Returns α.
template <class T>
T quantize_absmean_q1p(const T* w, T* out, int64_t n, int8_t* codes = nullptr) {
    const double s = parallel_sum(n, n, [&](int64_t b, int64_t e) {
        double acc = 0;
        for (int64_t i = b; i < e; ++i) acc += std::abs(double(w[i]));
        return acc;
    });
    const T alpha = std::max(T(s / double(std::max<int64_t>(n, 1))), T(1e-5));
    if (out) {
        // Eigen's rint is round-half-to-even like std::nearbyint, and vectorised (it runs every step).
        parallel_for(n, 8 * n, [&](int64_t b, int64_t e) {
            using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
            Eigen::Map<const Arr, Eigen::Unaligned> wv(w + b, e - b);
            Eigen::Map<Arr, Eigen::Unaligned>(out + b, e - b) = (wv / alpha).rint().cwiseMax(T(-1)).cwiseMin(T(1)) * alpha;
        });
    }
    if (codes)
        for (int64_t i = 0; i < n; ++i) {
            const T q = std::nearbyint(w[i] / alpha);
            codes[i] = int8_t(q > T(1) ? 1 : (q < T(-1) ? -1 : int(q)));
        }
    return alpha;
}

template <class T>
Tensor<T> bitlinear_q1p(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "bitlinear: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    quantize_absmean_q1p(W.data, wq, N * K);
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
