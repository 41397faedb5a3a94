#pragma once
// Fused causal softmax attention, per (batch, head):
//   S = scale · Q Kᵀ,  P = softmax(S + causal mask) by rows,  O = dropout(P) V.
// q, k are [B, L, H·dk], v is [B, L, H·dv] (heads side by side in the last dimension, the layout a fused
// qkv projection and RoPE produce, so no transposes), o is [B, L, H·dv].
//
// Memory: nothing of size L×L per (batch, head) outlives the op. Rows are processed in blocks of
// k_attn_rows; a block's scores only reach keys up to the block's last row (the causal triangle skips
// the upper-right GEMM work), live in a per-thread scratch of k_attn_rows × L, and only the
// log-sum-exp of each row is saved. Backward recomputes the block's probabilities from it
// (flash-attention style): dP = dO Vᵀ, dV += P̃ᵀ dO, dS = P ⊙ (dP̃ − rowsum(P ⊙ dP̃)), dQ += scale·dS K,
// dK += scale·dSᵀ Q, with P̃ = P ⊙ mask/(1 − p) when dropout is on.
//
// Dropout on the probabilities (v5.2's nn.Dropout after the softmax) draws its keep mask from
// ops::dropout_keep over (seed, batch, head, row, column): backward regenerates it instead of storing it.
// The GEMMs are kernels/gemm.hpp's Eigen blocked products, run single-threaded per (batch, head);
// threads take the (batch, head) pairs as they free up (parallel_for_balanced). The passes also run on
// raw strided pointers (causal_attention_forward_raw / _backward_raw): a differential-attention node runs
// them once per branch, each reading its half of q and k in place (ops/differential_attention.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/ops/dropout.hpp"

