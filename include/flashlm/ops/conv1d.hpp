#pragma once
// Causal depthwise conv1d over time, PyTorch Conv1d(C, C, k, groups=C, padding=k-1, bias=False) with
// the first T outputs kept: y[b,t,c] = Σ_j w[c,0,j] · x[b, t+j-(k-1), c] (zero before t=0).
// Activations stay [B, T, C] (channels last) so the inner loop runs over contiguous channels. The
// loops take a row stride for x so the fused gated conv can read the value half of [g, v] in place.
// The loops also take a dilation d (tap j reads t - (K-1-j)·d), and grouped loops cover
// Conv1d(C, C, K, groups=G, dilation=d) with G < C (v3's causal convs: K=4, G=16, d ∈ {1, 4, 64}).
#include <algorithm>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

namespace conv {

// PyTorch's [C, 1, K] weight → [K, C], so the inner loops run over contiguous channels.
template <class T>
T* transpose_weight(Tape<T>& tape, const Tensor<T>& w) {
    const int64_t C = w.dim(0), K = w.dim(2);
    T* wt = tape.scratch(K * C);
    for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) wt[j * C + c] = w.data[c * K + j];
    return wt;
}

// First tap j whose source t - (K-1-j)·d is inside the sequence.
inline int64_t first_tap(int64_t t, int64_t K, int64_t d) {
    const int64_t back = (K - 1) * d - t;  // taps reaching before 0 need (K-1-j)·d > t
    return back <= 0 ? 0 : (back + d - 1) / d;
}

// Register blocking of the depthwise loops: k_tr time rows × k_cw channels of outputs (or input
// gradients) stay in registers over all K taps, where a row at a time loaded and stored its outputs once
// per tap (three loads and a store per multiply-add: 25–30 GFLOP/s on 2 Zen cores, a twentieth of the
// GEMMs' rate). Each element still sums its taps in ascending order from zero, so the bits are the same.
inline constexpr int64_t k_tr = 4, k_cw = 32;

// One block: out rows r < k_tr, channels [c0, c0 + k_cw) (out + r·ldo) get Σ_j wt[j, c] · s_j[r·lds + c]
// with s_j = src0 + j·tap_step (tap_step may be negative), taps ascending, starting from zero or, when
// add, from out's values. The forward and the input gradient are this with their sources and strides.
template <class T>
void tap_block(const T* wt, int64_t C, int64_t K, int64_t c0, const T* src0, int64_t tap_step, int64_t lds, T* out,
               int64_t ldo, bool add) {
    T acc[k_tr][k_cw];
    for (int64_t r = 0; r < k_tr; ++r) {
        if (add)
            std::copy(out + r * ldo, out + r * ldo + k_cw, acc[r]);
        else
            std::fill(acc[r], acc[r] + k_cw, T(0));
    }
    for (int64_t j = 0; j < K; ++j) {
        const T* wj = wt + j * C + c0;
        const T* s = src0 + j * tap_step;
        for (int64_t r = 0; r < k_tr; ++r)
            for (int64_t c = 0; c < k_cw; ++c) acc[r][c] += wj[c] * s[r * lds + c];
    }
    for (int64_t r = 0; r < k_tr; ++r) std::copy(acc[r], acc[r] + k_cw, out + r * ldo);
}

// y[bt, :] = Σ_j wt[j, :] ⊙ x[bt - (K-1-j)·d, :] within each sequence; x rows are ldx apart.
template <class T>
void forward(const T* x, int64_t ldx, const T* wt, int64_t B, int64_t L, int64_t C, int64_t K, T* y, int64_t d = 1) {
    // One row, channels [c0, c1), taps from the first inside the sequence.
    auto row = [&](int64_t bt, int64_t c0, int64_t c1) {
        const int64_t b = bt / L, t = bt % L;
        T* yt = y + bt * C;
        std::fill(yt + c0, yt + c1, T(0));
        for (int64_t j = first_tap(t, K, d); j < K; ++j) {
            const T* xs = x + (b * L + t - (K - 1 - j) * d) * ldx;
            const T* wj = wt + j * C;
            for (int64_t c = c0; c < c1; ++c) yt[c] += wj[c] * xs[c];
        }
    };
    const int64_t reach = (K - 1) * d;  // rows t ≥ reach have every tap inside the sequence
    parallel_for(B * L, B * L * C * K, [&](int64_t r0, int64_t r1) {
        const int64_t cb = C / k_cw * k_cw;
        for (int64_t bt = r0; bt < r1;) {
            const int64_t t = bt % L;
            if (t < reach || bt + k_tr > r1 || t + k_tr > L) {
                row(bt, 0, C);
                ++bt;
                continue;
            }
            for (int64_t c0 = 0; c0 < cb; c0 += k_cw)  // tap j reads row bt + r − (K−1−j)·d
                tap_block(wt, C, K, c0, x + (bt - reach) * ldx + c0, d * ldx, ldx, y + bt * C + c0, C, false);
            if (cb < C)
                for (int64_t r = 0; r < k_tr; ++r) row(bt + r, cb, C);
            bt += k_tr;
        }
    });
}

