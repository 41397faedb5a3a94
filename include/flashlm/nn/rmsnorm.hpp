#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/rmsnorm.hpp"

namespace flashlm::nn {

// RMSNorm with gain named `scale` (v4 upstream name; the v7 scripts call it `weight`), initialised to ones.
template <class T>
struct RMSNorm {
    ParamStore<T>* ps = nullptr;
    std::size_t scale = 0;
    double eps = 1e-6;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t dim, double e = 1e-6,
                 const std::string& gain_name = "scale", bool decay = true) {
        ps = &p, eps = e;
        scale = p.add(join(prefix, gain_name), Shape{dim}, decay);
    }
    void init(Rng&) { init_constant(ps->get(scale), T(1)); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return ops::rmsnorm(tape, x, ps->get(scale), eps);
    }
};

}  // namespace flashlm::nn
