#pragma once
// SGD with momentum (PyTorch's torch.optim.SGD without dampening or Nesterov, and the v6.1 C engine's
// sgd_momentum, VARIANTS.md §8.4): g += wd·p; v = μ·v + g; p −= lr·v.
// The velocity lives in a buffer the caller owns: the trainer passes AdamW's first-moment buffer, so
// checkpoints and resume carry it without a new checkpoint field.
#include <cstdint>

#include "flashlm/core/param_store.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"

namespace flashlm::optim {

struct SgdConfig {
    double momentum = 0.9, weight_decay = 0;
};

template <class T>
class SgdMomentum {
public:
    SgdMomentum(ParamStore<T>& params, Storage<T>& velocity, SgdConfig cfg) : params_(params), v_(velocity), cfg_(cfg) {}
    void step(double lr) {
        T* p = params_.values();
        const T* g = params_.grads();
        T* v = v_.data();
        const T mu = T(cfg_.momentum), step = T(lr);
        for (const auto& info : params_.infos()) {
            const int64_t o = int64_t(info.offset), n = info.shape.numel();
            const T wd = T(info.decay ? cfg_.weight_decay : 0.0);
            parallel_for(n, 4 * n, [&](int64_t b, int64_t e) {
                for (int64_t i = o + b; i < o + e; ++i) {
                    v[i] = mu * v[i] + (g[i] + wd * p[i]);
                    p[i] -= step * v[i];
                }
            });
        }
    }
    const SgdConfig& config() const { return cfg_; }

private:
    ParamStore<T>& params_;
    Storage<T>& v_;
    SgdConfig cfg_;
};

}  // namespace flashlm::optim
