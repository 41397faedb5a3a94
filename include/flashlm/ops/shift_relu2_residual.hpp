#pragma once
// FlashLM v5 "Thunderbolt"'s FFN sub-layer (VARIANTS.md §6.2) with its norm, token shift and residual as
// one tape node, x: [B, L, D]:
//   u = token_shift(LayerNorm(x), mix),  out = x + W̃_down( relu(W̃_up u)² )
// with both projections BitLinear-Q1' (ops/bitlinear_q1p.hpp, identity STE). The chain kept the norm's
// output, the shift's, the up projection's, the square's and the down projection's, each with a
// gradient of its size; this node keeps the up projection's output A [M, F] and the norm's row
// statistics. LayerNorm(x) and its shift are recomputed in the backward (two cheap row passes against
// the GEMMs), relu(A)² from A, and every inner gradient lives in the tape's workspace. The output takes
// over x's gradient buffer as the pre-norm residual nodes do (x has no later consumer).
// Numbers: the chain's to rounding (the norm's sums run in float); tests/variants/thunderbolt_fused.cpp.
#include <algorithm>

#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/bitlinear_q1p.hpp"
#include "flashlm/ops/group_norm.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/ternary_linear.hpp"
#include "flashlm/ops/token_shift.hpp"

namespace flashlm::ops {

namespace shift_detail {
// u = token_shift(LayerNorm(x)) into U, the norm's output into N; mu, rs written (the same values when
// the backward recomputes them).
template <class T>
void norm_shift(const T* x, const T* w, const T* b, double eps, const T* s, T* N, T* U, T* mu, T* rs, int64_t M,
                int64_t L, int64_t D) {
    group_norm_rows_raw(x, w, b, eps, N, mu, rs, M, D, 1);
    token_shift_raw(N, s, U, M, L, D);
}

// σ(m) for the shift, into s [D].
template <class T>
void shift_gate(const T* m, T* s, int64_t D) {
    for (int64_t c = 0; c < D; ++c) s[c] = sigmoid_scalar(m[c]);
}

// The way back through token_shift(LayerNorm(x)) from dU: dN written to its own buffer (callers pass U's,
// whose u nothing reads any more; N must stay, as mix's gradient reads it), then x.grad += LayerNorm's
// backward, and the gain, bias and mix gradients.
template <class T>
void norm_shift_backward(const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b, const Tensor<T>& mix, const T* s,
                         const T* mu, const T* rs, T* N, const T* dU, T* dN, T* part, int64_t L) {
    const int64_t M = x.rows(), D = x.cols();
    token_shift_backward_raw(N, s, dU, dN, mix.grad, part, M, L, D);
    group_norm_rows_backward_raw(x.data, w.data, mu, rs, dN, x.grad, true, w.grad, b.grad, part, M, D, int64_t(1));
}
}  // namespace shift_detail

// saved: [0] A = u W̃_upᵀ [M, F], [1] the norm's mu | rs [M each], [2] W̃_up | W̃_down | σ(mix) [D].
template <class T>
void shift_relu2_residual_backward(Node<T>& n) {
    using namespace shift_detail;
    using prenorm_detail::a16;
    const Tensor<T>&x = n.in[0], &w = n.in[1], &b = n.in[2], &mix = n.in[3], &Wu = n.in[4], &Wd = n.in[5];
    const int64_t L = x.dim(1), D = x.dim(2), M = x.rows(), F = Wu.dim(0);
    const int64_t md = a16(M * D), mf = a16(M * F), part = sum_blocks(M) * 2 * D;
    const T *A = n.saved[0], *wqu = n.saved[2], *wqd = wqu + a16(F * D), *s = wqd + a16(F * D);
    T *mu = n.saved[1], *rs = mu + a16(M);
    const T* dout = n.out.grad;  // x's own gradient buffer when shared: read before the norm's backward adds to it
    T* ws = prenorm_detail::tape_of(n).workspace(mf + 3 * md + part);
    T *R = ws, *N = R + mf, *U = N + md, *dU = U + md, *parts = dU + md;
    // down: dW_down += doutᵀ relu(A)² (recomputed), then dR = dout W̃_down over the same buffer
    parallel_for(M * F, M * F, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T r = std::max(A[i], T(0));
            R[i] = r * r;
        }
    });
    if (Wd.grad) kernels::gemm_tn(D, F, M, dout, R, Wd.grad, true);
    ternary_linear_dx(M, F, D, dout, wqd, R, false);
    // relu²: dA = 2 max(A, 0) dR, in place
    parallel_for(M * F, M * F, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) R[i] = T(2) * std::max(A[i], T(0)) * R[i];
    });
    // up: dU = dA W̃_up, dW_up += dAᵀ u (u recomputed)
    norm_shift(x.data, w.data, b.data, n.f[0], s, N, U, mu, rs, M, L, D);
    ternary_linear_dx(M, D, F, R, wqu, dU, false);
    if (Wu.grad) kernels::gemm_tn(F, D, M, R, U, Wu.grad, true);
    norm_shift_backward(x, w, b, mix, s, mu, rs, N, dU, U, parts, L);
}

