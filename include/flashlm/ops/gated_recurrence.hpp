#pragma once
// Gated linear recurrence of FlashLM v5's ParallelGatedRecurrence (HGRN-style, VARIANTS.md §6.2,
// §15.10), with its forget gate fused in. z, v: [B, T, C]; bias: [C]; lower bound lb in [0, 1):
//   σ_t = σ(z_t + bias),  f_t = lb + (1−lb)·σ_t,
//   h_t = f_t⊙h_{t−1} + (1−f_t)⊙v_t,   h_{−1} = 0.
// Upstream evaluates the recurrence with a Hillis–Steele log-step scan (log₂T passes over [B, T, C],
// O(T log T) work, made for GPUs); the scan computes exactly this first-order recurrence, which on a CPU
// is one sequential sweep over T per channel (O(T) work), vectorised across channels and split over
// (sequence, block of channels). The two agree up to float summation order (tests/variants/thunderbolt.cpp
// checks the scan against this op).
// Backward, with the adjoint g_t = dh_t + f_{t+1}⊙g_{t+1} (a reverse sweep of the same recurrence):
//   dv_t = (1−f_t)⊙g_t,   df_t = g_t⊙(h_{t−1} − v_t),   dz_t = df_t·(1−lb)·σ_t(1−σ_t),   dbias = Σ_{b,t} dz_t.
// 1 − f is formed as (1−lb)(1−σ), which stays accurate when f is close to 1 (late layers, lb = 0.9).
// The forward keeps σ ([B, T, C]) and reuses the output h; dbias is summed per sequence into a [B, C]
// scratch and then over sequences in a fixed order.
#include <algorithm>

#include <Eigen/Core>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/activation.hpp"

namespace flashlm::ops {

namespace detail {
inline constexpr int64_t k_scan_block = 64;  // channels per task; the carried state lives on the stack
}

template <class T>
void gated_recurrence_backward(Node<T>& n) {
    const Tensor<T>& z = n.in[0];
    const Tensor<T>& bias = n.in[1];
    const Tensor<T>& v = n.in[2];
    const int64_t B = z.dim(0), L = z.dim(1), C = z.dim(2);
    const T lb = T(n.f[0]), ub = T(1) - lb;
    const int64_t blk = detail::k_scan_block, nb = (C + blk - 1) / blk;
    const T* sg = n.saved[0];
    T* part = n.saved[1];  // [B, C]
    const T* h = n.out.data;
    const T* dh = n.out.grad;
    parallel_for(B * nb, 12 * B * L * C, [&](int64_t i0, int64_t i1) {
        T g[detail::k_scan_block];
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nb, c0 = i % nb * blk, w = std::min(C, c0 + blk) - c0;
            T* pb = part + b * C + c0;
            for (int64_t k = 0; k < w; ++k) g[k] = T(0), pb[k] = T(0);
            for (int64_t t = L - 1; t >= 0; --t) {
                const int64_t o = (b * L + t) * C + c0;
                const T* s = sg + o;
                const T* dht = dh + o;
                const T* vt = v.data + o;
                if (t + 1 < L) {
                    const T* sn = s + C;  // f_{t+1} = lb + (1−lb)σ_{t+1}
                    for (int64_t k = 0; k < w; ++k) g[k] = dht[k] + (lb + ub * sn[k]) * g[k];
                } else {
                    for (int64_t k = 0; k < w; ++k) g[k] = dht[k];
                }
                if (v.grad) {
                    T* dv = v.grad + o;
                    for (int64_t k = 0; k < w; ++k) dv[k] += ub * (T(1) - s[k]) * g[k];
                }
                if (z.grad || bias.grad) {
                    const T* hp = t > 0 ? h + o - C : nullptr;
                    T* dz = z.grad ? z.grad + o : nullptr;
                    for (int64_t k = 0; k < w; ++k) {
                        const T d = g[k] * ((hp ? hp[k] : T(0)) - vt[k]) * ub * s[k] * (T(1) - s[k]);
                        if (dz) dz[k] += d;
                        pb[k] += d;
                    }
                }
            }
        }
    });
    if (bias.grad)
        for (int64_t c = 0; c < C; ++c) {
            T acc = 0;
            for (int64_t b = 0; b < B; ++b) acc += part[b * C + c];
            bias.grad[c] += acc;
        }
}

// z (forget-gate pre-activation, W_f u), v (values, W_v u): [B, T, C]; bias (f_bias): [C]. Returns h.
template <class T>
Tensor<T> gated_recurrence(Tape<T>& tape, const Tensor<T>& z, const Tensor<T>& bias, const Tensor<T>& v, double lb) {
    FLASHLM_CHECK(z.shape.rank == 3, "gated_recurrence: gates must be [B, T, C], got " + z.shape.str());
    FLASHLM_CHECK(v.shape == z.shape, "gated_recurrence: values " + v.shape.str() + " and gates " + z.shape.str() + " differ");
    FLASHLM_CHECK(bias.numel() == z.dim(2), "gated_recurrence: bias " + bias.shape.str() + " does not match " + z.shape.str());
    FLASHLM_CHECK(lb >= 0 && lb < 1, "gated_recurrence: lower bound must be in [0, 1)");
    const int64_t B = z.dim(0), L = z.dim(1), C = z.dim(2);
    const T tlb = T(lb), ub = T(1) - tlb;
    const bool rec = tape.recording({z, bias, v});
    Tensor<T> h = tape.make(z.shape, rec);
    // σ is kept for the backward; without one it is consumed in place.
    T* sg = rec ? tape.scratch(B * L * C) : nullptr;
    const int64_t blk = detail::k_scan_block, nb = (C + blk - 1) / blk;
    parallel_for(B * nb, 12 * B * L * C, [&](int64_t i0, int64_t i1) {
        using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
        T st[detail::k_scan_block], sb[detail::k_scan_block];
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t b = i / nb, c0 = i % nb * blk, w = std::min(C, c0 + blk) - c0;
            for (int64_t k = 0; k < w; ++k) st[k] = T(0);
            Eigen::Map<const Arr, Eigen::Unaligned> bs(bias.data + c0, w);
            for (int64_t t = 0; t < L; ++t) {
                const int64_t o = (b * L + t) * C + c0;
                const T* vt = v.data + o;
                T* ht = h.data + o;
                T* s = sg ? sg + o : sb;
                // σ through Eigen's vectorised exp; the sweep itself is a plain loop.
                Eigen::Map<Arr, Eigen::Unaligned>(s, w) =
                    T(1) / (T(1) + (-(Eigen::Map<const Arr, Eigen::Unaligned>(z.data + o, w) + bs)).exp());
                for (int64_t k = 0; k < w; ++k) {
                    st[k] = (tlb + ub * s[k]) * st[k] + ub * (T(1) - s[k]) * vt[k];
                    ht[k] = st[k];
                }
            }
        }
    });
    if (h.grad) {
        auto& n = tape.record(&gated_recurrence_backward<T>);
        n.in[0] = z;
        n.in[1] = bias;
        n.in[2] = v;
        n.out = h;
        n.saved[0] = sg;
        n.saved[1] = tape.scratch(B * C);
        n.f[0] = lb;
    }
    return h;
}

}  // namespace flashlm::ops
