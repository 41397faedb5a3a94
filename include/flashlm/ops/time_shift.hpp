#pragma once
// Fixed causal shift along time with zero fill: y[b, t] = x[b, t − k] for t ≥ k, else 0
// (torch F.pad(x[:, :-k], (0, 0, k, 0)); v6.1's SimpleGatedMix reads t−1 and t−2 this way).
#include <cstring>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void time_shift_backward(Node<T>& n) {
    const int64_t B = n.out.dim(0), L = n.out.dim(1), D = n.out.dim(2), k = n.i[0];
    parallel_for(B * L, B * L * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const int64_t t = r % L;
            if (t + k >= L) continue;
            T* dst = n.in[0].grad + r * D;
            const T* src = n.out.grad + (r + k) * D;
            for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
        }
    });
}

// x: [B, L, D], k ≥ 1 → [B, L, D].
template <class T>
Tensor<T> time_shift(Tape<T>& tape, const Tensor<T>& x, int64_t k) {
    FLASHLM_CHECK(x.shape.rank == 3 && k >= 1, "time_shift: needs [B, L, D] and a shift ≥ 1, got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    parallel_for(B * L, B * L * D, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            if (r % L < k) std::memset(y.data + r * D, 0, size_t(D) * sizeof(T));
            else std::memcpy(y.data + r * D, x.data + (r - k) * D, size_t(D) * sizeof(T));
        }
    });
    if (y.grad) {
        auto& n = tape.record(&time_shift_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.i[0] = k;
    }
    return y;
}

}  // namespace flashlm::ops