// x: [B, L, D]; norm weight, bias, mix: [D]; W_up: [F, D]; W_down: [D, F]. Returns [B, L, D].
template <class T>
Tensor<T> shift_relu2_residual(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b,
                               const Tensor<T>& mix, const Tensor<T>& Wu, const Tensor<T>& Wd, double eps = 1e-5) {
    using namespace shift_detail;
    using prenorm_detail::a16;
    FLASHLM_CHECK(x.shape.rank == 3, "shift_relu2_residual: input must be [B, L, D], got " + x.shape.str());
    const int64_t L = x.dim(1), D = x.dim(2), M = x.rows();
    const int64_t F = Wu.shape.rank == 2 ? Wu.dim(0) : 0;
    FLASHLM_CHECK(w.shape == Shape{D} && b.shape == Shape{D} && mix.shape == Shape{D} && Wu.shape == (Shape{F, D}) &&
                      Wd.shape == (Shape{D, F}),
                  "shift_relu2_residual: input " + x.shape.str() + ", norm " + w.shape.str() + " / " + b.shape.str() +
                      ", mix " + mix.shape.str() + ", weights " + Wu.shape.str() + ", " + Wd.shape.str());
    const bool rec = tape.recording({x, w, b, mix, Wu, Wd});
    const int64_t md = a16(M * D), mf = a16(M * F);
    T* wq = tape.scratch(2 * a16(F * D) + a16(D));
    T *wqu = wq, *wqd = wq + a16(F * D), *s = wqd + a16(F * D);
    quantize_absmean_q1p(Wu.data, wqu, F * D);
    quantize_absmean_q1p(Wd.data, wqd, F * D);
    shift_gate(mix.data, s, D);
    T* st = tape.scratch(2 * a16(M));
    T *mu = st, *rs = st + a16(M);
    T* ws = tape.workspace(2 * md + mf);
    T *N = ws, *U = N + md, *R = U + md;
    norm_shift(x.data, w.data, b.data, eps, s, N, U, mu, rs, M, L, D);
    T* A = rec ? tape.scratch(mf) : R;  // without a backward, relu² runs in place
    ternary_linear_forward(M, F, D, U, wqu, A);  // int8 under --quant int8, as BitLinear
    parallel_for(M * F, M * F, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const T r = std::max(A[i], T(0));
            R[i] = r * r;
        }
    });
    Tensor<T> out = prenorm_detail::residual_output(tape, x, rec);
    ternary_linear_forward(M, D, F, R, wqd, out.data);
    prenorm_detail::add_residual(x.data, out.data, M * D);
    if (rec) {
        auto& n = tape.record(&shift_relu2_residual_backward<T>);
        n.in[0] = x, n.in[1] = w, n.in[2] = b, n.in[3] = mix, n.in[4] = Wu, n.in[5] = Wd;
        n.out = out;
        n.saved[0] = A, n.saved[1] = st, n.saved[2] = wq;
        n.f[0] = eps;
        n.ctx = &tape;
    }
    return out;
}

}  // namespace flashlm::ops
