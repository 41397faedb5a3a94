#pragma once
// Decayed cumulative sum, the token mixer of FlashLM v7 "CORTEX" (VARIANTS.md §9):
//   S_t = Σ_{s ≤ t} w^(t−s) ⊙ kv_s,   i.e.  S_t = w ⊙ S_{t−1} + kv_t        kv: [B, T, D], w: [D] in (0, 1]
// computed as that recurrence (stable for every T). Backward, with the adjoint G_t = dS_t + w ⊙ G_{t+1}:
//   dkv_t = G_t,   dw = Σ_{b,t} G_t ⊙ S_{t−1}.
//
// upstream_clamp reproduces v7/train.py@49423a9 instead (VARIANTS.md §16 Q10c):
//   a_t = exp(t · log(max(w, 1e-7))),  C_t = Σ_{s ≤ t} kv_s / max(a_s, 1e-10),  S_t = C_t · a_t,
// which equals the recurrence only while w^t ≥ 1e-10 (t ≲ 73 at the initial w ≈ 0.729); beyond, the clamp
// breaks the decay algebra. The arithmetic follows torch's: a_t in float, the cumulative sum accumulated
// in double and stored in T, gradients through both clamps (zero where a clamp is active).
// Work is split over channels, so every thread owns its channels' gradients.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace detail {
inline constexpr double k_cumsum_min_scale = 1e-10, k_cumsum_min_decay = 1e-7;
}

template <class T>
void decayed_cumsum_backward(Node<T>& n) {
    const Tensor<T>& kv = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = kv.dim(0), L = kv.dim(1), D = kv.dim(2);
    const T* S = n.out.data;
    const T* dS = n.out.grad;
    const bool clamp = n.i[0] != 0;
    T* g = n.saved[2];       // [D]: per-channel adjoint
    T* dw = n.saved[2] + D;  // [D]: per-channel dw accumulator
    parallel_for(D, B * L * D, [&](int64_t d0, int64_t d1) {
        if (!clamp) {
            for (int64_t d = d0; d < d1; ++d) dw[d] = T(0);
            for (int64_t b = 0; b < B; ++b) {
                for (int64_t d = d0; d < d1; ++d) g[d] = T(0);
                for (int64_t t = L - 1; t >= 0; --t) {
                    const int64_t o = (b * L + t) * D;
                    for (int64_t d = d0; d < d1; ++d) {
                        g[d] = dS[o + d] + w.data[d] * g[d];
                        if (kv.grad) kv.grad[o + d] += g[d];
                        if (t > 0) dw[d] += g[d] * S[o - D + d];
                    }
                }
            }
            if (w.grad)
                for (int64_t d = d0; d < d1; ++d) w.grad[d] += dw[d];
            return;
        }
        const T* scale = n.saved[0];  // [T, D]
        const T* cum = n.saved[1];    // [B, T, D]
        const T lo = T(detail::k_cumsum_min_scale);
        for (int64_t d = d0; d < d1; ++d) {
            double dlog = 0;  // d loss / d log(max(w, 1e-7))
            for (int64_t b = 0; b < B; ++b) {
                double acc = 0;
                for (int64_t t = L - 1; t >= 0; --t) {
                    const int64_t o = (b * L + t) * D + d;
                    const T a = scale[t * D + d], m = std::max(a, lo);
                    acc += double(dS[o] * a);
                    const T dscaled = T(acc);
                    if (kv.grad) kv.grad[o] += dscaled / m;
                    T da = dS[o] * cum[o];
                    if (a >= lo) da += -dscaled * kv.data[o] / (m * m);
                    dlog += double(da * a) * double(t);
                }
            }
            if (w.grad && w.data[d] >= T(detail::k_cumsum_min_decay)) w.grad[d] += T(dlog) / w.data[d];
        }
    });
}

// kv: [B, T, D]; w: [D] with values in (0, 1] (e.g. σ of a parameter). Returns S: [B, T, D].
template <class T>
Tensor<T> decayed_cumsum(Tape<T>& tape, const Tensor<T>& kv, const Tensor<T>& w, bool upstream_clamp = false) {
    FLASHLM_CHECK(kv.shape.rank == 3, "decayed_cumsum: input must be [B, T, D], got " + kv.shape.str());
    FLASHLM_CHECK(w.shape.rank == 1 && w.dim(0) == kv.dim(2),
                  "decayed_cumsum: decay " + w.shape.str() + " does not match input " + kv.shape.str());
    const int64_t B = kv.dim(0), L = kv.dim(1), D = kv.dim(2);
    const bool rec = tape.recording({kv, w});
    Tensor<T> S = tape.make(kv.shape, rec);
    T* scale = nullptr;
    T* cum = nullptr;
    if (!upstream_clamp) {
        parallel_for(D, B * L * D, [&](int64_t d0, int64_t d1) {
            for (int64_t b = 0; b < B; ++b)
                for (int64_t t = 0; t < L; ++t) {
                    const int64_t o = (b * L + t) * D;
                    for (int64_t d = d0; d < d1; ++d)
                        S.data[o + d] = kv.data[o + d] + (t > 0 ? w.data[d] * S.data[o - D + d] : T(0));
                }
        });
    } else {
        scale = tape.scratch(L * D);
        cum = tape.scratch(B * L * D);
        const T lo = T(detail::k_cumsum_min_scale);
        parallel_for(D, B * L * D, [&](int64_t d0, int64_t d1) {
            for (int64_t d = d0; d < d1; ++d) {
                const T lw = std::log(std::max(w.data[d], T(detail::k_cumsum_min_decay)));
                for (int64_t t = 0; t < L; ++t) scale[t * D + d] = std::exp(T(t) * lw);
                for (int64_t b = 0; b < B; ++b) {
                    double acc = 0;
                    for (int64_t t = 0; t < L; ++t) {
                        const int64_t o = (b * L + t) * D + d;
                        const T a = scale[t * D + d];
                        acc += double(kv.data[o] / std::max(a, lo));
                        cum[o] = T(acc);
                        S.data[o] = cum[o] * a;
                    }
                }
            }
        });
    }
    if (S.grad) {
        auto& n = tape.record(&decayed_cumsum_backward<T>);
        n.in[0] = kv;
        n.in[1] = w;
        n.out = S;
        n.saved[0] = scale;
        n.saved[1] = cum;
        n.saved[2] = tape.scratch(2 * D);
        n.i[0] = upstream_clamp ? 1 : 0;
    }
    return S;
}

}  // namespace flashlm::ops
