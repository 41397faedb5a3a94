#pragma once
// Next-token sampling: temperature, top-k, top-p (nucleus), multinomial draw; greedy at temperature 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "flashlm/core/rng.hpp"

namespace flashlm::train {

// Index of the first largest value, as std::max_element (which walks 10000 logits one compare and branch
// at a time, ~10 µs per token, as long as the rest of an int8 Bolt step). For float: lane-wise maxima
// in SIMD batches, then the first batch holding that value. Same index as std::max_element for inputs
// without NaN (a NaN anywhere gives an unspecified index).
template <class T>
int64_t argmax(const T* z, int64_t n) {
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON64
    if constexpr (std::is_same_v<T, float>) {
        using B = xsimd::batch<float>;
        constexpr int64_t L = int64_t(B::size);
        if (n >= 2 * L) {
            const int64_t nv = n / L * L;
            B m = B::load_unaligned(z);
            for (int64_t i = L; i < nv; i += L) {
                // select, not xsimd::max: g++ 12 warns (-Wmaybe-uninitialized) inside its own maxps intrinsic.
                const B v = B::load_unaligned(z + i);
                m = xsimd::select(m < v, v, m);
            }
            float lanes[L];
            m.store_unaligned(lanes);
            float mx = lanes[0];
            for (int64_t l = 1; l < L; ++l) mx = std::max(mx, lanes[l]);
            for (int64_t i = nv; i < n; ++i) mx = std::max(mx, z[i]);
            const B mb(mx);
            for (int64_t i = 0; i < nv; i += L)
                if (xsimd::any(B::load_unaligned(z + i) == mb))
                    for (int64_t l = 0; l < L; ++l)
                        if (z[i + l] == mx) return i + l;
            for (int64_t i = nv; i < n; ++i)
                if (z[i] == mx) return i;
        }
    }
#endif
    return std::max_element(z, z + n) - z;
}

// The first k of a partial_sort of the indices [0, V) by (logit descending, index ascending), into
// out[0, k) (a strict total order, so the result is unique). A partial_sort over all 10000 indices of
// a Bolt vocabulary took ~14 µs per token at top-k 50, a sixth of an int8 Bolt step. Here (~3 µs),
// for float logits and k ≤ V / 16, it runs over the candidates at or above a lower bound of the k-th
// largest logit: split the logits into disjoint groups (lane l of 16 consecutive SIMD batches), take
// each group's maximum; the k-th largest of those maxima is ≤ the k-th largest logit (k distinct logits
// reach it), so every member of the top k is a candidate. About k candidates remain on Gaussian-like
// logits; the partial_sort over them gives the same k indices in the same order.
template <class T>
void top_k_indices(const T* z, int64_t V, int64_t k, std::vector<int32_t>& out, std::vector<float>& maxima,
                   std::vector<int32_t>& cand) {
    const auto by_logit = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON64
    if constexpr (std::is_same_v<T, float>) {
        using B = xsimd::batch<float>;
        constexpr int64_t L = int64_t(B::size), R = 16;
        const int64_t groups = V / (L * R), covered = groups * L * R;
        if (k >= 1 && k * 16 <= V && groups * L + (V - covered) >= k) {
            maxima.resize(size_t(groups * L + (V - covered)));
            for (int64_t g = 0; g < groups; ++g) {
                const float* p = z + g * L * R;
                B m = B::load_unaligned(p);
                for (int64_t r = 1; r < R; ++r) {
                    const B v = B::load_unaligned(p + r * L);
                    m = xsimd::select(m < v, v, m);
                }
                m.store_unaligned(maxima.data() + g * L);
            }
            std::copy(z + covered, z + V, maxima.begin() + groups * L);  // the tail: groups of one
            std::nth_element(maxima.begin(), maxima.begin() + (k - 1), maxima.end(), std::greater<float>());
            const float tau = maxima[size_t(k - 1)];
            cand.clear();
            const B tb(tau);
            for (int64_t i = 0; i < covered; i += L)
                if (xsimd::any(B::load_unaligned(z + i) >= tb))
                    for (int64_t l = 0; l < L; ++l)
                        if (z[i + l] >= tau) cand.push_back(int32_t(i + l));
            for (int64_t i = covered; i < V; ++i)
                if (z[i] >= tau) cand.push_back(int32_t(i));
            if (int64_t(cand.size()) >= k) {  // always, unless NaN logits broke the bound
                std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), by_logit);
                out.assign(cand.begin(), cand.begin() + k);
                return;
            }
        }
    }
#endif
    out.resize(size_t(V));
    std::iota(out.begin(), out.end(), 0);
    std::partial_sort(out.begin(), out.begin() + k, out.end(), by_logit);
    out.resize(size_t(k));
}

struct SamplingOptions {
    double temperature = 0.8;
    int64_t top_k = 50;                // 0 = off
    double top_p = 1.0;                // 1 = off
    double repetition_penalty = 1.0;   // 1 = off; >1 divides positive (multiplies negative) logits of seen tokens
};

class Sampler {
public:
    // `history`: tokens already in the context, for the repetition penalty (CTRL's divide-logit form).
    template <class T>
    int32_t sample(const T* logits_in, int64_t V, const SamplingOptions& o, Rng& rng,
                   const std::vector<int32_t>* history = nullptr) {
        const T* logits = logits_in;
        if (o.repetition_penalty != 1.0 && history && !history->empty()) {
            pen_.assign(logits_in, logits_in + V);
            seen_.assign(size_t(V), 0);
            for (int32_t t : *history)
                if (t >= 0 && t < V && !seen_[size_t(t)]) {
                    seen_[size_t(t)] = 1;
                    const double z = double(pen_[size_t(t)]);
                    pen_[size_t(t)] = float(z > 0 ? z / o.repetition_penalty : z * o.repetition_penalty);
                }
            return sample(pen_.data(), V, SamplingOptions{o.temperature, o.top_k, o.top_p, 1.0}, rng);
        }
        if (o.temperature <= 0) return int32_t(argmax(logits, V));
        const int64_t k = (o.top_k > 0 && o.top_k < V) ? o.top_k : V;
        top_k_indices(logits, V, k, idx_, maxima_, cand_);
        p_.resize(size_t(k));
        const double mx = double(logits[idx_[0]]);
        double z = 0;
        for (int64_t i = 0; i < k; ++i) z += (p_[size_t(i)] = std::exp((double(logits[idx_[size_t(i)]]) - mx) / o.temperature));
        int64_t keep = k;
        if (o.top_p < 1.0) {
            double c = 0;
            for (int64_t i = 0; i < k; ++i) {
                c += p_[size_t(i)] / z;
                if (c >= o.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        double zk = 0;
        for (int64_t i = 0; i < keep; ++i) zk += p_[size_t(i)];
        double u = rng.uniform() * zk;
        for (int64_t i = 0; i < keep; ++i) {
            u -= p_[size_t(i)];
            if (u <= 0) return idx_[size_t(i)];
        }
        return idx_[size_t(keep - 1)];
    }

private:
    std::vector<int32_t> idx_, cand_;
    std::vector<double> p_;
    std::vector<float> pen_, maxima_;
    std::vector<char> seen_;
};

}  // namespace flashlm::train
