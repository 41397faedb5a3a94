#pragma once
// FlashLM v5 "Thunderbolt"'s token-mixing sub-layer (VARIANTS.md §6.2, nn::ParallelGatedRecurrence) with
// its norm, token shift and residual as one tape node, x: [B, L, D]:
//   u = token_shift(LayerNorm(x), mix),  [z_f, v, z_o] = u [W̃_f; W̃_v; W̃_o]ᵀ   (one [3I, D] product)
//   f = lb + (1−lb)·σ(z_f + f_bias),  h_t = f_t⊙h_{t−1} + (1−f_t)⊙v_t,  y = σ(z_o) ⊙ h
//   out = x + W̃_proj( GroupNorm_heads(y) )        (per-position statistics: the causal default)
// with the four projections BitLinear-Q1' (each its own α, identity STE). The chain kept ~10 tensors of
// [M, I] or [M, D] per block, each with a gradient; this node keeps Z = [σ_f | v | σ(z_o)] (σ applied in
// place), h and the two norms' statistics. LayerNorm(x), its shift, y and GroupNorm(y) are recomputed in
// the backward; every inner gradient lives in the tape's workspace, and the output takes over x's
// gradient buffer as the pre-norm residual nodes do. The recurrence runs as ops::gated_recurrence does:
// one sweep over T per (sequence, block of channels), the reverse sweep for the adjoint.
// Numbers: the chain's to rounding; tests/variants/thunderbolt_fused.cpp.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#include "flashlm/ops/gated_recurrence.hpp"
#include "flashlm/ops/shift_relu2_residual.hpp"

