#pragma once
// GELU (exact erf form, torch's default) and the fused GeGLU gate of the v5.2 FFN:
//   gelu(x) = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)), gelu'(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π);
//   geglu(h) = gelu(h₁) ⊙ h₂ with [h₁, h₂] = the two halves of h's last dimension (torch.chunk(2, −1)),
// read straight from the up-projection's output, so the split costs no copies.
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

template <class T>
void gelu_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T* x = n.in[0].data;
    parallel_for(N, 8 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) n.in[0].grad[i] += n.out.grad[i] * gelu_grad_scalar(x[i]);
    });
}

template <class T>
Tensor<T> gelu(Tape<T>& tape, const Tensor<T>& x) {
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    parallel_for(N, 8 * N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = gelu_scalar(x.data[i]);
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
            for (int64_t c = 0; c < F; ++c) {
                // gelu_scalar and gelu_grad_scalar share erf(a/√2): computed once, the same bits as both
                const T x = a[c], e = std::erf(x * T(M_SQRT1_2));
                const T cdf = T(0.5) * (T(1) + e);
                da[c] += g[c] * b[c] * (cdf + x * std::exp(T(-0.5) * x * x) * T(0.5 * M_2_SQRTPI * M_SQRT1_2));
                db[c] += g[c] * (T(0.5) * x * (T(1) + e));
            }
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
            for (int64_t c = 0; c < F; ++c) yr[c] = gelu_scalar(a[c]) * b[c];
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
