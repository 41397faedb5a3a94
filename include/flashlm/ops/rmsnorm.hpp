#pragma once
// RMSNorm over the last dimension: y = x · r · g, r = 1/sqrt(mean(x²) + eps). Saves r per row.
// Backward: with x̂ = x·r and u = dy⊙g, dx = r (u − x̂ · mean(u⊙x̂)); dg = Σ_rows dy⊙x̂.
#include <cmath>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

// dx += r (u − x̂ · mean(u⊙x̂)) (dx may be null), dg += Σ_rows dy⊙x̂ (dg may be null) for M rows of D.
// Shared with fused callers (ops/prenorm_residual.hpp), which must get the very same numbers.
// The per-row sums below run k_norm_rows rows side by side: each row's sum keeps its own sequential
// order (so every bit matches the one-row loop), but the rows' add chains overlap instead of each
// waiting out the add latency per element.
inline constexpr int64_t k_norm_rows = 8;

template <int64_t R, class T>
void rmsnorm_backward_rows(const T* x, const T* g, const T* r, const T* dy, T* dx, int64_t i0, int64_t D) {
    T dot[R] = {};
    for (int64_t c = 0; c < D; ++c) {
#pragma GCC unroll 8
        for (int64_t j = 0; j < R; ++j) dot[j] += dy[(i0 + j) * D + c] * g[c] * x[(i0 + j) * D + c];
    }
    for (int64_t j = 0; j < R; ++j) {
        const int64_t i = i0 + j;
        const T* xi = x + i * D;
        const T* dyi = dy + i * D;
        const T ri = r[i];
        const T k = dot[j] * ri * ri / T(D);
        T* dxi = dx + i * D;
        for (int64_t c = 0; c < D; ++c) dxi[c] += ri * (dyi[c] * g[c] - xi[c] * k);
    }
}

// dx += r (u − x̂ · mean(u⊙x̂)) (dx may be null), dg += Σ_rows dy⊙x̂ (dg may be null) for M rows of D.
// Shared with fused callers (ops/prenorm_residual.hpp), which must get the very same numbers.
template <class T>
void rmsnorm_backward_raw(const T* x, const T* g, const T* r, const T* dy, T* dx, T* dg, int64_t M, int64_t D) {
    if (dx) {
        parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
            int64_t i = b_;
            for (; i + k_norm_rows <= e_; i += k_norm_rows) rmsnorm_backward_rows<k_norm_rows>(x, g, r, dy, dx, i, D);
            for (; i < e_; ++i) rmsnorm_backward_rows<1>(x, g, r, dy, dx, i, D);
        });
    }
    if (dg) {
        for (int64_t i = 0; i < M; ++i) {
            const T* xi = x + i * D;
            const T* dyi = dy + i * D;
            const T ri = r[i];
            for (int64_t c = 0; c < D; ++c) dg[c] += dyi[c] * xi[c] * ri;
        }
    }
}

template <int64_t R, class T>
void rmsnorm_rows(const T* x, const T* g, double eps, T* y, T* r, int64_t i0, int64_t D) {
    T ss[R] = {};
    for (int64_t c = 0; c < D; ++c) {
#pragma GCC unroll 8
        for (int64_t j = 0; j < R; ++j) ss[j] += x[(i0 + j) * D + c] * x[(i0 + j) * D + c];
    }
    for (int64_t j = 0; j < R; ++j) {
        const int64_t i = i0 + j;
        const T* xi = x + i * D;
        const T ri = T(1) / std::sqrt(ss[j] / T(D) + T(eps));
        r[i] = ri;
        T* yi = y + i * D;
        for (int64_t c = 0; c < D; ++c) yi[c] = xi[c] * ri * g[c];
    }
}

// y = x · r · g row by row, r[i] = 1/sqrt(mean(x_i²) + eps).
template <class T>
void rmsnorm_raw(const T* x, const T* g, double eps, T* y, T* r, int64_t M, int64_t D) {
    parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
        int64_t i = b_;
        for (; i + k_norm_rows <= e_; i += k_norm_rows) rmsnorm_rows<k_norm_rows>(x, g, eps, y, r, i, D);
        for (; i < e_; ++i) rmsnorm_rows<1>(x, g, eps, y, r, i, D);
    });
}

template <class T>
void rmsnorm_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& g = n.in[1];
    rmsnorm_backward_raw(x.data, g.data, n.saved[0], n.out.grad, x.grad, g.grad, x.rows(), x.cols());
}

template <class T>
Tensor<T> rmsnorm(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& g, double eps = 1e-6) {
    FLASHLM_CHECK(g.numel() == x.cols(), "rmsnorm: gain " + g.shape.str() + " does not match input " + x.shape.str());
    const int64_t M = x.rows(), D = x.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, g}));
    T* r = tape.scratch(M);
    rmsnorm_raw(x.data, g.data, eps, y.data, r, M, D);
    if (y.grad) {
        auto& n = tape.record(&rmsnorm_backward<T>);
        n.in[0] = x;
        n.in[1] = g;
        n.out = y;
        n.saved[0] = r;
    }
    return y;
}

}  // namespace flashlm::ops
