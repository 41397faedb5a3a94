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

#include <Eigen/Core>

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

// Per-position sets (span 1) on raw buffers, for fused callers: M rows of C channels in G groups,
// y = (x − μ)·r ⊙ w + b (y may be null: the statistics only); mu, rs: [M·G]. The sums run in float through
// Eigen's vectorised reductions (group_norm's generic sets sum in double): the same to rounding.
template <class T>
void group_norm_rows_raw(const T* x, const T* w, const T* b, double eps, T* y, T* mu, T* rs, int64_t M, int64_t C,
                         int64_t G) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    const int64_t Cg = C / G;
    parallel_for(M, 4 * M * C, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i)
            for (int64_t g = 0; g < G; ++g) {
                const int64_t o = i * C + g * Cg, k = i * G + g;
                CMap xv(x + o, Cg);
                const T m = xv.sum() / T(Cg);
                const T r = T(1) / std::sqrt((xv - m).square().sum() / T(Cg) + T(eps));
                mu[k] = m, rs[k] = r;
                if (y) Eigen::Map<Arr, Eigen::Unaligned>(y + o, Cg) = (xv - m) * r * CMap(w + g * Cg, Cg) + CMap(b + g * Cg, Cg);
            }
    });
}

// group_norm_rows_raw's backward: dx = r (u − mean u − x̂ mean(u x̂)), u = dy ⊙ w, per set, written (or
// added when accumulate; dx may be null); Σ dy ⊙ x̂ and Σ dy over rows into dw, db (either may be null)
// through row-block partials in part ([sum_blocks(M), 2C]).
template <class T>
void group_norm_rows_backward_raw(const T* x, const T* w, const T* mu, const T* rs, const T* dy, T* dx, bool accumulate,
                                  T* dw, T* db, T* part, int64_t M, int64_t C, int64_t G) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using CMap = Eigen::Map<const Arr, Eigen::Unaligned>;
    using Map = Eigen::Map<Arr, Eigen::Unaligned>;
    const int64_t Cg = C / G, blocks = sum_blocks(M);
    const bool sums = dw || db;
    parallel_for(blocks, 8 * M * C, [&](int64_t b0, int64_t b1) {
        for (int64_t bk = b0; bk < b1; ++bk) {
            T* pw = sums ? part + bk * 2 * C : nullptr;  // then Σ dy at pw + C
            if (pw) std::fill(pw, pw + 2 * C, T(0));
            for (int64_t i = bk * k_sum_block; i < std::min(M, (bk + 1) * k_sum_block); ++i)
                for (int64_t g = 0; g < G; ++g) {
                    const int64_t o = i * C + g * Cg, k = i * G + g;
                    const T m = mu[k], r = rs[k];
                    CMap xv(x + o, Cg), dv(dy + o, Cg), wv(w + g * Cg, Cg);
                    if (pw) {
                        Map(pw + g * Cg, Cg) += dv * (xv - m) * r;
                        Map(pw + C + g * Cg, Cg) += dv;
                    }
                    if (!dx) continue;
                    const T a = (dv * wv).sum() / T(Cg), bs = (dv * wv * (xv - m)).sum() * r / T(Cg);
                    Map d(dx + o, Cg);
                    if (accumulate)
                        d += r * (dv * wv - a - (xv - m) * r * bs);
                    else
                        d = r * (dv * wv - a - (xv - m) * r * bs);
                }
        }
    });
    if (dw) add_block_partials(part, blocks, 2 * C, C, dw);
    if (db) add_block_partials(part + C, blocks, 2 * C, C, db);
}

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