namespace flashlm::ops {

// The mixer's parameters (nn::ParallelGatedRecurrence's and the block's first norm and shift).
template <class T>
struct RecurrenceMixer {
    Tensor<T> norm_w, norm_b, mix;       // LayerNorm [D] ×2, token-shift logits [D]
    Tensor<T> W_f, W_v, W_o, W_proj;     // [I, D] ×3, [D, I]
    Tensor<T> f_bias, gn_w, gn_b;        // [I] ×3
    double lower_bound = 0, norm_eps = 1e-5, gn_eps = 1e-5;
    int64_t heads = 1;
};

namespace recurrence_detail {
// The node's context, copied into the arena (trivially copyable, lives until the tape's reset).
template <class T>
struct Saved {
    RecurrenceMixer<T> p;
    T *Z, *H, *st, *gst, *wq;  // Z [M, 3I], h [M, I], LayerNorm mu | rs, GroupNorm mu | rs, W̃_fvo | W̃_proj | σ(mix)
};

template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using CMap = Eigen::Map<const Arr<T>, Eigen::Unaligned>;
template <class T>
using Map = Eigen::Map<Arr<T>, Eigen::Unaligned>;
}  // namespace recurrence_detail

template <class T>
void shift_recurrence_residual_backward(Node<T>& n) {
    using namespace recurrence_detail;
    using prenorm_detail::a16;
    const auto& sv = *reinterpret_cast<const Saved<T>*>(n.saved[0]);
    const RecurrenceMixer<T>& p = sv.p;
    const Tensor<T>& x = n.in[0];
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = x.rows(), I = p.W_f.dim(0), G = p.heads;
    const int64_t md = a16(M * D), mi = a16(M * I), blk = detail::k_scan_block, nb = (I + blk - 1) / blk;
    const int64_t parts = std::max(sum_blocks(M) * 2 * std::max(D, I), B * I);
    T *Z = sv.Z, *H = sv.H, *mu = sv.st, *rs = mu + a16(M), *gmu = sv.gst, *grs = gmu + a16(M * G);
    const T *wq = sv.wq, *wqp = wq + a16(3 * I * D), *s = wqp + a16(D * I);
    const T* dout = n.out.grad;  // x's own gradient buffer when shared: read before the norm's backward adds to it
    T* ws = prenorm_detail::tape_of(n).workspace(3 * mi + a16(3 * M * I) + 3 * md + a16(3 * I * D) + parts);
    T *Y = ws, *Gb = Y + mi, *dG = Gb + mi, *dZ = dG + mi, *N = dZ + a16(3 * M * I), *U = N + md, *dU = U + md;
    T *GW = dU + md, *part = GW + a16(3 * I * D);
    const int64_t ld = 3 * I;
    // y = σ(z_o) ⊙ h and GroupNorm(y), recomputed (the statistics rewritten with the same values)
    parallel_for(M, 2 * M * I, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) Map<T>(Y + r * I, I) = CMap<T>(Z + r * ld + 2 * I, I) * CMap<T>(H + r * I, I);
    });
    group_norm_rows_raw(Y, p.gn_w.data, p.gn_b.data, p.gn_eps, Gb, gmu, grs, M, I, G);
    // W_proj: dW_proj += doutᵀ GroupNorm(y), dG = dout W̃_proj; then the norm's backward writes dy over Gb
    if (p.W_proj.grad) kernels::gemm_tn(D, I, M, dout, Gb, p.W_proj.grad, true);
    ternary_linear_dx(M, I, D, dout, wqp, dG, false);
    group_norm_rows_backward_raw(Y, p.gn_w.data, gmu, grs, dG, Gb, false, p.gn_w.grad, p.gn_b.grad, part, M, I, G);
    // y = o ⊙ h: dz_o = dy ⊙ h ⊙ o(1 − o) into dZ, dh = dy ⊙ o over dG
    parallel_for(M, 5 * M * I, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            CMap<T> o(Z + r * ld + 2 * I, I), dy(Gb + r * I, I), h(H + r * I, I);
            Map<T>(dZ + r * ld + 2 * I, I) = dy * h * o * (T(1) - o);
            Map<T>(dG + r * I, I) = dy * o;
        }
    });
    // the recurrence's reverse sweep: g_t = dh_t + f_{t+1} g_{t+1}; dv = (1−lb)(1−σ) g;
    // dz_f = g (h_{t−1} − v_t)(1−lb) σ(1−σ); f_bias's partial per sequence, summed in sequence order
    const T lb = T(p.lower_bound), ub = T(1) - lb;
    parallel_for(B * nb, 12 * M * I, [&](int64_t i0, int64_t i1) {
        T g[detail::k_scan_block];
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nb, c0 = i % nb * blk, w = std::min(I, c0 + blk) - c0;
            T* pb = part + b * I + c0;
            for (int64_t k = 0; k < w; ++k) g[k] = T(0), pb[k] = T(0);
            for (int64_t t = L - 1; t >= 0; --t) {
                const int64_t row = b * L + t;
                const T *sg = Z + row * ld + c0, *vt = sg + I, *dh = dG + row * I + c0;
                const T* hp = t > 0 ? H + (row - 1) * I + c0 : nullptr;
                T *dzf = dZ + row * ld + c0, *dv = dzf + I;
                if (t + 1 < L) {
                    const T* sn = sg + ld;  // f_{t+1} = lb + (1−lb)σ_{t+1}
                    for (int64_t k = 0; k < w; ++k) g[k] = dh[k] + (lb + ub * sn[k]) * g[k];
                } else {
                    for (int64_t k = 0; k < w; ++k) g[k] = dh[k];
                }
                for (int64_t k = 0; k < w; ++k) {
                    dv[k] = ub * (T(1) - sg[k]) * g[k];
                    const T d = g[k] * ((hp ? hp[k] : T(0)) - vt[k]) * ub * sg[k] * (T(1) - sg[k]);
                    dzf[k] = d;
                    pb[k] += d;
                }
            }
        }
    });
    if (p.f_bias.grad) {
        for (int64_t c = 0; c < I; ++c) {
            T acc = 0;
            for (int64_t b = 0; b < B; ++b) acc += part[b * I + c];
            p.f_bias.grad[c] += acc;
        }
    }
    // the three input projections as one: dU = dZ W̃_fvo, dW_fvo = dZᵀ u (u recomputed)
    shift_detail::norm_shift(x.data, p.norm_w.data, p.norm_b.data, p.norm_eps, s, N, U, mu, rs, M, L, D);
    ternary_linear_dx(M, D, 3 * I, dZ, wq, dU, false);
    kernels::gemm_tn(3 * I, D, M, dZ, U, GW, false);
    const Tensor<T>* win[3] = {&p.W_f, &p.W_v, &p.W_o};
    for (int k = 0; k < 3; ++k)
        if (T* dw = win[k]->grad) {
            const T* src = GW + k * I * D;
            parallel_for(I * D, I * D, [&](int64_t b_, int64_t e_) {
                for (int64_t j = b_; j < e_; ++j) dw[j] += src[j];
            });
        }
    shift_detail::norm_shift_backward(x, p.norm_w, p.norm_b, p.mix, s, mu, rs, N, dU, U, part, L);
}