namespace flashlm::ops {

inline constexpr int64_t k_attn_rows = 64;

// Floats of one thread's scratch in the forward and the backward pass, rounded to 16 so that every
// thread's block starts 64-byte aligned like the first: Eigen peels an unaligned head of its vectorised
// exp and sums into scalar code, so the bits would depend on which thread ran a (batch, head) pair, and
// threads take the pairs as they free up.
inline int64_t attn_forward_scratch(int64_t L) { return (k_attn_rows * L + L + 15) / 16 * 16; }
inline int64_t attn_backward_scratch(int64_t L) { return (2 * k_attn_rows * L + L + 15) / 16 * 16; }

namespace detail {

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

struct AttnDims {
    int64_t B, L, H, dk, dv, cq, cv;  // cq/cv: row strides of q,k and v,o
};

template <class T>
AttnDims attn_dims(const Tensor<T>& q, const Tensor<T>& v, int64_t H) {
    return {q.dim(0), q.dim(1), H, q.cols() / H, v.cols() / H, q.cols(), v.cols()};
}

}  // namespace detail

// The backward over all (batch, head) pairs from raw pointers: q, k, v and dO at their first head's
// column, strided by d.cq / d.cv (one branch of a differential layer reads half of a wider q and k in
// place); dQ, dK, dV (any may be null) accumulate. scratch: nthreads · attn_backward_scratch(L) elements,
// 64-byte aligned.
template <class T>
void causal_attention_backward_raw(const detail::AttnDims& d, const T* q, const T* k, const T* v, const T* dout, T* dq,
                                   T* dk, T* dv, const T* lse, T* scratch, int64_t nthreads, T scale, T p,
                                   uint64_t seed) {
    using namespace kernels::detail;
    using ArrMap = detail::ArrMap<T>;
    const uint64_t thr = dropout_threshold(double(p));
    const T keep_scale = p > 0 ? T(1) / (T(1) - p) : T(1);
    const int64_t R = k_attn_rows, L = d.L;
    parallel_for_balanced(d.B * d.H, 4 * d.B * d.H * L * L * (d.dk + d.dv), [&](int64_t b0, int64_t b1, int tid) {
        if (tid >= nthreads) return;  // cannot happen: the scratch was sized for max_threads()
        T* Pb = scratch + int64_t(tid) * attn_backward_scratch(L);  // P̃ block [R, L]
        T* dPb = Pb + R * L;                                // dP̃, then dS, block [R, L]
        T* mk = dPb + R * L;                                // one row's dropout factors [L]
        for (int64_t bh = b0; bh < b1; ++bh) {
            const int64_t b = bh / d.H, h = bh % d.H;
            const T* Q = q + b * L * d.cq + h * d.dk;
            const T* K = k + b * L * d.cq + h * d.dk;
            const T* V = v + b * L * d.cv + h * d.dv;
            const T* dO = dout + b * L * d.cv + h * d.dv;
            T* dQ = dq ? dq + b * L * d.cq + h * d.dk : nullptr;
            T* dK = dk ? dk + b * L * d.cq + h * d.dk : nullptr;
            T* dV = dv ? dv + b * L * d.cv + h * d.dv : nullptr;
            for (int64_t r0 = 0; r0 < L; r0 += R) {
                const int64_t r1 = std::min(L, r0 + R), m = r1 - r0;
                // P (recomputed from the saved log-sum-exp) and dP̃ = dO Vᵀ, both [m, r1] with row stride L.
                std::fill(Pb, Pb + m * L, T(0));
                std::fill(dPb, dPb + m * L, T(0));
                gemm_acc<T, Eigen::RowMajor, Eigen::ColMajor>(m, r1, d.dk, Q + r0 * d.cq, d.cq, K, d.cq, Pb, L, scale, tid);
                gemm_acc<T, Eigen::RowMajor, Eigen::ColMajor>(m, r1, d.dv, dO + r0 * d.cv, d.cv, V, d.cv, dPb, L, T(1), tid);
                for (int64_t i = 0; i < m; ++i) {
                    const int64_t row = r0 + i;
                    T* P = Pb + i * L;
                    T* dP = dPb + i * L;
                    const T z = lse[bh * L + row];
                    const uint64_t key = uint64_t(bh * L + row);
                    ArrMap pe(P, row + 1);
                    pe = (pe - z).exp();
                    if (p > 0) {  // dP̃ → dP through the dropout mask (drawn once per row, used twice)
                        dropout_factors(seed, key * 0x100000001B3ull, row + 1, thr, keep_scale, mk);
                        for (int64_t j = 0; j <= row; ++j) dP[j] *= mk[j];
                    }
                    const T dot = (pe * ArrMap(dP, row + 1)).sum();
                    if (p > 0) {
                        for (int64_t j = 0; j <= row; ++j) {
                            const T pj = P[j];
                            dP[j] = pj * (dP[j] - dot);                  // dS
                            P[j] = mk[j] != T(0) ? pj * keep_scale : T(0);  // P → P̃ for dV
                        }
                    } else {
                        for (int64_t j = 0; j <= row; ++j) dP[j] = P[j] * (dP[j] - dot);
                    }
                    for (int64_t j = row + 1; j < r1; ++j) P[j] = 0, dP[j] = 0;
                }
                if (dV) gemm_acc<T, Eigen::ColMajor, Eigen::RowMajor>(r1, d.dv, m, Pb, L, dO + r0 * d.cv, d.cv, dV, d.cv, T(1), tid);
                if (dQ) gemm_acc<T, Eigen::RowMajor, Eigen::RowMajor>(m, d.dk, r1, dPb, L, K, d.cq, dQ + r0 * d.cq, d.cq, scale, tid);
                if (dK) gemm_acc<T, Eigen::ColMajor, Eigen::RowMajor>(r1, d.dk, m, dPb, L, Q + r0 * d.cq, d.cq, dK, d.cq, scale, tid);
            }
        }
    });
}

template <class T>
void causal_attention_backward(Node<T>& n) {
    const Tensor<T>&q = n.in[0], &k = n.in[1], &v = n.in[2], &o = n.out;
    causal_attention_backward_raw(detail::attn_dims(q, v, n.i[0]), q.data, k.data, v.data, o.grad, q.grad, k.grad,
                                  v.grad, n.saved[0], n.saved[1], n.i[2], T(n.f[0]), T(n.f[1]), uint64_t(n.i[1]));
}

// The forward over all (batch, head) pairs from raw pointers, strided as for the backward: o written,
// each row's log-sum-exp into lse [B·H·L]. scratch: max_threads() · attn_forward_scratch(L) elements,
// 64-byte aligned.
template <class T>
void causal_attention_forward_raw(const detail::AttnDims& d, const T* q, const T* k, const T* v, T* o, T* lse,
                                  T* scratch, T sc, double dropout, uint64_t seed) {
    using namespace kernels::detail;
    using ArrMap = detail::ArrMap<T>;
    const int64_t R = k_attn_rows, L = d.L;
    const uint64_t thr = dropout_threshold(dropout);
    const T keep_scale = dropout > 0 ? T(1 / (1 - dropout)) : T(1);
    parallel_for_balanced(d.B * d.H, 2 * d.B * d.H * L * L * (d.dk + d.dv), [&](int64_t b0, int64_t b1, int tid) {
        T* Sb = scratch + int64_t(tid) * attn_forward_scratch(L);
        T* mk = Sb + R * L;  // one row's dropout factors [L]
        for (int64_t bh = b0; bh < b1; ++bh) {
            const int64_t b = bh / d.H, h = bh % d.H;
            const T* Q = q + b * L * d.cq + h * d.dk;
            const T* K = k + b * L * d.cq + h * d.dk;
            const T* V = v + b * L * d.cv + h * d.dv;
            T* O = o + b * L * d.cv + h * d.dv;
            for (int64_t i = 0; i < L; ++i) std::fill(O + i * d.cv, O + i * d.cv + d.dv, T(0));
            for (int64_t r0 = 0; r0 < L; r0 += R) {
                const int64_t r1 = std::min(L, r0 + R), m = r1 - r0;
                std::fill(Sb, Sb + m * L, T(0));
                gemm_acc<T, Eigen::RowMajor, Eigen::ColMajor>(m, r1, d.dk, Q + r0 * d.cq, d.cq, K, d.cq, Sb, L, sc, tid);
                for (int64_t i = 0; i < m; ++i) {
                    const int64_t row = r0 + i;
                    T* S = Sb + i * L;
                    T mx = -std::numeric_limits<T>::infinity();
                    for (int64_t j = 0; j <= row; ++j) mx = std::max(mx, S[j]);
                    // Eigen's array exp is vectorised (std::exp is not): ~L²/2 of them per head and layer.
                    ArrMap e(S, row + 1);
                    e = (e - mx).exp();
                    const T sum = e.sum();
                    const T inv = T(1) / sum;
                    lse[bh * L + row] = mx + std::log(sum);
                    if (dropout > 0) {
                        const uint64_t key = uint64_t(bh * L + row);
                        dropout_factors(seed, key * 0x100000001B3ull, row + 1, thr, keep_scale, mk);
                        for (int64_t j = 0; j <= row; ++j) S[j] = mk[j] != T(0) ? S[j] * inv * keep_scale : T(0);
                    } else {
                        for (int64_t j = 0; j <= row; ++j) S[j] *= inv;
                    }
                    for (int64_t j = row + 1; j < r1; ++j) S[j] = 0;
                }
                gemm_acc<T, Eigen::RowMajor, Eigen::RowMajor>(m, d.dv, r1, Sb, L, V, d.cv, O + r0 * d.cv, d.cv, T(1), tid);
            }
        }
    });
}

// q, k: [B, L, H·dk]; v: [B, L, H·dv] -> [B, L, H·dv]. dropout p ∈ [0, 1) on the probabilities with the
// given seed (p = 0: none).
template <class T>
Tensor<T> causal_attention(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, int64_t n_heads,
                           double scale, double dropout = 0.0, uint64_t seed = 0) {
    FLASHLM_CHECK(q.shape.rank == 3 && q.shape == k.shape && v.shape.rank == 3 && v.dim(0) == q.dim(0) &&
                      v.dim(1) == q.dim(1) && n_heads > 0 && q.cols() % n_heads == 0 && v.cols() % n_heads == 0,
                  "causal_attention: q " + q.shape.str() + ", k " + k.shape.str() + ", v " + v.shape.str() +
                      " are not [B, L, heads·d]");
    FLASHLM_CHECK(dropout >= 0 && dropout < 1, "causal_attention: dropout must be in [0, 1)");
    const detail::AttnDims d = detail::attn_dims(q, v, n_heads);
    const int64_t L = d.L, nthreads = max_threads();
    const bool rec = tape.recording({q, k, v});
    Tensor<T> o = tape.make(v.shape, rec);
    T* lse = tape.scratch(d.B * d.H * L);
    T* scratch = tape.scratch(int64_t(nthreads) * attn_forward_scratch(L));
    causal_attention_forward_raw(d, q.data, k.data, v.data, o.data, lse, scratch, T(scale), dropout, seed);
    if (o.grad) {
        auto& n = tape.record(&causal_attention_backward<T>);
        n.in[0] = q;
        n.in[1] = k;
        n.in[2] = v;
        n.out = o;
        n.saved[0] = lse;
        n.saved[1] = tape.scratch(int64_t(nthreads) * attn_backward_scratch(L));
        n.i[0] = n_heads, n.i[1] = int64_t(seed), n.i[2] = nthreads;
        n.f[0] = scale, n.f[1] = dropout;
    }
    return o;
}

// One query against a KV cache (cached generation): for each head, o = softmax(scale · K q) V over the
// first `len` cached rows. K, V caches are [len, H·dk] / [len, H·dv] row-major; s is scratch of ≥ len.
inline void attend_cached(const float* q, const float* K, const float* V, int64_t len, int64_t H, int64_t dk,
                          int64_t dv, float scale, float* s, float* o) {
    const int64_t ck = H * dk, cv = H * dv;
    for (int64_t h = 0; h < H; ++h) {
        const float* qh = q + h * dk;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < len; ++j) {
            const float* kj = K + j * ck + h * dk;
            float acc = 0;
            for (int64_t c = 0; c < dk; ++c) acc += qh[c] * kj[c];
            s[j] = acc * scale;
            mx = std::max(mx, s[j]);
        }
        float sum = 0;
        for (int64_t j = 0; j < len; ++j) sum += (s[j] = std::exp(s[j] - mx));
        const float inv = 1.0f / sum;
        float* oh = o + h * dv;
        std::fill(oh, oh + dv, 0.0f);
        for (int64_t j = 0; j < len; ++j) {
            const float w = s[j] * inv;
            const float* vj = V + j * cv + h * dv;
            for (int64_t c = 0; c < dv; ++c) oh[c] += w * vj[c];
        }
    }
}

}  // namespace flashlm::ops
