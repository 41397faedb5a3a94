#pragma once
// BitLinear with the Q3 median-threshold quantizer (FlashLM v6.1 "SUPERNOVA II", VARIANTS.md §2):
//   α = median|W| over the whole tensor (torch's lower median); W̃ = sign(W)·[|W| > α] — no rescale, the
//   layer multiplies by raw ±1 (about half the weights are 0 by construction);  y = x W̃ᵀ.
// Backward: dx = dy W̃ and the clipped straight-through estimator of upstream's TernaryQuantize,
//   dW = (dyᵀ x) ⊙ [|W| < 1.5α]
// (weights far outside the threshold get no gradient). α is kept in the node; W is unchanged until the
// optimizer step, so the mask is recomputed from it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/ops/linear.hpp"
#include "flashlm/ops/ternary_linear.hpp"

namespace flashlm::ops {

// Lower median of |w| (torch.median of an even count returns the smaller middle value). work: n scratch.
template <class T>
T median_abs(const T* w, int64_t n, T* work) {
    for (int64_t i = 0; i < n; ++i) work[i] = std::abs(w[i]);
    T* mid = work + (n - 1) / 2;
    std::nth_element(work, mid, work + n);
    return *mid;
}

// The same for float by a two-pass radix select on the bit patterns of |w| (monotone in the value for
// non-negative floats): a histogram of the top 16 bits finds the bucket holding rank (n−1)/2, a second
// of the low 15 bits inside that bucket the exact value. Every training step quantises every ternary
// matrix, and this is ~10× faster than nth_element on a copy (VARIANTS.md's v6.1 has 39.7M such weights).
// Each thread counts its share of w into its own histogram and the counts are summed: the serial select
// was ~3 % of a 1-thread supernova2 step (perf), with the second core idle in a 2-thread one.
inline float median_abs(const float* w, int64_t n, float*) {
    constexpr size_t k_hi_buckets = size_t(1) << 16, k_lo_buckets = size_t(1) << 15;
    // The calling thread's histograms, one per worker, kept between calls (256 KB each).
    thread_local std::vector<std::vector<uint32_t>> own;
    if (own.size() < size_t(max_threads())) own.resize(size_t(max_threads()));
    std::vector<std::vector<uint32_t>>& hists = own;  // a name for the workers: `own` would be each one's own
    auto key = [w](int64_t i) {
        uint32_t b;
        std::memcpy(&b, w + i, sizeof b);
        return b & 0x7fffffffu;
    };
    // Counts of f(i)'s buckets (f returns `buckets` or more to skip i), summed over the threads into hists[0].
    auto count = [&](size_t buckets, auto&& f) {
        // Each worker zeroes and the sum reads whole histograms: threads pay off from ~4 per bucket.
        const int used = parallel_for_tid(n, n >= int64_t(4 * k_hi_buckets) ? n : 0, [&](int64_t b, int64_t e, int t) {
            std::vector<uint32_t>& h = hists[size_t(t)];
            h.assign(buckets, 0u);
            for (int64_t i = b; i < e; ++i)
                if (const uint32_t j = f(i); j < buckets) ++h[j];
        });
        uint32_t* h0 = hists[0].data();
        for (int t = 1; t < used; ++t) {
            const uint32_t* ht = hists[size_t(t)].data();
            for (size_t j = 0; j < buckets; ++j) h0[j] += ht[j];
        }
        return h0;
    };
    const int64_t k = (n - 1) / 2;
    const uint32_t* hist = count(k_hi_buckets, [&](int64_t i) { return key(i) >> 15; });
    uint32_t hi = 0;
    int64_t below = 0;
    while (below + int64_t(hist[hi]) <= k) below += hist[hi++];
    hist = count(k_lo_buckets, [&](int64_t i) {
        const uint32_t b = key(i);
        return (b >> 15) == hi ? b & 0x7fffu : uint32_t(k_hi_buckets);
    });
    uint32_t lo = 0;
    while (below + int64_t(hist[lo]) <= k) below += hist[lo++];
    const uint32_t bits = (hi << 15) | lo;
    float r;
    std::memcpy(&r, &bits, sizeof r);
    return r;
}

// One weight's Q3 code at threshold a: sign(w)·[|w| > a].
template <class T>
T q3(T w, T a) {
    return w > a ? T(1) : (w < -a ? T(-1) : T(0));
}

// Q3 of n weights into out (values in {-1, 0, 1}); work: n scratch (may be out). Returns α.
template <class T>
T quantize_median(const T* w, T* out, int64_t n, T* work) {
    const T a = median_abs(w, n, work);
    parallel_for(n, 2 * n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = q3(w[i], a);
    });
    return a;
}
template <class T>
T quantize_median(const T* w, T* out, int64_t n) {
    return quantize_median(w, out, n, out);
}

