#pragma once
// Next-token sampling: temperature, top-k, top-p (nucleus), multinomial draw; greedy at temperature 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
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
        idx_.resize(size_t(V));
        std::iota(idx_.begin(), idx_.end(), 0);
        int64_t k = (o.top_k > 0 && o.top_k < V) ? o.top_k : V;
        auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
        std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), by_logit);
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
    std::vector<int32_t> idx_;
    std::vector<double> p_;
    std::vector<float> pen_;
    std::vector<char> seen_;
};

}  // namespace flashlm::train