// dx[bs, :] += Σ_j wt[j, :] ⊙ dy[bs + (K-1-j)·d, :]; dx rows are ldx apart.
template <class T>
void backward_input(const T* dy, const T* wt, int64_t B, int64_t L, int64_t C, int64_t K, T* dx, int64_t ldx, int64_t d = 1) {
    auto row = [&](int64_t bs, int64_t c0, int64_t c1) {
        const int64_t b = bs / L, s = bs % L;
        T* dxs = dx + bs * ldx;
        for (int64_t j = 0; j < K; ++j) {
            const int64_t t = s + (K - 1 - j) * d;
            if (t >= L) continue;
            const T* dyt = dy + (b * L + t) * C;
            const T* wj = wt + j * C;
            for (int64_t c = c0; c < c1; ++c) dxs[c] += wj[c] * dyt[c];
        }
    };
    const int64_t reach = (K - 1) * d;  // rows s < L - reach have every tap inside the sequence
    parallel_for(B * L, B * L * C * K, [&](int64_t r0, int64_t r1) {
        const int64_t cb = C / k_cw * k_cw;
        for (int64_t bs = r0; bs < r1;) {
            const int64_t s = bs % L;
            if (s + k_tr - 1 + reach >= L || bs + k_tr > r1) {
                row(bs, 0, C);
                ++bs;
                continue;
            }
            for (int64_t c0 = 0; c0 < cb; c0 += k_cw)  // tap j reads row bs + r + (K−1−j)·d
                tap_block(wt, C, K, c0, dy + (bs + reach) * C + c0, -d * C, C, dx + bs * ldx + c0, ldx, true);
            if (cb < C)
                for (int64_t r = 0; r < k_tr; ++r) row(bs + r, cb, C);
            bs += k_tr;
        }
    });
}

