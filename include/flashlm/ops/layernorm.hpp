#pragma once
// LayerNorm over the last dimension (torch.nn.LayerNorm, affine): y = x̂ ⊙ w + b, x̂ = (x − μ) · r,
// r = 1/sqrt(var + eps) with the biased variance. Saves μ and r per row.
// Backward: with u = dy ⊙ w, dx = r (u − mean(u) − x̂ · mean(u ⊙ x̂)); dw = Σ_rows dy ⊙ x̂; db = Σ_rows dy.
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

// The per-row sums run k_layernorm_rows rows side by side: each row's sum keeps its own sequential order
// (every bit as in a one-row loop), but the rows' add chains overlap instead of each waiting out the
// add latency per element.
inline constexpr int64_t k_layernorm_rows = 8;

template <int64_t R, class T>
void layernorm_backward_rows(const T* x, const T* w, const T* mu, const T* r, const T* dy, T* dx, int64_t i0, int64_t D) {
    T su[R] = {}, sux[R] = {}, mi[R], ri[R];
    for (int64_t j = 0; j < R; ++j) mi[j] = mu[i0 + j], ri[j] = r[i0 + j];
    for (int64_t c = 0; c < D; ++c) {
#pragma GCC unroll 8
        for (int64_t j = 0; j < R; ++j) {
            const int64_t o = (i0 + j) * D + c;
            const T u = dy[o] * w[c];
            su[j] += u;
            sux[j] += u * (x[o] - mi[j]) * ri[j];
        }
    }
    for (int64_t j = 0; j < R; ++j) {
        const int64_t i = i0 + j;
        const T* xi = x + i * D;
        const T* dyi = dy + i * D;
        const T m = mi[j], rj = ri[j];
        const T sui = su[j] / T(D), suxi = sux[j] / T(D);
        T* dxi = dx + i * D;
        for (int64_t c = 0; c < D; ++c) dxi[c] += rj * (dyi[c] * w[c] - sui - (xi[c] - m) * rj * suxi);
    }
}

template <int64_t R, class T>
void layernorm_rows(const T* x, const T* w, const T* b, double eps, T* y, T* mu, T* r, int64_t i0, int64_t D) {
    T s[R] = {}, ss[R] = {}, m[R];
    for (int64_t c = 0; c < D; ++c) {
#pragma GCC unroll 8
        for (int64_t j = 0; j < R; ++j) s[j] += x[(i0 + j) * D + c];
    }
    for (int64_t j = 0; j < R; ++j) m[j] = s[j] / T(D);
    for (int64_t c = 0; c < D; ++c) {
#pragma GCC unroll 8
        for (int64_t j = 0; j < R; ++j) {
            const T d = x[(i0 + j) * D + c] - m[j];
            ss[j] += d * d;
        }
    }
    for (int64_t j = 0; j < R; ++j) {
        const int64_t i = i0 + j;
        const T* xi = x + i * D;
        const T mj = m[j];
        const T ri = T(1) / std::sqrt(ss[j] / T(D) + T(eps));
        mu[i] = mj, r[i] = ri;
        T* yi = y + i * D;
        for (int64_t c = 0; c < D; ++c) yi[c] = (xi[c] - mj) * ri * w[c] + b[c];
    }
}

template <class T>
void layernorm_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const Tensor<T>& b = n.in[2];
    const int64_t M = x.rows(), D = x.cols();
    const T* mu = n.saved[0];
    const T* r = n.saved[1];
    const T* dy = n.out.grad;
    if (x.grad) {
        parallel_for(M, 4 * M * D, [&](int64_t b_, int64_t e_) {
            int64_t i = b_;
            for (; i + k_layernorm_rows <= e_; i += k_layernorm_rows)
                layernorm_backward_rows<k_layernorm_rows>(x.data, w.data, mu, r, dy, x.grad, i, D);
            for (; i < e_; ++i) layernorm_backward_rows<1>(x.data, w.data, mu, r, dy, x.grad, i, D);
        });
    }
    // Parameter gradients sum over rows: serial in row order so the result does not depend on threads.
    if (w.grad || b.grad) {
        for (int64_t i = 0; i < M; ++i) {
            const T* xi = x.data + i * D;
            const T* dyi = dy + i * D;
            const T mi = mu[i], ri = r[i];
            if (w.grad)
                for (int64_t c = 0; c < D; ++c) w.grad[c] += dyi[c] * (xi[c] - mi) * ri;
            if (b.grad)
                for (int64_t c = 0; c < D; ++c) b.grad[c] += dyi[c];
        }
    }
}

// x [..., D], w [D], b [D].
template <class T>
Tensor<T> layernorm(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b, double eps = 1e-5) {
    FLASHLM_CHECK(w.numel() == x.cols() && b.numel() == x.cols(),
                  "layernorm: weight " + w.shape.str() + " / bias " + b.shape.str() + " do not match input " + x.shape.str());
    const int64_t M = x.rows(), D = x.cols();
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w, b}));
    T* mu = tape.scratch(M);
    T* r = tape.scratch(M);
    parallel_for(M, 3 * M * D, [&](int64_t b_, int64_t e_) {
        int64_t i = b_;
        for (; i + k_layernorm_rows <= e_; i += k_layernorm_rows)
            layernorm_rows<k_layernorm_rows>(x.data, w.data, b.data, eps, y.data, mu, r, i, D);
        for (; i < e_; ++i) layernorm_rows<1>(x.data, w.data, b.data, eps, y.data, mu, r, i, D);
    });
    if (y.grad) {
        auto& n = tape.record(&layernorm_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.in[2] = b;
        n.out = y;
        n.saved[0] = mu;
        n.saved[1] = r;
    }
    return y;
}

// One row, for cached generation.
inline void layernorm_vec(const float* x, const float* w, const float* b, float* y, int64_t D, float eps) {
    float s = 0;
    for (int64_t c = 0; c < D; ++c) s += x[c];
    const float m = s / float(D);
    float ss = 0;
    for (int64_t c = 0; c < D; ++c) ss += (x[c] - m) * (x[c] - m);
    const float r = 1.0f / std::sqrt(ss / float(D) + eps);
    for (int64_t c = 0; c < D; ++c) y[c] = (x[c] - m) * r * w[c] + b[c];
}

}  // namespace flashlm::ops
