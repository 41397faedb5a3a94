#pragma once
// Affine group normalisation over the channel (last) dimension, torch's LayerNorm/GroupNorm arithmetic
// (biased variance, eps inside the square root). x: [B, T, C], weight/bias: [C], G groups of C/G channels.
// A normalisation set is the C/G channels of one group over `span` consecutive positions:
//   span 1            one position at a time: causal. G = 1 is LayerNorm; G = heads is a per-head norm.
//   span T (whole)    every position of the sequence: torch GroupNorm on the (B, C, T) tensor, as FlashLM
//                     v5 applies it (VARIANTS.md §6.2; non-causal, §16 Q3).
//   y = (x − μ_s)·r_s ⊙ w + b,  r_s = 1/sqrt(var_s + eps).
// Backward per set (n elements, x̂ = (x − μ)r, u = dy⊙w): dx = r (u − mean_s(u) − x̂·mean_s(u⊙x̂));
// dw = Σ dy⊙x̂, db = Σ dy over all rows. dx runs over sets; dw/db over blocks of channels (every row),
// so no two threads write the same gradient and the sums are thread-count independent.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace detail {
struct NormSets {
    int64_t rows, C, G, Cg, span;
    int64_t count() const { return rows / span * G; }
    // Set of element (row r, channel c).
    int64_t of(int64_t r, int64_t c) const { return r / span * G + c / Cg; }
};
}  // namespace detail

template <class T>
void group_norm_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const Tensor<T>& bb = n.in[2];
    const detail::NormSets S{x.rows(), x.cols(), n.i[0], x.cols() / n.i[0], n.i[1]};
    const T* mu = n.saved[0];
    const T* rs = n.saved[1];
    const T* dy = n.out.grad;
    const int64_t C = S.C, Cg = S.Cg;
    if (x.grad) {
        parallel_for(S.count(), 8 * x.numel(), [&](int64_t k0, int64_t k1) {
            for (int64_t k = k0; k < k1; ++k) {
                const int64_t r0 = k / S.G * S.span, c0 = k % S.G * Cg;
                const T m = mu[k], r = rs[k];
                double su = 0, sux = 0;
                for (int64_t i = r0; i < r0 + S.span; ++i)
                    for (int64_t c = c0; c < c0 + Cg; ++c) {
                        const T u = dy[i * C + c] * w.data[c];
                        su += u;
                        sux += u * (x.data[i * C + c] - m) * r;
                    }
                const T nn = T(S.span * Cg), a = T(su) / nn, bsum = T(sux) / nn;
                for (int64_t i = r0; i < r0 + S.span; ++i)
                    for (int64_t c = c0; c < c0 + Cg; ++c) {
                        const T xh = (x.data[i * C + c] - m) * r;
                        x.grad[i * C + c] += r * (dy[i * C + c] * w.data[c] - a - xh * bsum);
                    }
            }
        });
    }
    if (w.grad || bb.grad) {
        const int64_t blk = 16, nb = (C + blk - 1) / blk;
        parallel_for(nb, 3 * x.numel(), [&](int64_t b0, int64_t b1) {
            for (int64_t bi = b0; bi < b1; ++bi) {
                const int64_t c0 = bi * blk, c1 = std::min(C, c0 + blk);
                T dw[16] = {}, db[16] = {};
                int64_t grp[16];  // each channel's group, so the row loop divides once per row
                for (int64_t c = c0; c < c1; ++c) grp[c - c0] = S.of(0, c);
                for (int64_t i = 0; i < S.rows; ++i) {
                    const int64_t base = i / S.span * S.G;
                    const T* dyi = dy + i * C;
                    const T* xi = x.data + i * C;
                    for (int64_t c = c0; c < c1; ++c) {
                        const int64_t k = base + grp[c - c0];
                        dw[c - c0] += dyi[c] * (xi[c] - mu[k]) * rs[k];
                        db[c - c0] += dyi[c];
                    }
                }
                for (int64_t c = c0; c < c1; ++c) {
                    if (w.grad) w.grad[c] += dw[c - c0];
                    if (bb.grad) bb.grad[c] += db[c - c0];
                }
            }
        });
    }
}

// x: [B, T, C] (any [M, C] when whole_sequence is false); weight, bias: [C]; groups divides C.
template <class T>
Tensor<T> group_norm(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>& b, int64_t groups,
                     double eps, bool whole_sequence = false) {
    const int64_t C = x.cols();
    FLASHLM_CHECK(w.numel() == C && b.numel() == C,
                  "group_norm: weight " + w.shape.str() + " / bias " + b.shape.str() + " do not match input " + x.shape.str());
    FLASHLM_CHECK(groups >= 1 && C % groups == 0, "group_norm: " + std::to_string(groups) + " groups do not divide " +
                                                      std::to_string(C) + " channels");
    FLASHLM_CHECK(!whole_sequence || x.shape.rank == 3, "group_norm over whole sequences needs [B, T, C], got " + x.shape.str());
    const int64_t span = whole_sequence ? x.dim(1) : 1;
    const detail::NormSets S{x.rows(), C, groups, C / groups, span};
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w, b}));
    T* mu = tape.scratch(S.count());
    T* rs = tape.scratch(S.count());
    const int64_t Cg = S.Cg;
    parallel_for(S.count(), 4 * x.numel(), [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
            const int64_t r0 = k / S.G * S.span, c0 = k % S.G * Cg;
            // Two passes (mean, then centred squares): no cancellation for sets with a large mean.
            double s = 0;
            for (int64_t i = r0; i < r0 + S.span; ++i)
                for (int64_t c = c0; c < c0 + Cg; ++c) s += x.data[i * C + c];
            const double nn = double(S.span * Cg), m = s / nn;
            double q = 0;
            for (int64_t i = r0; i < r0 + S.span; ++i)
                for (int64_t c = c0; c < c0 + Cg; ++c) {
                    const double d = x.data[i * C + c] - m;
                    q += d * d;
                }
            const T mt = T(m), r = T(1.0 / std::sqrt(q / nn + eps));
            mu[k] = mt, rs[k] = r;
            for (int64_t i = r0; i < r0 + S.span; ++i)
                for (int64_t c = c0; c < c0 + Cg; ++c)
                    y.data[i * C + c] = (x.data[i * C + c] - mt) * r * w.data[c] + b.data[c];
        }
    });
    if (y.grad) {
        auto& n = tape.record(&group_norm_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.in[2] = b;
        n.out = y;
        n.saved[0] = mu;
        n.saved[1] = rs;
        n.i[0] = groups;
        n.i[1] = span;
    }
    return y;
}

}  // namespace flashlm::ops
