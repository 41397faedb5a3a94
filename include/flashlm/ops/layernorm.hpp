#pragma once
// LayerNorm over the last dimension (torch.nn.LayerNorm, affine): y = x̂ ⊙ w + b, x̂ = (x − μ) · r,
// r = 1/sqrt(var + eps) with the biased variance. Saves μ and r per row.
// Backward: with u = dy ⊙ w, dx = r (u − mean(u) − x̂ · mean(u ⊙ x̂)); dw = Σ_rows dy ⊙ x̂; db = Σ_rows dy.
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

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
            for (int64_t i = b_; i < e_; ++i) {
                const T* xi = x.data + i * D;
                const T* dyi = dy + i * D;
                const T mi = mu[i], ri = r[i];
                T su = 0, sux = 0;
                for (int64_t c = 0; c < D; ++c) {
                    const T u = dyi[c] * w.data[c];
                    su += u;
                    sux += u * (xi[c] - mi) * ri;
                }
                su /= T(D), sux /= T(D);
                T* dxi = x.grad + i * D;
                for (int64_t c = 0; c < D; ++c) dxi[c] += ri * (dyi[c] * w.data[c] - su - (xi[c] - mi) * ri * sux);
            }
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
        for (int64_t i = b_; i < e_; ++i) {
            const T* xi = x.data + i * D;
            T s = 0;
            for (int64_t c = 0; c < D; ++c) s += xi[c];
            const T m = s / T(D);
            T ss = 0;
            for (int64_t c = 0; c < D; ++c) ss += (xi[c] - m) * (xi[c] - m);
            const T ri = T(1) / std::sqrt(ss / T(D) + T(eps));
            mu[i] = m, r[i] = ri;
            T* yi = y.data + i * D;
            for (int64_t c = 0; c < D; ++c) yi[c] = (xi[c] - m) * ri * w.data[c] + b.data[c];
        }
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
