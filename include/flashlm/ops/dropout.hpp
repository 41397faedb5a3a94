#pragma once
// Inverted dropout (torch.nn.Dropout in training mode): y = x ⊙ m / (1 − p), m ~ Bernoulli(1 − p).
// The keep mask is a hash of (seed, element index), not a stored tensor: backward regenerates it, the
// same seed gives the same mask on any thread count, and a fused op (attention probabilities) can use
// the same stream for its own elements.
#include <algorithm>
#include <cstdint>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::ops {

inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// p · 2³², the threshold the top 32 hash bits are compared with.
inline uint64_t dropout_threshold(double p) { return uint64_t(p * 4294967296.0); }
inline bool dropout_keep(uint64_t seed, uint64_t index, uint64_t threshold) {
    return (mix64(seed ^ mix64(index)) >> 32) >= threshold;
}

// out[j] = keep(seed, base + j) ? scale : 0 for j < n: n consecutive mask entries as factors. A loop of
// its own so the compiler vectorises the hash (64-bit multiplies); a branch per element inside a
// numeric loop keeps that loop scalar.
template <class T>
void dropout_factors(uint64_t seed, uint64_t base, int64_t n, uint64_t threshold, T scale, T* out) {
    for (int64_t j = 0; j < n; ++j) out[j] = (mix64(seed ^ mix64(base + uint64_t(j))) >> 32) >= threshold ? scale : T(0);
}

// dst[i] = src[i] · factor(i) (or dst[i] += …) over [b, e), through stack chunks of dropout_factors: a
// keep test inside the numeric loop kept both directions scalar (2.4 % of a nova step). A dropped
// element gives src · 0 (PyTorch's x · mask): ±0, or NaN where src is not finite.
template <bool Add, class T>
void apply_dropout(uint64_t seed, uint64_t threshold, T scale, int64_t b, int64_t e, const T* src, T* dst) {
    constexpr int64_t chunk = 256;
    T f[chunk];
    for (int64_t i0 = b; i0 < e; i0 += chunk) {
        const int64_t len = std::min(chunk, e - i0);
        dropout_factors(seed, uint64_t(i0), len, threshold, scale, f);
        for (int64_t j = 0; j < len; ++j) {
            if constexpr (Add)
                dst[i0 + j] += src[i0 + j] * f[j];
            else
                dst[i0 + j] = src[i0 + j] * f[j];
        }
    }
}

template <class T>
void dropout_backward(Node<T>& n) {
    const int64_t N = n.out.numel();
    const uint64_t seed = uint64_t(n.i[0]), thr = dropout_threshold(n.f[0]);
    const T s = T(1 / (1 - n.f[0]));
    parallel_for(N, 4 * N, [&](int64_t b_, int64_t e_) { apply_dropout<true>(seed, thr, s, b_, e_, n.out.grad, n.in[0].grad); });
}

// p = 0 returns x itself (no copy, no node).
template <class T>
Tensor<T> dropout(Tape<T>& tape, const Tensor<T>& x, double p, uint64_t seed) {
    FLASHLM_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1)");
    if (p == 0) return x;
    Tensor<T> y = tape.make(x.shape, tape.recording({x}));
    const int64_t N = x.numel();
    const uint64_t thr = dropout_threshold(p);
    const T s = T(1 / (1 - p));
    parallel_for(N, 4 * N, [&](int64_t b_, int64_t e_) { apply_dropout<false>(seed, thr, s, b_, e_, x.data, y.data); });
    if (y.grad) {
        auto& n = tape.record(&dropout_backward<T>);
        n.in[0] = x;
        n.out = y;
        n.i[0] = int64_t(seed);
        n.f[0] = p;
    }
    return y;
}

}  // namespace flashlm::ops
