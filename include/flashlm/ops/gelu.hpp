#pragma once
// GELU (exact erf form, torch's default) and the fused GeGLU gate of the v5.2 FFN:
//   gelu(x) = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)), gelu'(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π);
//   geglu(h) = gelu(h₁) ⊙ h₂ with [h₁, h₂] = the two halves of h's last dimension (torch.chunk(2, −1)),
// read straight from the up-projection's output, so the split costs no copies.
// erf and exp go through xsimd's batch versions (≤ 1.5 ulp against the exact erf): one libm call per
// element kept these loops scalar, about 7 % of a nova step. The scalar forms below (cached generation)
// use libm; the two agree to float rounding.
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::ops {

template <class T>
inline T gelu_scalar(T x) {
    return T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2)));
}
template <class T>
inline T gelu_grad_scalar(T x) {
    const T cdf = T(0.5) * (T(1) + std::erf(x * T(M_SQRT1_2)));
    return cdf + x * std::exp(T(-0.5) * x * x) * T(0.5 * M_2_SQRTPI * M_SQRT1_2);
}

namespace detail {
inline constexpr int64_t k_gelu_chunk = 256;  // values per stack chunk of the vectorised loops

// cdf[i] = Φ(x[i]) = ½(1 + erf(x[i]/√2)) and, when pdf is not null, pdf[i] = x[i]·φ(x[i]) =
// x[i]·exp(−x[i]²/2)/√(2π), for n ≤ k_gelu_chunk values. The ragged tail runs through the same batch code
// on a padded copy, so a value's result does not depend on its position.
template <class T>
void gelu_parts(const T* x, int64_t n, T* cdf, T* pdf) {
    using B = xsimd::batch<T>;
    constexpr int64_t W = int64_t(B::size);
    auto one = [&](const T* xi, T* ci, T* pi) {
        const B v = B::load_unaligned(xi);
        (B(T(0.5)) * (B(T(1)) + xsimd::erf(v * B(T(M_SQRT1_2))))).store_unaligned(ci);
        if (pi) (v * xsimd::exp(B(T(-0.5)) * v * v) * B(T(0.5 * M_2_SQRTPI * M_SQRT1_2))).store_unaligned(pi);
    };
    int64_t i = 0;
    for (; i + W <= n; i += W) one(x + i, cdf + i, pdf ? pdf + i : nullptr);
    if (i < n) {
        T xin[W] = {}, c[W], p[W];
        std::copy(x + i, x + n, xin);
        one(xin, c, pdf ? p : nullptr);
        std::copy(c, c + (n - i), cdf + i);
        if (pdf) std::copy(p, p + (n - i), pdf + i);
    }
}

// f(i0, len, cdf, pdf) for each stack chunk [i0, i0 + len) of x[0, n), cdf/pdf holding its gelu_parts
// (pdf only WithPdf).
template <bool WithPdf, class T, class F>
void gelu_chunks(const T* x, int64_t n, F&& f) {
    T cdf[k_gelu_chunk], pdf[WithPdf ? k_gelu_chunk : 1];
    for (int64_t i0 = 0; i0 < n; i0 += k_gelu_chunk) {
        const int64_t len = std::min(k_gelu_chunk, n - i0);
        gelu_parts(x + i0, len, cdf, WithPdf ? pdf : static_cast<T*>(nullptr));
        f(i0, len, static_cast<const T*>(cdf), static_cast<const T*>(pdf));
    }
}
}  // namespace detail

template <class T>
void gelu_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* x = n.in[0].data;
    parallel_for(N, 8 * N, [&](int64_t b_, int64_t e_) {
        detail::gelu_chunks<true>(x + b_, e_ - b_, [&](int64_t i0, int64_t len, const T* cdf, const T* pdf) {
            T* dx = n.in[0].grad + b_ + i0;
            const T* dy = n.out.grad + b_ + i0;
            for (int64_t i = 0; i < len; ++i) dx[i] += dy[i] * (cdf[i] + pdf[i]);
        });
    });
}

template <class T>
Tensor<T> gelu(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, 8 * N, [&](int64_t b_, int64_t e_) {
        detail::gelu_chunks<false>(x.data + b_, e_ - b_, [&](int64_t i0, int64_t len, const T* cdf, const T*) {
            const T* xi = x.data + b_ + i0;
            T* yi = y.data + b_ + i0;
            for (int64_t i = 0; i < len; ++i) yi[i] = xi[i] * cdf[i];
        });
    });
    if (y.grad) {
        auto& n = tape.record(&gelu_backward<T>);
        n.in[0] = x;
        n.out = y;
    }
    return y;
}

template <class T>
void geglu_backward(Node<T>& n) {
    const Tensor<T>& h = n.in[0];
    const int64_t M = n.out.rows(), F = n.out.cols();
    parallel_for(M, 16 * M * F, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* a = h.data + r * 2 * F;
            const T* b = a + F;
            const T* g = n.out.grad + r * F;
            T* da = h.grad + r * 2 * F;
            T* db = da + F;
            detail::gelu_chunks<true>(a, F, [&](int64_t c0, int64_t len, const T* cdf, const T* pdf) {
                for (int64_t c = 0; c < len; ++c) {
                    da[c0 + c] += g[c0 + c] * b[c0 + c] * (cdf[c] + pdf[c]);
                    db[c0 + c] += g[c0 + c] * (a[c0 + c] * cdf[c]);
                }
            });
        }
    });
}

// h [..., 2F] -> [..., F]
template <class T>
Tensor<T> geglu(Tape<T>& tape, const Tensor<T>& h) {
    const int64_t C = h.cols();
    FLASHLM_CHECK(C % 2 == 0, "geglu: last dimension " + std::to_string(C) + " is odd");
    const int64_t M = h.rows(), F = C / 2;
    Tensor<T> y = tape.make(with_last_dim(h.shape, F), tape.recording({h}));
    parallel_for(M, 8 * M * F, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            const T* a = h.data + r * C;
            const T* b = a + F;
            T* yr = y.data + r * F;
            detail::gelu_chunks<false>(a, F, [&](int64_t c0, int64_t len, const T* cdf, const T*) {
                for (int64_t c = 0; c < len; ++c) yr[c0 + c] = a[c0 + c] * cdf[c] * b[c0 + c];
            });
        }
    });
    if (y.grad) {
        auto& n = tape.record(&geglu_backward<T>);
        n.in[0] = h;
        n.out = y;
    }
    return y;
}

}  // namespace flashlm::ops