// x: [B, L, D]; p as RecurrenceMixer (whose GroupNorm takes per-position statistics). Returns [B, L, D].
template <class T>
Tensor<T> shift_recurrence_residual(Tape<T>& tape, const Tensor<T>& x, const RecurrenceMixer<T>& p) {
    using namespace recurrence_detail;
    using prenorm_detail::a16;
    FLASHLM_CHECK(x.shape.rank == 3, "shift_recurrence_residual: input must be [B, L, D], got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), M = x.rows(), G = p.heads;
    const int64_t I = p.W_f.shape.rank == 2 ? p.W_f.dim(0) : 0;
    auto sh = [&] { return "shift_recurrence_residual: input " + x.shape.str(); };
    const Shape d{D}, id{I, D}, in{I};
    FLASHLM_CHECK(p.norm_w.shape == d && p.norm_b.shape == d && p.mix.shape == d, sh() + ": norm or mix is not [D]");
    FLASHLM_CHECK(p.W_f.shape == id && p.W_v.shape == id && p.W_o.shape == id && p.W_proj.shape == (Shape{D, I}),
                  sh() + ": weights " + p.W_f.shape.str() + ", " + p.W_v.shape.str() + ", " + p.W_o.shape.str() + ", " +
                      p.W_proj.shape.str());
    FLASHLM_CHECK(p.f_bias.shape == in && p.gn_w.shape == in && p.gn_b.shape == in, sh() + ": f_bias or group norm is not [inner]");
    FLASHLM_CHECK(G >= 1 && I % G == 0, sh() + ": " + std::to_string(G) + " heads do not divide " + std::to_string(I));
    FLASHLM_CHECK(p.lower_bound >= 0 && p.lower_bound < 1, sh() + ": lower bound must be in [0, 1)");
    const bool rec = tape.recording({x, p.norm_w, p.norm_b, p.mix, p.W_f, p.W_v, p.W_o, p.W_proj, p.f_bias, p.gn_w, p.gn_b});
    const int64_t md = a16(M * D), mi = a16(M * I), ld = 3 * I;
    // the ternarisations: [W_f; W_v; W_o] [3I, D] (rows contiguous for one product), W_proj [D, I], then σ(mix)
    T* wq = tape.scratch(a16(3 * I * D) + a16(D * I) + a16(D));
    T *wqp = wq + a16(3 * I * D), *s = wqp + a16(D * I);
    quantize_absmean_q1p(p.W_f.data, wq, I * D);
    quantize_absmean_q1p(p.W_v.data, wq + I * D, I * D);
    quantize_absmean_q1p(p.W_o.data, wq + 2 * I * D, I * D);
    quantize_absmean_q1p(p.W_proj.data, wqp, D * I);
    shift_detail::shift_gate(p.mix.data, s, D);
    T* st = tape.scratch(2 * a16(M));
    T* gst = tape.scratch(2 * a16(M * G));
    T* ws = tape.workspace(2 * md + 2 * mi + (rec ? 0 : a16(3 * M * I) + mi));
    T *N = ws, *U = N + md, *Y = U + md, *Gb = Y + mi;
    shift_detail::norm_shift(x.data, p.norm_w.data, p.norm_b.data, p.norm_eps, s, N, U, st, st + a16(M), M, L, D);
    T* Z = rec ? tape.scratch(a16(3 * M * I)) : Gb + mi;
    T* H = rec ? tape.scratch(mi) : Z + a16(3 * M * I);
    ternary_linear_forward(M, 3 * I, D, U, wq, Z);  // int8 under --quant int8, as BitLinear
    // σ_f = σ(z_f + f_bias) and σ(z_o) in place over Z (the backward needs no exp); the recurrence sweeps
    // T per (sequence, block of channels)
    const T lb = T(p.lower_bound), ub = T(1) - lb;
    const int64_t blk = detail::k_scan_block, nb = (I + blk - 1) / blk;
    parallel_for(B * nb, 16 * M * I, [&](int64_t i0, int64_t i1) {
        T st_[detail::k_scan_block];
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nb, c0 = i % nb * blk, w = std::min(I, c0 + blk) - c0;
            for (int64_t k = 0; k < w; ++k) st_[k] = T(0);
            CMap<T> bs(p.f_bias.data + c0, w);
            for (int64_t t = 0; t < L; ++t) {
                const int64_t row = b * L + t;
                T *sg = Z + row * ld + c0, *vt = sg + I, *o = vt + I, *ht = H + row * I + c0;
                Map<T>(sg, w) = T(1) / (T(1) + (-(CMap<T>(sg, w) + bs)).exp());
                Map<T>(o, w) = T(1) / (T(1) + (-CMap<T>(o, w)).exp());
                for (int64_t k = 0; k < w; ++k) {
                    st_[k] = (lb + ub * sg[k]) * st_[k] + ub * (T(1) - sg[k]) * vt[k];
                    ht[k] = st_[k];
                }
            }
        }
    });
    parallel_for(M, 2 * M * I, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) Map<T>(Y + r * I, I) = CMap<T>(Z + r * ld + 2 * I, I) * CMap<T>(H + r * I, I);
    });
    group_norm_rows_raw(Y, p.gn_w.data, p.gn_b.data, p.gn_eps, Gb, gst, gst + a16(M * G), M, I, G);
    Tensor<T> out = prenorm_detail::residual_output(tape, x, rec);
    ternary_linear_forward(M, D, I, Gb, wqp, out.data);
    prenorm_detail::add_residual(x.data, out.data, M * D);
    if (rec) {
        static_assert(std::is_trivially_copyable_v<Saved<T>>);
        T* ctx = tape.scratch(a16(int64_t((sizeof(Saved<T>) + sizeof(T) - 1) / sizeof(T))));
        const Saved<T> sv{p, Z, H, st, gst, wq};
        std::memcpy(static_cast<void*>(ctx), &sv, sizeof sv);
        auto& n = tape.record(&shift_recurrence_residual_backward<T>);
        n.in[0] = x;
        n.out = out;
        n.saved[0] = ctx;
        n.ctx = &tape;
    }
    return out;
}

}  // namespace flashlm::ops