// dw[c, 0, j] += Σ_{b,t} dy[bt, c] · x[bt - (K-1-j)·d, c], through per-thread partials `part`
// ([threads, K, C], zeroed) summed in thread order so the result is deterministic.
// Blocked as k_wt taps × k_cw channels of partials held in registers over a run of k_wr rows (short
// enough that its dy and x rows stay in L1 for every block of taps and channels), rows ascending.
template <class T>
void backward_weight(const T* dy, const T* x, int64_t ldx, int64_t B, int64_t L, int64_t C, int64_t K, T* part, T* dw,
                     int64_t d = 1) {
    constexpr int64_t k_wt = 4, k_wr = 16;
    const int used = parallel_for_tid(B * L, B * L * K * C, [&](int64_t r0, int64_t r1, int tid) {
        T* acc = part + int64_t(tid) * K * C;
        const int64_t reach = (K - 1) * d, cb = C / k_cw * k_cw;
        for (int64_t bt = r0; bt < r1;) {
            const int64_t t = bt % L;
            if (t < reach) {  // rows whose early taps fall before the sequence: one at a time
                const int64_t b = bt / L;
                const T* dyt = dy + bt * C;
                for (int64_t j = first_tap(t, K, d); j < K; ++j) {
                    const T* xs = x + (b * L + t - (K - 1 - j) * d) * ldx;
                    T* a = acc + j * C;
                    for (int64_t c = 0; c < C; ++c) a[c] += dyt[c] * xs[c];
                }
                ++bt;
                continue;
            }
            // rows [bt, e): all inside one sequence with every tap inside it
            const int64_t e = std::min({r1, bt + k_wr, bt - t + L});
            for (int64_t j0 = 0; j0 < K; j0 += k_wt) {
                const int64_t nj = std::min(k_wt, K - j0);
                for (int64_t c0 = 0; c0 < cb; c0 += k_cw) {
                    T a[k_wt][k_cw];
                    for (int64_t jj = 0; jj < nj; ++jj) std::copy(acc + (j0 + jj) * C + c0, acc + (j0 + jj) * C + c0 + k_cw, a[jj]);
                    if (nj == k_wt) {
                        for (int64_t r = bt; r < e; ++r) {
                            const T* dyt = dy + r * C + c0;
                            for (int64_t jj = 0; jj < k_wt; ++jj) {
                                const T* xs = x + (r - (K - 1 - j0 - jj) * d) * ldx + c0;
                                for (int64_t c = 0; c < k_cw; ++c) a[jj][c] += dyt[c] * xs[c];
                            }
                        }
                    } else {
                        for (int64_t r = bt; r < e; ++r) {
                            const T* dyt = dy + r * C + c0;
                            for (int64_t jj = 0; jj < nj; ++jj) {
                                const T* xs = x + (r - (K - 1 - j0 - jj) * d) * ldx + c0;
                                for (int64_t c = 0; c < k_cw; ++c) a[jj][c] += dyt[c] * xs[c];
                            }
                        }
                    }
                    for (int64_t jj = 0; jj < nj; ++jj) std::copy(a[jj], a[jj] + k_cw, acc + (j0 + jj) * C + c0);
                }
                for (int64_t r = bt; r < e; ++r)  // channels past the last full block
                    for (int64_t j = j0; j < j0 + nj; ++j) {
                        const T* xs = x + (r - (K - 1 - j) * d) * ldx;
                        const T* dyt = dy + r * C;
                        T* a = acc + j * C;
                        for (int64_t c = cb; c < C; ++c) a[c] += dyt[c] * xs[c];
                    }
            }
            bt = e;
        }
    });
    for (int p = 0; p < used; ++p)
        for (int64_t j = 0; j < K; ++j)
            for (int64_t c = 0; c < C; ++c) dw[c * K + j] += part[(int64_t(p) * K + j) * C + c];
}

template <class T>
T* weight_partials(Tape<T>& tape, const Tensor<T>& w) {
    return w.grad ? tape.scratch_zeroed(int64_t(max_threads()) * w.dim(0) * w.dim(1) * w.dim(2)) : nullptr;
}

// ---- grouped (G < C): weight [C, Cg, K] with Cg = C / G; output channel o reads input channels
// g·Cg … g·Cg+Cg-1 of its group g = o / Cg. Weight transposed to wt[(j·Cg + i)·C + o] so the innermost
// loop runs over the Cg contiguous outputs of a group.

template <class T>
T* transpose_grouped_weight(Tape<T>& tape, const Tensor<T>& w) {
    const int64_t C = w.dim(0), Cg = w.dim(1), K = w.dim(2);
    T* wt = tape.scratch(K * Cg * C);
    for (int64_t o = 0; o < C; ++o)
        for (int64_t i = 0; i < Cg; ++i)
            for (int64_t j = 0; j < K; ++j) wt[(j * Cg + i) * C + o] = w.data[(o * Cg + i) * K + j];
    return wt;
}

// Register blocking of the grouped loops for a compile-time group width CG (v3: 16): a block of
// k_grows rows × CG channels of outputs (or input gradients), or one group's CG × CG weight-gradient tile,
// stays in registers over all its taps and inputs. Row at a time, each multiply-add loaded and stored its
// output (the grouped convs were ~12 % of a v3 step, at 12-23 GFLOP/s on 2 Zen 4 cores). The unroll and
// simd pragmas are what make g++ 12 keep the tile in registers and vectorise across the CG channels:
// without them it vectorised the unrolled tile the other way and transposed it every row (23 GFLOP/s
// for the weight gradient, 190 with them).
inline constexpr int64_t k_grows = 8;

