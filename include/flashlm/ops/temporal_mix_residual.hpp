#pragma once
// SUPERNOVA II's temporal mixer (VARIANTS.md §8.3, SimpleGatedMix) with its pre-norm and residual as one
// tape node, x: [B, L, D]:
//   u = RMSNorm(x),  m_t = mix1(u_{t−1}) + mix2(u_{t−2})  (zero before a sequence's start),
//   g = σ(gate([u, m])),  out = x + out_proj(u + g ⊙ (m − u))
// with the four projections BitLinear-Q3 (ops/bitlinear_median.hpp). The projections are row-wise, so
// mix1 and mix2 run on u itself as one product with 2D outputs, P = u [mix1; mix2]̃ᵀ, and the shifts move
// P's rows: m_t = P1_{t−1} + P2_{t−2} (a shifted-in zero row maps to zero: no bias). The chain's two shift
// copies, the concatenation copy, the add, sigmoid and lerp nodes, each with a gradient, become row
// passes; [u | m] is written once, side by side, for the gate's product.
// The node keeps C = [u | m], σ(gate) and the norm's row scales; u (contiguous) and u + g(m − u) are
// recomputed in the backward. The output takes over x's gradient buffer as the pre-norm residual nodes
// do (x has no later consumer). Numbers: the chain's to rounding; tests/variants/supernova2_fused.cpp.
#include <algorithm>
#include <cstring>

#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/bitlinear_median.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/rmsnorm.hpp"

namespace flashlm::ops {

namespace temporal_detail {
// C's left half = u (a copy of the contiguous U).
template <class T>
void write_u(const T* U, T* C, int64_t M, int64_t D) {
    parallel_for(M, M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) std::memcpy(C + r * 2 * D, U + r * D, size_t(D) * sizeof(T));
    });
}
// t = u + g ⊙ (m − u) for every row, from C = [u | m] and G.
template <class T>
void lerp_rows(const T* C, const T* G, T* out, int64_t M, int64_t D) {
    parallel_for(M, 2 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T *u = C + r * 2 * D, *m = u + D, *g = G + r * D;
            T* t = out + r * D;
            for (int64_t c = 0; c < D; ++c) t[c] = u[c] + g[c] * (m[c] - u[c]);
        }
    });
}
}  // namespace temporal_detail

// saved: [0] C = [u | m] [M, 2D], [1] σ(gate) [M, D], [2] row scales [M], [3] W̃ [mix1; mix2] | W̃ gate | W̃ out | α ×4.
template <class T>
void temporal_mix_residual_backward(Node<T>& n) {
    using namespace temporal_detail;
    using prenorm_detail::a16;
    const Tensor<T>&x = n.in[0], &gain = n.in[1], &W1 = n.in[2], &W2 = n.in[3], &Wg = n.in[4], &Wo = n.in[5];
    const int64_t L = x.dim(1), D = x.dim(2), M = x.rows(), md = a16(M * D), dd = a16(D * D);
    const T *C = n.saved[0], *G = n.saved[1];
    T* r = n.saved[2];
    const T *wq12 = n.saved[3], *wqg = wq12 + 2 * dd, *wqo = wqg + 2 * dd, *alpha = wqo + dd;
    const T* dout = n.out.grad;  // x's own gradient buffer when shared: read before the norm's backward adds to it
    T* ws = prenorm_detail::tape_of(n).workspace(5 * md + 2 * a16(2 * M * D) + a16(2 * D * D));
    T *t = ws, *dT = t + md, *dpre = dT + md, *dU = dpre + md, *U = dU + md, *dC = U + md, *dP = dC + a16(2 * M * D);
    T* GW = dP + a16(2 * M * D);
    // out_proj: dT = dout W̃o, dWo = doutᵀ t (t recomputed)
    lerp_rows(C, G, t, M, D);
    ternary_linear_dx(M, D, D, dout, wqo, dT, false);
    kernels::gemm_tn(D, D, M, dout, t, GW, false);
    median_clipped_add(Wo, alpha[3], GW, D, 0);
    // lerp and σ: dpre = dT ⊙ (m − u) ⊙ g(1 − g); du = dT ⊙ (1 − g); dm = dT ⊙ g (kept in dT)
    parallel_for(M, 4 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            const T *u = C + i * 2 * D, *m = u + D, *g = G + i * D;
            T *dt = dT + i * D, *dp = dpre + i * D, *du = dU + i * D;
            for (int64_t c = 0; c < D; ++c) {
                dp[c] = dt[c] * (m[c] - u[c]) * g[c] * (T(1) - g[c]);
                du[c] = dt[c] * (T(1) - g[c]);
                dt[c] = dt[c] * g[c];
            }
        }
    });
    // gate over [u | m]: dC = dpre W̃g, dWg = dpreᵀ C
    ternary_linear_dx(M, 2 * D, D, dpre, wqg, dC, false);
    kernels::gemm_tn(D, 2 * D, M, dpre, C, GW, false);
    median_clipped_add(Wg, alpha[2], GW, 2 * D, 0);
    // du += dC's left half; dm = dT + dC's right half, shifted back onto P: dP1_s = dm_{s+1}, dP2_s = dm_{s+2}
    parallel_for(M, 3 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            const T* dc = dC + i * 2 * D;
            T* du = dU + i * D;
            for (int64_t c = 0; c < D; ++c) du[c] += dc[c];
            const int64_t pos = i % L;
            for (int64_t k = 1; k <= 2; ++k) {
                T* dp = dP + i * 2 * D + (k - 1) * D;
                if (pos + k >= L) {
                    std::fill(dp, dp + D, T(0));
                    continue;
                }
                const T* dm = dT + (i + k) * D;
                const T* dcm = dC + (i + k) * 2 * D + D;
                for (int64_t c = 0; c < D; ++c) dp[c] = dm[c] + dcm[c];
            }
        }
    });
    // mix1 and mix2 as one: du += dP W̃12, dW12 = dPᵀ u (u recomputed, r rewritten with the same values)
    rmsnorm_raw(x.data, gain.data, n.f[0], U, r, M, D);
    ternary_linear_dx(M, D, 2 * D, dP, wq12, dU, true);
    kernels::gemm_tn(2 * D, D, M, dP, U, GW, false);
    median_clipped_add(W1, alpha[0], GW, D, 0);
    median_clipped_add(W2, alpha[1], GW + D * D, D, 0);
    rmsnorm_backward_raw(x.data, gain.data, r, dU, x.grad, gain.grad, M, D);
}

