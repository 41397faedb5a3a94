#pragma once
// BitLinear with the Q5 blockwise absmean quantizer (altpav fork, VARIANTS.md §2 and §11.1):
//   flatten W row-major, zero-pad to a multiple of 256, per 256-element block α_b = mean|block| (the
//   padding zeros count in the last block's mean, as F.pad + view(-1, 256).mean does upstream);
//   W̃ = clamp(round(W / (α_b + 1e-8)), -1, 1) · α_b;  y = x W̃ᵀ.
// A tensor of at most 256 elements falls back to Q1 (one α for the tensor). Blocks straddle rows when the
// input width is not a multiple of 256. Backward: the identity straight-through estimator of bitlinear.hpp.
#include <cmath>

#include "flashlm/ops/bitlinear.hpp"

namespace flashlm::ops {

inline constexpr int64_t k_q5_block = 256;

// Q5 ternarisation of n weights into out (values in {-α_b, 0, α_b}). round() is half-to-even like
// torch.round; the block sum runs in double and α is rounded to T once, like quantize_absmean.
template <class T>
void quantize_blockwise(const T* w, T* out, int64_t n, int64_t block = k_q5_block) {
    if (n <= block) {
        quantize_absmean(w, out, n);
        return;
    }
    const int64_t nb = (n + block - 1) / block;
    parallel_for(nb, 8 * n, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t i0 = b * block, i1 = std::min(n, i0 + block);
            double s = 0;
            for (int64_t i = i0; i < i1; ++i) s += std::abs(double(w[i]));
            const T alpha = T(s / double(block));
            const T denom = alpha + T(1e-8);
            for (int64_t i = i0; i < i1; ++i) {
                T q = std::nearbyint(w[i] / denom);
                q = q > T(1) ? T(1) : (q < T(-1) ? T(-1) : q);
                out[i] = q * alpha;
            }
        }
    });
}

template <class T>
Tensor<T> bitlinear_blockwise(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "bitlinear_blockwise: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    quantize_blockwise(W.data, wq, N * K);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    kernels::gemm_nt(x.rows(), N, K, x.data, wq, y.data, false);
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
