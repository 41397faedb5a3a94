#pragma once
// Soft attention of every row over a small learned slot matrix (FlashLM v6/v6.1 SlotMemoryAttention,
// VARIANTS.md §8.2, §8.3, §15.11), q: [..., d], S: [n, d]:
//   A = softmax(scale · q Sᵀ) by rows ([..., n]),   out = A S   ([..., d]).
// No mask: the slots are parameters, not positions, so every row only reads itself and S.
// Saves A ([M, n], n is 8…16); backward:
//   dA = dout Sᵀ,  dS += Aᵀ dout,  dZ = scale · A ⊙ (dA − rowsum(A ⊙ dA)),  dq += dZ S,  dS += dZᵀ q.
#include <cmath>
#include <cstdint>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/ops/linear.hpp"
#include "flashlm/ops/softmax.hpp"

namespace flashlm::ops {

// One row, for generation: out[d] = softmax(scale · S q) S; a is scratch of n.
inline void slot_attention_row(const float* q, const float* S, int64_t n, int64_t d, float scale, float* a, float* out) {
    for (int64_t j = 0; j < n; ++j) {
        const float* s = S + j * d;
        float z = 0;
        for (int64_t c = 0; c < d; ++c) z += q[c] * s[c];
        a[j] = z * scale;
    }
    softmax_row(a, a, n);
    for (int64_t c = 0; c < d; ++c) out[c] = 0;
    for (int64_t j = 0; j < n; ++j) {
        const float* s = S + j * d;
        const float w = a[j];
        for (int64_t c = 0; c < d; ++c) out[c] += w * s[c];
    }
}

template <class T>
void slot_attention_backward(Node<T>& n) {
    const Tensor<T>&q = n.in[0], &S = n.in[1];
    const int64_t M = q.rows(), d = q.cols(), ns = S.dim(0);
    const T scale = T(n.f[0]);
    const T* A = n.saved[0];
    T* dA = n.saved[1];
    const T* dout = n.out.grad;
    kernels::gemm_nt(M, ns, d, dout, S.data, dA, false);
    if (S.grad) kernels::gemm_tn(ns, d, M, A, dout, S.grad, true);
    parallel_for(M, 4 * M * ns, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            T* g = dA + r * ns;
            softmax_row_backward(A + r * ns, g, g, ns, false);
            for (int64_t j = 0; j < ns; ++j) g[j] *= scale;
        }
    });
    if (q.grad) kernels::gemm_nn(M, d, ns, dA, S.data, q.grad, true);
    if (S.grad) kernels::gemm_tn(ns, d, M, dA, q.data, S.grad, true);
}

// q: [..., d], S: [n, d] -> [..., d].
template <class T>
Tensor<T> slot_attention(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& S, double scale) {
    FLASHLM_CHECK(S.shape.rank == 2 && S.dim(0) >= 1 && S.dim(1) == q.cols(),
                  "slot_attention: query " + q.shape.str() + " does not match slots " + S.shape.str());
    const int64_t M = q.rows(), d = q.cols(), ns = S.dim(0);
    Tensor<T> y = tape.make(q.shape, tape.recording({q, S}));
    T* A = tape.scratch(M * ns);
    kernels::gemm_nt(M, ns, d, q.data, S.data, A, false);
    const T sc = T(scale);
    parallel_for(M, 4 * M * ns, [&](int64_t b_, int64_t e_) {
        for (int64_t r = b_; r < e_; ++r) {
            T* a = A + r * ns;
            for (int64_t j = 0; j < ns; ++j) a[j] *= sc;
            softmax_row(a, a, ns);
        }
    });
    kernels::gemm_nn(M, d, ns, A, S.data, y.data, false);
    if (y.grad) {
        auto& n = tape.record(&slot_attention_backward<T>);
        n.in[0] = q;
        n.in[1] = S;
        n.out = y;
        n.saved[0] = A;
        n.saved[1] = tape.scratch(M * ns);
        n.f[0] = scale;
    }
    return y;
}

}  // namespace flashlm::ops
