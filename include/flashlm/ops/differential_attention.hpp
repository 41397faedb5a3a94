#pragma once
// Differential attention (v5.2 Nova-Ignition as announced, VARIANTS.md §7.1):
//   out = softmax(q₁ k₁ᵀ·s + causal) v − λ · softmax(q₂ k₂ᵀ·s + causal) v
// with q = [q₁ | q₂], k = [k₁ | k₂] the two halves of a 2·H·d-wide projection (upstream's view
// (B, T, 2, H, d): branch b is columns [b·H·d, (b+1)·H·d)) and one scalar λ per layer:
//   λ = clamp(exp(mean(λ_q) − mean(λ_k)), lo, hi)   (upstream: lo 0.1, hi 2.0).
// One tape node runs both branches (ops::causal_attention's raw passes, reading each half of q and k in
// place through the row stride) and the combination: it keeps each branch's row log-sum-exps and o₂
// (λ's gradient is −Σ dout ⊙ o₂). The chain it replaces (differential_attention_chain: slice_cols ×4,
// causal_attention ×2, sub_scaled) copied the four halves and kept them, o₁ and o₂, each with a gradient
// of its size, and gives the same bits (tests/variants/nova_diff_fused.cpp). diff_lambda makes the scalar λ.
#include <algorithm>
#include <cmath>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/attention.hpp"
#include "flashlm/ops/prenorm_residual.hpp"
#include "flashlm/ops/split.hpp"

namespace flashlm::ops {

template <class T>
void diff_lambda_backward(Node<T>& n) {
    // torch.clamp passes the gradient where lo ≤ x ≤ hi (both ends inclusive) and blocks it outside.
    const double x = n.f[0], lam = double(n.out.data[0]);
    if (!(x >= n.f[1] && x <= double(n.saved[0][0]))) return;
    const double d = double(n.out.grad[0]) * lam;  // ∂exp(u)/∂u = exp(u) = λ inside the clamp
    const int64_t nq = n.in[0].numel(), nk = n.in[1].numel();
    if (n.in[0].grad)
        for (int64_t i = 0; i < nq; ++i) n.in[0].grad[i] += T(d / double(nq));
    if (n.in[1].grad)
        for (int64_t i = 0; i < nk; ++i) n.in[1].grad[i] -= T(d / double(nk));
}

// λ = clamp(exp(mean(lambda_q) − mean(lambda_k)), lo, hi) as a [1] tensor.
template <class T>
Tensor<T> diff_lambda(Tape<T>& tape, const Tensor<T>& lambda_q, const Tensor<T>& lambda_k, double lo = 0.1,
                      double hi = 2.0) {
    FLASHLM_CHECK(lambda_q.numel() > 0 && lambda_k.numel() > 0 && lo <= hi, "diff_lambda: empty λ_q/λ_k or lo > hi");
    // Means in double, like quantize_absmean_rows: torch's float reduction lands on the rounded mean or next to it.
    double mq = 0, mk = 0;
    for (int64_t i = 0; i < lambda_q.numel(); ++i) mq += double(lambda_q.data[i]);
    for (int64_t i = 0; i < lambda_k.numel(); ++i) mk += double(lambda_k.data[i]);
    const double x = std::exp(double(T(mq / double(lambda_q.numel()))) - double(T(mk / double(lambda_k.numel()))));
    Tensor<T> y = tape.make(Shape{1}, tape.recording({lambda_q, lambda_k}));
    y.data[0] = T(std::clamp(x, lo, hi));
    if (y.grad) {
        auto& n = tape.record(&diff_lambda_backward<T>);
        n.in[0] = lambda_q;
        n.in[1] = lambda_k;
        n.out = y;
        n.f[0] = x, n.f[1] = lo;
        n.saved[0] = tape.scratch(1);  // f[] has two slots: hi goes here
        n.saved[0][0] = T(hi);
    }
    return y;
}

template <class T>
void sub_scaled_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const T lam = n.in[2].data[0];
    const T* g = n.out.grad;
    if (n.in[0].grad) {
        T* da = n.in[0].grad;
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) da[i] += g[i];
        });
    }
    if (n.in[1].grad) {
        T* db = n.in[1].grad;
        parallel_for(N, N, [&](int64_t b_, int64_t e_) {
            for (int64_t i = b_; i < e_; ++i) db[i] -= lam * g[i];
        });
    }
    if (n.in[2].grad) {
        double s = 0;
        const T* b = n.in[1].data;
        for (int64_t i = 0; i < N; ++i) s += double(g[i]) * double(b[i]);
        n.in[2].grad[0] -= T(s);
    }
}