// The forward and the input gradient are one loop, as tap_block is for the depthwise conv:
//   forward:        out[bt, g·CG + o]  = Σ_j Σ_i wt[(j·CG + i)·C + g·CG + o] · x[bt - (K-1-j)·d, g·CG + i]
//   input gradient: out[bs, g·CG + i] += Σ_j Σ_o wb[(j·CG + o)·C + g·CG + i] · dy[bs + (K-1-j)·d, g·CG + o]
// with wt the weight transposed (transpose_grouped_weight) and wb transposed within each group
// (transpose_within_groups), so the inner loop runs over CG contiguous outputs. backward picks the
// direction of the taps and adds into out instead of storing. Taps and inputs ascend from zero, as in
// the plain loops (which skip a tap outside the sequence, where this one adds products with zeros).
template <int CG, class T>
void grouped_taps_blocked(const T* src, const T* w, int64_t L, int64_t C, int64_t K, int64_t d, bool backward, T* out,
                          int64_t r0, int64_t r1) {
    static const T zeros[CG] = {};
    for (int64_t b0 = r0; b0 < r1; b0 += k_grows) {
        const int64_t rn = std::min(k_grows, r1 - b0);
        int64_t t[k_grows];  // position in the sequence; -1 past r1
        for (int64_t r = 0; r < k_grows; ++r) t[r] = r < rn ? (b0 + r) % L : -1;
        for (int64_t g0 = 0; g0 < C; g0 += CG) {
            T acc[k_grows][CG] = {};
            for (int64_t j = 0; j < K; ++j) {
                const int64_t lag = (K - 1 - j) * d, step = backward ? lag : -lag;
                const T* ss[k_grows];
                for (int64_t r = 0; r < k_grows; ++r) {
                    const bool inside = t[r] >= 0 && (backward ? t[r] + lag < L : t[r] >= lag);
                    ss[r] = inside ? src + (b0 + r + step) * C + g0 : zeros;
                }
                for (int i = 0; i < CG; ++i) {
                    const T* __restrict wi = w + (j * CG + i) * C + g0;
#pragma GCC unroll 16
                    for (int64_t r = 0; r < k_grows; ++r) {
                        const T v = ss[r][i];
#pragma omp simd
                        for (int o = 0; o < CG; ++o) acc[r][o] += wi[o] * v;
                    }
                }
            }
            for (int64_t r = 0; r < rn; ++r) {
                T* dst = out + (b0 + r) * C + g0;
                if (backward)
                    for (int o = 0; o < CG; ++o) dst[o] += acc[r][o];
                else
                    std::copy(acc[r], acc[r] + CG, dst);
            }
        }
    }
}

// acc[(j·CG + i)·C + g·CG + o] += Σ_bt dy[bt, g·CG + o] · x[bt - (K-1-j)·d, g·CG + i] over rows
// [r0, r1), k_wrows rows at a time so that a block's rows of x and dy stay close across the taps.
inline constexpr int64_t k_wrows = 64;
template <int CG, class T>
void grouped_backward_weight_blocked(const T* dy, const T* x, int64_t L, int64_t C, int64_t K, int64_t d, T* acc_out,
                                     int64_t r0, int64_t r1) {
    for (int64_t b0 = r0; b0 < r1; b0 += k_wrows) {
        const int64_t b1 = std::min(r1, b0 + k_wrows);
        for (int64_t g0 = 0; g0 < C; g0 += CG)
            for (int64_t j = 0; j < K; ++j) {
                const int64_t lag = (K - 1 - j) * d;
                T acc[CG][CG];
                for (int i = 0; i < CG; ++i) std::copy_n(acc_out + (j * CG + i) * C + g0, CG, acc[i]);
                int64_t t = b0 % L;
                for (int64_t bt = b0; bt < b1; ++bt, t = t + 1 == L ? 0 : t + 1) {
                    if (t < lag) continue;
                    const T* __restrict dyt = dy + bt * C + g0;
                    const T* __restrict xs = x + (bt - lag) * C + g0;
#pragma GCC unroll 16
                    for (int i = 0; i < CG; ++i) {
                        const T xv = xs[i];
#pragma omp simd
                        for (int o = 0; o < CG; ++o) acc[i][o] += dyt[o] * xv;
                    }
                }
                for (int i = 0; i < CG; ++i) std::copy_n(acc[i], CG, acc_out + (j * CG + i) * C + g0);
            }
    }
}