// Fused callers (ops/parallel_branch_residual.hpp, ops/temporal_mix_residual.hpp) lay several weights
// side by side: Q3 of W ([rows, cols]) into columns [c0, c0 + cols) of out (row stride ld). Returns α.
// work: numel scratch (double's median sorts a copy; float's radix select needs none).
template <class T>
T quantize_median_into(const Tensor<T>& W, T* out, int64_t ld, int64_t c0, T* work) {
    const int64_t rows = W.dim(0), cols = W.dim(1);
    const T a = median_abs(W.data, W.numel(), work);
    parallel_for(rows, 2 * rows * cols, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* w = W.data + r * cols;
            T* o = out + r * ld + c0;
            for (int64_t c = 0; c < cols; ++c) o[c] = q3(w[c], a);
        }
    });
    return a;
}

// dW += G where |W| < 1.5α (the clipped STE); W and dW are [rows, cols], G's row stride is ld.
template <class T>
void median_clipped_add(const T* W, T* dW, int64_t rows, int64_t cols, T alpha, const T* G, int64_t ld) {
    if (!dW) return;
    const T lim = T(1.5) * alpha;
    parallel_for(rows, 3 * rows * cols, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const T* w = W + r * cols;
            const T* g = G + r * ld;
            T* d = dW + r * cols;
            for (int64_t c = 0; c < cols; ++c)
                if (std::abs(w[c]) < lim) d[c] += g[c];
        }
    });
}
// The same into W's gradient from columns [c0, c0 + cols) of G.
template <class T>
void median_clipped_add(const Tensor<T>& W, T alpha, const T* G, int64_t ld, int64_t c0) {
    median_clipped_add(W.data, W.grad, W.dim(0), W.dim(1), alpha, G + c0, ld);
}

// The backward on raw buffers, shared with fused callers (ops/moe_expert.hpp): x [M, K], W [N, K],
// dy [M, N]; dx (may be null) += dy W̃ (= with dx_accumulate false); dW (may be null) += the clipped
// dyᵀx. wq holds W̃ on entry and is overwritten.
template <class T>
void bitlinear_median_backward_raw(const T* x, T* dx, const T* W, T* dW, T* wq, T alpha, const T* dy, int64_t M,
                                   int64_t N, int64_t K, bool dx_accumulate = true) {
    if (dx) ternary_linear_dx(M, K, N, dy, wq, dx, dx_accumulate);
    if (!dW) return;
    // W̃ is no longer needed: its buffer receives the unclipped dyᵀx.
    kernels::gemm_tn(N, K, M, dy, x, wq, false);
    median_clipped_add(W, dW, N, K, alpha, wq, K);
}

template <class T>
void bitlinear_median_backward(Node<T>& n) {
    const Tensor<T>& x = n.in[0];
    const Tensor<T>& W = n.in[1];
    bitlinear_median_backward_raw(x.data, x.grad, W.data, W.grad, n.saved[0], T(n.f[0]), n.out.grad, x.rows(), W.dim(0),
                                  W.dim(1));
}

template <class T>
Tensor<T> bitlinear_median(Tape<T>& tape, const Tensor<T>& x, const Tensor<T>& W) {
    FLASHLM_CHECK(W.shape.rank == 2 && W.dim(1) == x.cols(),
                  "bitlinear_median: input " + x.shape.str() + " does not match weight " + W.shape.str());
    const int64_t N = W.dim(0), K = W.dim(1);
    T* wq = tape.scratch(N * K);
    const T alpha = quantize_median(W.data, wq, N * K);
    Tensor<T> y = tape.make(with_last_dim(x.shape, N), tape.recording({x, W}));
    ternary_linear_forward(x.rows(), N, K, x.data, wq, y.data);  // int8 under --quant int8
    if (y.grad) {
        auto& n = tape.record(&bitlinear_median_backward<T>);
        n.in[0] = x;
        n.in[1] = W;
        n.out = y;
        n.saved[0] = wq;
        n.f[0] = double(alpha);
    }
    return y;
}

}  // namespace flashlm::ops