// a − λ·b for same-shaped a, b and a [1] tensor λ.
template <class T>
Tensor<T> sub_scaled(Tape<T>& tape, const Tensor<T>& a, const Tensor<T>& b, const Tensor<T>& lam) {
    FLASHLM_CHECK(a.shape == b.shape && lam.numel() == 1,
                  "sub_scaled: shapes " + a.shape.str() + ", " + b.shape.str() + " and λ " + lam.shape.str());
    Tensor<T> y = tape.make(a.shape, tape.recording({a, b, lam}));
    const int64_t N = a.numel();
    const T l = lam.data[0];
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) y.data[i] = a.data[i] - l * b.data[i];
    });
    if (y.grad) {
        auto& n = tape.record(&sub_scaled_backward<T>);
        n.in[0] = a;
        n.in[1] = b;
        n.in[2] = lam;
        n.out = y;
    }
    return y;
}

namespace diff_attn_detail {
template <class T>
void check(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, const Tensor<T>& lam, int64_t n_heads) {
    FLASHLM_CHECK(q.shape.rank == 3 && q.shape == k.shape && n_heads > 0 && q.cols() % (2 * n_heads) == 0 &&
                      v.shape.rank == 3 && v.dim(0) == q.dim(0) && v.dim(1) == q.dim(1) && v.cols() % n_heads == 0 &&
                      lam.numel() == 1,
                  "differential_attention: q " + q.shape.str() + ", k " + k.shape.str() + ", v " + v.shape.str() +
                      ", λ " + lam.shape.str() + " are not [B, L, 2·heads·d], [B, L, heads·dv] and [1]");
}

// One branch's view: heads of W / H columns, q and k rows strided by their full 2·W width.
template <class T>
detail::AttnDims branch_dims(const Tensor<T>& q, const Tensor<T>& v, int64_t H) {
    return {q.dim(0), q.dim(1), H, q.cols() / 2 / H, v.cols() / H, q.cols(), v.cols()};
}

inline int64_t scratch_size(int64_t L) { return int64_t(max_threads()) * attn_backward_scratch(L); }
}  // namespace diff_attn_detail

// saved: [0] the branches' log-sum-exps [2, B·H·L], [1] o₂ [B, L, H·dv].
template <class T>
void differential_attention_backward(Node<T>& n) {
    using prenorm_detail::a16;
    const Tensor<T>&q = n.in[0], &k = n.in[1], &v = n.in[2], &lam = n.in[3];
    const detail::AttnDims d = diff_attn_detail::branch_dims(q, v, n.i[0]);
    const int64_t W = q.cols() / 2, N = n.out.numel(), BHL = d.B * d.H * d.L;
    const T l = lam.data[0], scale = T(n.f[0]);
    const T *g = n.out.grad, *o2 = n.saved[1];
    T* ws = prenorm_detail::tape_of(n).workspace(a16(N) + diff_attn_detail::scratch_size(d.L));
    T *dO2 = ws, *scratch = ws + a16(N);
    // sub_scaled's: dO₁ = dout, dO₂ = −λ·dout, dλ = −Σ dout ⊙ o₂ (in double, in order)
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) dO2[i] = T(0) - l * g[i];
    });
    if (lam.grad) {
        double s = 0;
        for (int64_t i = 0; i < N; ++i) s += double(g[i]) * double(o2[i]);
        lam.grad[0] -= T(s);
    }
    // branch 2, then branch 1 (the chain's reverse order: v's gradient sums in the same order)
    const int64_t nt = max_threads();
    causal_attention_backward_raw(d, q.data + W, k.data + W, v.data, dO2, q.grad ? q.grad + W : nullptr,
                                  k.grad ? k.grad + W : nullptr, v.grad, n.saved[0] + BHL, scratch, nt, scale, T(0), 0);
    causal_attention_backward_raw(d, q.data, k.data, v.data, g, q.grad, k.grad, v.grad, n.saved[0], scratch, nt, scale,
                                  T(0), 0);
}

