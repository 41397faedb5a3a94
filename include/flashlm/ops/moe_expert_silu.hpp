#pragma once
// nova-diff's MoE experts (v5.2 Nova-Ignition as announced, VARIANTS.md §7.1), each expert one tape node:
//   expert_silu:              y = W̃₂ SiLU(W̃₁ h)                                  (the shared expert)
//   routed_expert_silu_into:  acc[r] += g_r · W̃₂ SiLU(W̃₁ h_r)  for r in rows      (a top-1 routed expert)
// with W̃ the Q2 per-row absmean ternarisation (ops/bitlinear_rows.hpp, identity STE) and g the router's
// gate [N, 1] (ops::top1_softmax_gate). The chain (bitlinear_rows → silu → bitlinear_rows, and for a
// routed expert gather_rows ×2, scale_rows and scatter_add_rows) kept every intermediate with a gradient
// of its size, about eight floats per hidden unit; these nodes keep the up projection's output A [n, F]
// and, for a routed expert, its unscaled output Y [n, D] (the gate's gradient reads it). SiLU(A), the
// gathered rows and every inner gradient are recomputed or held in the tape's workspace.
// Numbers: the chain's arithmetic in the chain's order, so the same bits (tests/variants/nova_diff_fused.cpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/bitlinear_rows.hpp"
#include "flashlm/ops/moe_expert.hpp"
#include "flashlm/ops/moe_routing.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/ternary_linear.hpp"

namespace flashlm::ops {

namespace expert_silu_detail {
using prenorm_detail::a16;

// W̃₁ | W̃₂ into one scratch block (the backward reads both).
template <class T>
T* quantize_pair(Tape<T>& tape, const Tensor<T>& W1, const Tensor<T>& W2, int64_t D, int64_t F) {
    T* wq = tape.scratch(2 * a16(F * D));
    quantize_absmean_rows(W1.data, wq, F, D);
    quantize_absmean_rows(W2.data, wq + a16(F * D), D, F);
    return wq;
}

// A = X W̃₁ᵀ, S = SiLU(A), Y = S W̃₂ᵀ for n rows (int8 under --quant int8, as BitLinear).
template <class T>
void forward(const T* X, const T* wq, T* A, T* S, T* Y, int64_t n, int64_t D, int64_t F) {
    ternary_linear_forward(n, F, D, X, wq, A);
    silu_raw(A, S, n * F);
    ternary_linear_forward(n, D, F, S, wq + a16(F * D), Y);
}

// From dY [n, D]: dW₂ += dYᵀ SiLU(A), dA = (dY W̃₂) ⊙ SiLU′(A), dW₁ += dAᵀ X, dX (+)= dA W̃₁. S [n, F] is
// workspace. The chain's passes in its order (down's, SiLU's, up's backward).
template <class T>
void backward(const T* X, const T* A, const T* dY, const T* wq, T* dW1, T* dW2, T* S, T* dX, bool dx_accumulate,
              int64_t n, int64_t D, int64_t F) {
    silu_raw(A, S, n * F);
    if (dW2) kernels::gemm_tn(D, F, n, dY, S, dW2, true);
    ternary_linear_dx(n, F, D, dY, wq + a16(F * D), S, false);  // dS over S
    silu_backward_raw(A, S, S, n * F, false);                  // dA over dS
    if (dW1) kernels::gemm_tn(F, D, n, S, X, dW1, true);
    if (dX) ternary_linear_dx(n, D, F, S, wq, dX, dx_accumulate);
}

template <class T>
void check_weights(const char* op, const Tensor<T>& h, const Tensor<T>& W1, const Tensor<T>& W2) {
    const int64_t D = h.cols(), F = W1.shape.rank == 2 ? W1.dim(0) : 0;
    FLASHLM_CHECK(W1.shape == (Shape{F, D}) && W2.shape == (Shape{D, F}),
                  std::string(op) + ": input " + h.shape.str() + ", weights " + W1.shape.str() + ", " + W2.shape.str());
}
}  // namespace expert_silu_detail

// saved: [0] A [N, F], [1] W̃₁ | W̃₂.
template <class T>
void expert_silu_backward(Node<T>& n) {
    using expert_silu_detail::a16;
    const Tensor<T>&h = n.in[0], &W1 = n.in[1], &W2 = n.in[2];
    const int64_t N = h.rows(), D = h.cols(), F = W1.dim(0);
    T* S = prenorm_detail::tape_of(n).workspace(a16(N * F));
    expert_silu_detail::backward(h.data, n.saved[0], n.out.grad, n.saved[1], W1.grad, W2.grad, S, h.grad, true, N, D,
                                 F);
}

// h: [N, D]; W1: [F, D]; W2: [D, F] -> [N, D].
template <class T>
Tensor<T> expert_silu(Tape<T>& tape, const Tensor<T>& h, const Tensor<T>& W1, const Tensor<T>& W2) {
    using expert_silu_detail::a16;
    expert_silu_detail::check_weights("expert_silu", h, W1, W2);
    const int64_t N = h.rows(), D = h.cols(), F = W1.dim(0);
    const bool rec = tape.recording({h, W1, W2});
    T* wq = expert_silu_detail::quantize_pair(tape, W1, W2, D, F);
    T* ws = tape.workspace(2 * a16(N * F));
    T* A = rec ? tape.scratch(a16(N * F)) : ws + a16(N * F);
    Tensor<T> y = tape.make(Shape{N, D}, rec);
    expert_silu_detail::forward(h.data, wq, A, ws, y.data, N, D, F);
    if (y.grad) {
        auto& n = tape.record(&expert_silu_backward<T>);
        n.in[0] = h, n.in[1] = W1, n.in[2] = W2;
        n.out = y;
        n.saved[0] = A, n.saved[1] = wq;
        n.ctx = &tape;
    }
    return y;
}

// saved: [0] A [n, F] | Y [n, D], [1] W̃₁ | W̃₂, [2] the rows as T values.
template <class T>
void routed_expert_silu_into_backward(Node<T>& n) {
    using expert_silu_detail::a16;
    const Tensor<T>&h = n.in[0], &gate = n.in[1], &W1 = n.in[2], &W2 = n.in[3];
    const int64_t R = n.i[0], D = h.cols(), F = W1.dim(0);
    const T* rows = n.saved[2];
    const T *A = n.saved[0], *Y = A + a16(R * F);
    const T* dacc = n.out.grad;
    // Laid out for all N rows, whatever this expert's share: the workspace then keeps one size and its
    // pages stay mapped from step to step while the routing moves tokens between experts.
    const int64_t N = h.rows();
    T* ws = prenorm_detail::tape_of(n).workspace(a16(N * F) + 3 * a16(N * D));
    T *S = ws, *X = S + a16(N * F), *dY = X + a16(N * D), *dX = dY + a16(N * D);
    // The gate (scale_rows' backward): dY = g · dacc[r], dg_r += Σ_c dacc[r, c] Y[c]; and the rows of h.
    parallel_for(R, 2 * R * D, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const int64_t r = int64_t(rows[m]);
            const T* d = dacc + r * D;
            const T g = gate.data[r];
            for (int64_t c = 0; c < D; ++c) dY[m * D + c] = g * d[c];
            if (gate.grad) {
                T s = 0;
                for (int64_t c = 0; c < D; ++c) s += d[c] * Y[m * D + c];
                gate.grad[r] += s;
            }
            std::memcpy(X + m * D, h.data + r * D, size_t(D) * sizeof(T));
        }
    });
    expert_silu_detail::backward(X, A, dY, n.saved[1], W1.grad, W2.grad, S, h.grad ? dX : nullptr, false, R, D, F);
    if (!h.grad) return;
    parallel_for(R, R * D, [&](int64_t m0, int64_t m1) {  // rows are distinct (checked in the forward)
        for (int64_t m = m0; m < m1; ++m) {
            T* dst = h.grad + int64_t(rows[m]) * D;
            const T* src = dX + m * D;
            for (int64_t c = 0; c < D; ++c) dst[c] += src[c];
        }
    });
}

