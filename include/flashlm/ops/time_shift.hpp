#pragma once
// Fixed causal shift along time with zero fill (VARIANTS.md §15.9; v6's `F.pad(h[:, :-k], (0, 0, k, 0))`),
// x: [B, T, D]:  y_t = x_{t−k} for t ≥ k, 0 before. Each sequence starts fresh.
// Backward: dx_s += dy_{s+k}.
#include <algorithm>
#include <cstring>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

template <class T>
void time_shift_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), k = n.i[0];
    parallel_for(B * L, B * L * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            if (r % L + k >= L) continue;
            T* dx = x.grad + r * D;
            const T* dy = n.out.grad + (r + k) * D;
            for (int64_t c = 0; c < D; ++c) dx[c] += dy[c];
        }
    });
}

// x: [B, T, D], k ≥ 1 -> [B, T, D].
template <class T>
Tensor<T> time_shift(Tape<T>& tape, const Tensor<T>& x, int64_t k) {
    FLASHLM_CHECK(x.shape.rank == 3, "time_shift: input must be [B, T, D], got " + x.shape.str());
    FLASHLM_CHECK(k >= 1, "time_shift: shift must be at least 1");
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    parallel_for(B * L, B * L * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* yr = y.data + r * D;
            if (r % L < k) std::fill(yr, yr + D, T(0));
            else std::memcpy(yr, x.data + (r - k) * D, size_t(D) * sizeof(T));
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
