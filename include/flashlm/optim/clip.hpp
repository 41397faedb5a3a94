#pragma once
// Global-norm gradient clipping over the flat gradient buffer (torch.nn.utils.clip_grad_norm_:
// scale = max_norm / (norm + 1e-6) when norm exceeds max_norm). Returns the pre-clip norm, which the
// trainer also uses to detect a non-finite step.
#include <cmath>

#include "flashlm/core/param_store.hpp"
#include "flashlm/core/parallel.hpp"

namespace flashlm::optim {

template <class T>
double grad_norm(const ParamStore<T>& params) {
    const T* g = params.grads();
    const int64_t n = int64_t(params.flat_size());
    // Eight partial sums per thread's range: one serial chain of double adds waited out the add latency
    // per element (153 → 55 ms for 43M gradients on one thread, docs/training-speed.md). The order already depends on
    // the thread count through parallel_sum; the clip factor, rounded to float, does not change with it
    // but for ties at the last bit.
    return std::sqrt(parallel_sum(n, n, [&](int64_t b, int64_t e) {
        double s[8] = {};
        int64_t i = b;
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; ++j) s[j] += double(g[i + j]) * double(g[i + j]);
        for (; i < e; ++i) s[0] += double(g[i]) * double(g[i]);
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }));
}

template <class T>
double clip_grad_norm(ParamStore<T>& params, double max_norm) {
    const double norm = grad_norm(params);
    if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
        const T scale = T(max_norm / (norm + 1e-6));
        T* g = params.grads();
        const int64_t n = int64_t(params.flat_size());
        parallel_for(n, n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) g[i] *= scale;
        });
    }
    return norm;
}

}  // namespace flashlm::optim