// acc, h: [N, D]; gate: [N, 1]; rows[0 … n): distinct rows in [0, N) (one expert's tokens under top-1
// routing); W1: [F, D]; W2: [D, F]. Adds g_r · expert(h_r) to acc's rows in place and returns acc. As for
// scatter_add_rows_into, acc must be an activation no other node reads (the shared expert's output): each
// node's backward reads the final d acc.
template <class T>
Tensor<T> routed_expert_silu_into(Tape<T>& tape, const Tensor<T>& acc, const Tensor<T>& h, const Tensor<T>& gate,
                                  const int32_t* rows, int64_t n, const Tensor<T>& W1, const Tensor<T>& W2) {
    using expert_silu_detail::a16;
    expert_silu_detail::check_weights("routed_expert_silu_into", h, W1, W2);
    const int64_t N = h.rows(), D = h.cols(), F = W1.dim(0);
    FLASHLM_CHECK(acc.rows() == N && acc.cols() == D && gate.rows() == N && gate.cols() == 1 && n >= 0 && n <= N &&
                      N < (int64_t(1) << 24),
                  "routed_expert_silu_into: acc " + acc.shape.str() + ", h " + h.shape.str() + ", gate " +
                      gate.shape.str() + ", " + std::to_string(n) + " rows");
    thread_local std::vector<uint8_t> seen;
    seen.assign(size_t(N), 0);
    for (int64_t m = 0; m < n; ++m) {
        FLASHLM_CHECK(rows[m] >= 0 && rows[m] < N && !seen[size_t(rows[m])],
                      "routed_expert_silu_into: row index outside " + h.shape.str() + " or repeated");
        seen[size_t(rows[m])] = 1;
    }
    if (n == 0) return acc;
    const bool rec = acc.grad && tape.recording({h, gate, W1, W2});
    T* wq = expert_silu_detail::quantize_pair(tape, W1, W2, D, F);
    T* ws = tape.workspace(2 * a16(N * D) + 2 * a16(N * F));  // for all N rows, as in the backward
    T *X = ws, *S = X + a16(N * D);
    T* AY = rec ? tape.scratch(a16(n * F) + a16(n * D)) : S + a16(N * F);
    T *A = AY, *Y = AY + a16(n * F);
    detail::gather_rows_into(h.data, rows, n, D, X);
    expert_silu_detail::forward(X, wq, A, S, Y, n, D, F);
    // g·Y goes through memory before the add, as the chain's scale_rows output did: one product and one
    // sum, never contracted into an FMA (gnu++20 allows contraction within an expression).
    parallel_for(n, 2 * n * D, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const int64_t r = rows[m];
            const T g = gate.data[r];
            T* gy = X + m * D;  // X's row m is not read again
            for (int64_t c = 0; c < D; ++c) gy[c] = g * Y[m * D + c];
            T* dst = acc.data + r * D;
            for (int64_t c = 0; c < D; ++c) dst[c] += gy[c];
        }
    });
    if (rec) {
        auto& nd = tape.record(&routed_expert_silu_into_backward<T>);
        nd.in[0] = h, nd.in[1] = gate, nd.in[2] = W1, nd.in[3] = W2;
        nd.out = acc;
        nd.saved[0] = AY, nd.saved[1] = wq, nd.saved[2] = detail::save_rows(tape, rows, n);
        nd.i[0] = n;
        nd.ctx = &tape;
    }
    return acc;
}

}  // namespace flashlm::ops
