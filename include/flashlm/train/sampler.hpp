#pragma once
// Next-token sampling: temperature, top-k, top-p (nucleus), multinomial draw; greedy at temperature 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "flashlm/core/rng.hpp"

namespace flashlm::train {

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
        if (o.temperature <= 0) return int32_t(std::max_element(logits, logits + V) - logits);
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
