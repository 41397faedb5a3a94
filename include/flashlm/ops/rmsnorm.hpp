#pragma once
// RMSNorm over the last dimension: y = x · r · g, r = 1/sqrt(mean(x²) + eps). Saves r per row.
// Backward: with x̂ = x·r and u = dy⊙g, dx = r (u − x̂ · mean(u⊙x̂)); dg = Σ_rows dy⊙x̂.
#include <cmath>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace detail {
// Σ_c term(c) for c < n as 16 interleaved partial sums and then a fixed tree. A plain `s += term(c)` is
// one chain of dependent adds that the compiler may not reorder, so a row of 192 took ~800 cycles; these
// partials stay in one or two vector registers. The order is fixed by this code, not by the vector width,
// so every ISA and thread count gets the same number.
template <class T, class Term>
T lane_sum(int64_t n, Term term) {
    constexpr int L = 16;
    T acc[L] = {};
    int64_t c = 0;
    for (; c + L <= n; c += L)
        for (int j = 0; j < L; ++j) acc[j] += term(c + j);
    for (int j = 0; c + j < n; ++j) acc[j] += term(c + j);
    for (int w = L / 2; w > 0; w /= 2)
        for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
    return acc[0];
}
}  // namespace detail

// dx += r (u − x̂ · mean(u⊙x̂)) (dx may be null), dg += Σ_rows dy⊙x̂ (dg may be null) for M rows of D.
// Shared with fused callers (ops/prenorm_residual.hpp), which must get the very same numbers.
template <class T>
void rmsnorm_backward_raw(const T* x, const T* g, const T* r, const T* dy, T* dx, T* dg, int64_t M, int64_t D) {
    if (dx) {
        parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) {
                const T* xi = x + i * D;
                const T* dyi = dy + i * D;
                const T dot = detail::lane_sum<T>(D, [&](int64_t c) { return dyi[c] * g[c] * xi[c]; });
                const T ri = r[i];
                const T k = dot * ri * ri / T(D);
                T* dxi = dx + i * D;
                for (int64_t c = 0; c < D; ++c) dxi[c] += ri * (dyi[c] * g[c] - xi[c] * k);
            }
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

// y = x · r · g row by row, r[i] = 1/sqrt(mean(x_i²) + eps).
template <class T>
void rmsnorm_raw(const T* x, const T* g, double eps, T* y, T* r, int64_t M, int64_t D) {
    parallel_for(M, M * D, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) {
            const T* xi = x + i * D;
            const T ss = detail::lane_sum<T>(D, [&](int64_t c) { return xi[c] * xi[c]; });
            const T ri = T(1) / std::sqrt(ss / T(D) + T(eps));
            r[i] = ri;
            T* yi = y + i * D;
            for (int64_t c = 0; c < D; ++c) yi[c] = xi[c] * ri * g[c];
        }
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