// x: [B, L, D]; gain: [D]; mix1, mix2, out: [D, D]; gate: [D, 2D]. Returns [B, L, D].
template <class T>
Tensor<T> temporal_mix_residual(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& gain, const Tensor<T>& W1,
                                const Tensor<T>& W2, const Tensor<T>& Wg, const Tensor<T>& Wo, double eps = 1e-6) {
    using namespace temporal_detail;
    using prenorm_detail::a16;
    FLASHLM_CHECK(x.shape.rank == 3, "temporal_mix_residual: input must be [B, L, D], got " + x.shape.str());
    const int64_t L = x.dim(1), D = x.dim(2), M = x.rows(), md = a16(M * D), dd = a16(D * D);
    const Shape sq{D, D};
    FLASHLM_CHECK(gain.shape == (Shape{D}) && W1.shape == sq && W2.shape == sq && Wo.shape == sq && Wg.shape == (Shape{D, 2 * D}),
                  "temporal_mix_residual: input " + x.shape.str() + ", gain " + gain.shape.str() + ", weights " +
                      W1.shape.str() + ", " + W2.shape.str() + ", " + Wg.shape.str() + ", " + Wo.shape.str());
    const bool rec = tape.recording({x, gain, W1, W2, Wg, Wo});
    // the ternarisations: [mix1; mix2] [2D, D], gate [D, 2D], out [D, D], then the four α
    T* wq = tape.scratch(5 * dd + 16);
    T *wq12 = wq, *wqg = wq + 2 * dd, *wqo = wqg + 2 * dd, *alpha = wqo + dd;
    T* ws = tape.workspace(2 * D * D + 2 * md + a16(2 * M * D));
    T *work = ws, *U = ws + 2 * D * D, *t = U + md, *P = t + md;
    alpha[0] = quantize_median_into(W1, wq12, D, 0, work);
    alpha[1] = quantize_median_into(W2, wq12 + D * D, D, 0, work);
    alpha[2] = quantize_median_into(Wg, wqg, 2 * D, 0, work);
    alpha[3] = quantize_median_into(Wo, wqo, D, 0, work);
    T* r = tape.scratch(a16(M));
    T* C = tape.scratch(a16(2 * M * D));
    T* G = tape.scratch(md);
    rmsnorm_raw(x.data, gain.data, eps, U, r, M, D);
    write_u(U, C, M, D);
    ternary_linear_forward(M, 2 * D, D, U, wq12, P);  // int8 under --quant int8, as BitLinear
    // m_t = P1_{t−1} + P2_{t−2} into C's right half
    parallel_for(M, 2 * M * D, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
            const int64_t pos = i % L;
            T* m = C + i * 2 * D + D;
            if (pos == 0) {
                std::fill(m, m + D, T(0));
                continue;
            }
            const T* p1 = P + (i - 1) * 2 * D;
            if (pos == 1) {
                std::memcpy(m, p1, size_t(D) * sizeof(T));
                continue;
            }
            const T* p2 = P + (i - 2) * 2 * D + D;
            for (int64_t c = 0; c < D; ++c) m[c] = p1[c] + p2[c];
        }
    });
    ternary_linear_forward(M, D, 2 * D, C, wqg, G);
    parallel_for(M * D, 4 * M * D, [&](int64_t b_, int64_t e_) { sigmoid_array(G + b_, G + b_, e_ - b_); });
    lerp_rows(C, G, t, M, D);
    Tensor<T> out = prenorm_detail::residual_output(tape, x, rec);
    ternary_linear_forward(M, D, D, t, wqo, out.data);
    prenorm_detail::add_residual(x.data, out.data, M * D);
    if (rec) {
        auto& n = tape.record(&temporal_mix_residual_backward<T>);
        n.in[0] = x, n.in[1] = gain, n.in[2] = W1, n.in[3] = W2, n.in[4] = Wg, n.in[5] = Wo;
        n.out = out;
        n.saved[0] = C, n.saved[1] = G, n.saved[2] = r, n.saved[3] = wq;
        n.f[0] = eps;
        n.ctx = &tape;
    }
    return out;
}

}  // namespace flashlm::ops
