#pragma once
// AdamW (decoupled weight decay, Loshchilov & Hutter; PyTorch's torch.optim.AdamW update order) over the
// flat parameter buffer: one fused loop per parameter range, the range giving the parameter group
// (weight decay on or off).
#include <cmath>
#include <cstdint>

#include "flashlm/core/param_store.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"

namespace flashlm::optim {

struct AdamWConfig {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.01;
};

template <class T>
class AdamW {
public:
    AdamW(ParamStore<T>& params, AdamWConfig cfg) : params_(params), cfg_(cfg) {
        m_.resize(params.flat_size());
        v_.resize(params.flat_size());
    }
    void step(double lr) {
        ++t_;
        const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_));
        const double bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
        const T b1 = T(cfg_.beta1), b2 = T(cfg_.beta2), eps = T(cfg_.eps);
        const T step_size = T(lr / bc1), inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2));
        T* p = params_.values();
        const T* g = params_.grads();
        T* m = m_.data();
        T* v = v_.data();
        for (const auto& info : params_.infos()) {
            const int64_t o = int64_t(info.offset), n = info.shape.numel();
            const T decay = T(1.0 - lr * (info.decay ? cfg_.weight_decay : 0.0));
            parallel_for(n, 8 * n, [&](int64_t b, int64_t e) {
                for (int64_t i = o + b; i < o + e; ++i) {
                    p[i] *= decay;
                    m[i] = b1 * m[i] + (T(1) - b1) * g[i];
                    v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
                    p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
                }
            });
        }
    }
    int64_t steps() const { return t_; }
    void set_steps(int64_t t) { t_ = t; }
    Storage<T>& exp_avg() { return m_; }
    Storage<T>& exp_avg_sq() { return v_; }
    const AdamWConfig& config() const { return cfg_; }

private:
    ParamStore<T>& params_;
    AdamWConfig cfg_;
    Storage<T> m_, v_;
    int64_t t_ = 0;
};

}  // namespace flashlm::optim