// q, k: [B, L, 2·H·d] (branch 1 in the first H·d columns), v: [B, L, H·dv], lam: [1] -> [B, L, H·dv].
template <class T>
Tensor<T> differential_attention(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                 const Tensor<T>& lam, int64_t n_heads, double scale) {
    using prenorm_detail::a16;
    diff_attn_detail::check(q, k, v, lam, n_heads);
    const detail::AttnDims d = diff_attn_detail::branch_dims(q, v, n_heads);
    const int64_t W = q.cols() / 2, N = v.numel(), BHL = d.B * d.H * d.L;
    const bool rec = tape.recording({q, k, v, lam});
    Tensor<T> out = tape.make(v.shape, rec);
    // lse and o₂ stay on the tape for the backward; without one they live in the workspace too
    T* ws = tape.workspace(diff_attn_detail::scratch_size(d.L) + (rec ? 0 : a16(2 * BHL) + a16(N)));
    T* scratch = ws;
    T* lse = rec ? tape.scratch(2 * BHL) : ws + diff_attn_detail::scratch_size(d.L);
    T* o2 = rec ? tape.scratch(N) : lse + a16(2 * BHL);
    const T sc = T(scale), l = lam.data[0];
    causal_attention_forward_raw(d, q.data, k.data, v.data, out.data, lse, scratch, sc, 0.0, 0);  // o₁ into out
    causal_attention_forward_raw(d, q.data + W, k.data + W, v.data, o2, lse + BHL, scratch, sc, 0.0, 0);
    parallel_for(N, N, [&](int64_t b_, int64_t e_) {
        for (int64_t i = b_; i < e_; ++i) out.data[i] = out.data[i] - l * o2[i];
    });
    if (out.grad) {
        auto& n = tape.record(&differential_attention_backward<T>);
        n.in[0] = q, n.in[1] = k, n.in[2] = v, n.in[3] = lam;
        n.out = out;
        n.saved[0] = lse, n.saved[1] = o2;
        n.i[0] = n_heads;
        n.f[0] = scale;
        n.ctx = &tape;
    }
    return out;
}

// The same as op-by-op ops (tests, bench --unfused): each branch's q and k halves copied out by slice_cols.
template <class T>
Tensor<T> differential_attention_chain(Tape<T>& tape, const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                       const Tensor<T>& lam, int64_t n_heads, double scale) {
    diff_attn_detail::check(q, k, v, lam, n_heads);
    const int64_t W = q.cols() / 2;
    Tensor<T> o1 = causal_attention(tape, slice_cols(tape, q, 0, W), slice_cols(tape, k, 0, W), v, n_heads, scale);
    Tensor<T> o2 = causal_attention(tape, slice_cols(tape, q, W, 2 * W), slice_cols(tape, k, W, 2 * W), v, n_heads, scale);
    return sub_scaled(tape, o1, o2, lam);
}

// Cached generation: one query row q = [q₁ | q₂] against the branch caches K1, K2 ([len, H·dk] each)
// and the shared V ([len, H·dv]); o = o₁ − λ o₂. s is scratch of ≥ len, o2 scratch of H·dv.
inline void attend_cached_differential(const float* q, const float* K1, const float* K2, const float* V, int64_t len,
                                       int64_t H, int64_t dk, int64_t dv, float scale, float lam, float* s, float* o2,
                                       float* o) {
    attend_cached(q, K1, V, len, H, dk, dv, scale, s, o);
    attend_cached(q + H * dk, K2, V, len, H, dk, dv, scale, s, o2);
    for (int64_t c = 0; c < H * dv; ++c) o[c] -= lam * o2[c];
}

}  // namespace flashlm::ops