// y[bt, o] = Σ_j Σ_i w[o, i, j] · x[bt - (K-1-j)·d, g(o)·Cg + i].
template <class T>
void grouped_forward(const T* x, const T* wt, int64_t B, int64_t L, int64_t C, int64_t Cg, int64_t K, int64_t d, T* y) {
    if (Cg == 16)
        return parallel_for(B * L, B * L * C * Cg * K, [&](int64_t r0, int64_t r1) {
            grouped_taps_blocked<16>(x, wt, L, C, K, d, false, y, r0, r1);
        });
    parallel_for(B * L, B * L * C * Cg * K, [&](int64_t r0, int64_t r1) {
        for (int64_t bt = r0; bt < r1; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            T* yt = y + bt * C;
            std::fill(yt, yt + C, T(0));
            for (int64_t j = first_tap(t, K, d); j < K; ++j) {
                const T* xs = x + (b * L + t - (K - 1 - j) * d) * C;
                for (int64_t g0 = 0; g0 < C; g0 += Cg)
                    for (int64_t i = 0; i < Cg; ++i) {
                        const T xv = xs[g0 + i];
                        const T* w = wt + (j * Cg + i) * C + g0;
                        for (int64_t o = 0; o < Cg; ++o) yt[g0 + o] += w[o] * xv;
                    }
            }
        }
    });
}

// dx[bs, g·Cg + i] += Σ_j Σ_o w[o, i, j] · dy[bs + (K-1-j)·d, o] over the outputs o of group g.
// wt[(j·Cg + i)·C + o] -> wb[(j·Cg + o)·C + g·Cg + i] for o in group g: the input gradient's weight.
template <class T>
T* transpose_within_groups(Tape<T>& tape, const T* wt, int64_t C, int64_t Cg, int64_t K) {
    T* wb = tape.scratch(K * Cg * C);
    for (int64_t j = 0; j < K; ++j)
        for (int64_t g0 = 0; g0 < C; g0 += Cg)
            for (int64_t o = 0; o < Cg; ++o)
                for (int64_t i = 0; i < Cg; ++i) wb[(j * Cg + o) * C + g0 + i] = wt[(j * Cg + i) * C + g0 + o];
    return wb;
}

// wb: transpose_within_groups' layout, used where the blocked loops run (Cg == 16), else null.
template <class T>
void grouped_backward_input(const T* dy, const T* wt, const T* wb, int64_t B, int64_t L, int64_t C, int64_t Cg,
                            int64_t K, int64_t d, T* dx) {
    if (Cg == 16 && wb)
        return parallel_for(B * L, B * L * C * Cg * K, [&](int64_t r0, int64_t r1) {
            grouped_taps_blocked<16>(dy, wb, L, C, K, d, true, dx, r0, r1);
        });
    parallel_for(B * L, B * L * C * Cg * K, [&](int64_t r0, int64_t r1) {
        for (int64_t bs = r0; bs < r1; ++bs) {
            const int64_t b = bs / L, s = bs % L;
            T* dxs = dx + bs * C;
            for (int64_t j = 0; j < K; ++j) {
                const int64_t t = s + (K - 1 - j) * d;
                if (t >= L) continue;
                const T* dyt = dy + (b * L + t) * C;
                for (int64_t g0 = 0; g0 < C; g0 += Cg)
                    for (int64_t i = 0; i < Cg; ++i) {
                        const T* w = wt + (j * Cg + i) * C + g0;
                        T acc = 0;
                        for (int64_t o = 0; o < Cg; ++o) acc += w[o] * dyt[g0 + o];
                        dxs[g0 + i] += acc;
                    }
            }
        }
    });
}

// dw[o, i, j] += Σ_{b,t} dy[bt, o] · x[bt - (K-1-j)·d, g(o)·Cg + i], through per-thread partials `part`
// ([threads, K, Cg, C], zeroed) summed in thread order.
template <class T>
void grouped_backward_weight(const T* dy, const T* x, int64_t B, int64_t L, int64_t C, int64_t Cg, int64_t K, int64_t d,
                             T* part, T* dw) {
    const int64_t per = K * Cg * C;
    const int used = parallel_for_tid(B * L, B * L * C * Cg * K, [&](int64_t r0, int64_t r1, int tid) {
        T* acc = part + int64_t(tid) * per;
        if (Cg == 16) return grouped_backward_weight_blocked<16>(dy, x, L, C, K, d, acc, r0, r1);
        for (int64_t bt = r0; bt < r1; ++bt) {
            const int64_t b = bt / L, t = bt % L;
            const T* dyt = dy + bt * C;
            for (int64_t j = first_tap(t, K, d); j < K; ++j) {
                const T* xs = x + (b * L + t - (K - 1 - j) * d) * C;
                for (int64_t g0 = 0; g0 < C; g0 += Cg)
                    for (int64_t i = 0; i < Cg; ++i) {
                        const T xv = xs[g0 + i];
                        T* a = acc + (j * Cg + i) * C + g0;
                        for (int64_t o = 0; o < Cg; ++o) a[o] += dyt[g0 + o] * xv;
                    }
            }
        }
    });
    for (int p = 0; p < used; ++p)
        for (int64_t o = 0; o < C; ++o)
            for (int64_t i = 0; i < Cg; ++i)
                for (int64_t j = 0; j < K; ++j) dw[(o * Cg + i) * K + j] += part[int64_t(p) * per + (j * Cg + i) * C + o];
}

}  // namespace conv

template <class T>
void causal_dwconv1d_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    if (x.grad) conv::backward_input(n.out.grad, n.saved[0], B, L, C, K, x.grad, C);
    if (w.grad) conv::backward_weight(n.out.grad, x.data, C, B, L, C, K, n.saved[1], w.grad);
}

// x: [B, T, C]; w: [C, 1, K] (PyTorch's depthwise weight layout).
template <class T>
Tensor<T> causal_dwconv1d(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w) {
    FLASHLM_CHECK(x.shape.rank == 3, "causal_dwconv1d: input must be [B, T, C], got " + x.shape.str());
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == x.dim(2) && w.dim(1) == 1,
                  "causal_dwconv1d: weight " + w.shape.str() + " does not match input " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), K = w.dim(2);
    T* wt = conv::transpose_weight(tape, w);
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    conv::forward(x.data, C, wt, B, L, C, K, y.data);
    if (y.grad) {
        auto& n = tape.record(&causal_dwconv1d_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = wt;
        n.saved[1] = conv::weight_partials(tape, w);
    }
    return y;
}

// General causal conv over time, PyTorch Conv1d(C, C, K, groups=G, dilation=d, bias=False) on x
// left-padded by (K-1)·d: y[b,t,o] = Σ_j Σ_i w[o,i,j] · x[b, t-(K-1-j)·d, g(o)·C/G + i].
// x: [B, T, C]; w: [C, C/G, K]. G == C runs the depthwise loops.
template <class T>
void causal_conv1d_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& w = n.in[1];
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2), Cg = w.dim(1), K = w.dim(2), d = n.i[0];
    if (Cg == 1) {
        if (x.grad) conv::backward_input(n.out.grad, n.saved[0], B, L, C, K, x.grad, C, d);
        if (w.grad) conv::backward_weight(n.out.grad, x.data, C, B, L, C, K, n.saved[1], w.grad, d);
    } else {
        if (x.grad) conv::grouped_backward_input(n.out.grad, n.saved[0], n.saved[2], B, L, C, Cg, K, d, x.grad);
        if (w.grad) conv::grouped_backward_weight(n.out.grad, x.data, B, L, C, Cg, K, d, n.saved[1], w.grad);
    }
}

template <class T>
Tensor<T> causal_conv1d(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& w, int64_t dilation, int64_t groups) {
    FLASHLM_CHECK(x.shape.rank == 3, "causal_conv1d: input must be [B, T, C], got " + x.shape.str());
    const int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2);
    FLASHLM_CHECK(groups >= 1 && C % groups == 0 && dilation >= 1,
                  "causal_conv1d: groups must divide the channels and dilation be positive");
    FLASHLM_CHECK(w.shape.rank == 3 && w.dim(0) == C && w.dim(1) == C / groups,
                  "causal_conv1d: weight " + w.shape.str() + " does not match input " + x.shape.str());
    const int64_t Cg = C / groups, K = w.dim(2);
    T* wt = Cg == 1 ? conv::transpose_weight(tape, w) : conv::transpose_grouped_weight(tape, w);
    Tensor<T> y = tape.make(x.shape, tape.recording({x, w}));
    if (Cg == 1) conv::forward(x.data, C, wt, B, L, C, K, y.data, dilation);
    else conv::grouped_forward(x.data, wt, B, L, C, Cg, K, dilation, y.data);
    if (y.grad) {
        auto& n = tape.record(&causal_conv1d_backward<T>);
        n.in[0] = x;
        n.in[1] = w;
        n.out = y;
        n.saved[0] = wt;
        n.saved[1] = conv::weight_partials(tape, w);
        if (Cg == 16 && x.grad) n.saved[2] = conv::transpose_within_groups(tape, wt, C, Cg, K);
        n.i[0] = dilation;
    }
    return y;
}

}  // namespace flashlm::ops
