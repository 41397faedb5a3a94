#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/layernorm.hpp"

namespace flashlm::nn {

// torch.nn.LayerNorm(dim): `weight` (ones) and `bias` (zeros), eps 1e-5 by default.
template <class T>
struct LayerNorm {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0, bias = 0;
    double eps = 1e-5;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t dim, double e = 1e-5) {
        ps = &p, eps = e;
        weight = p.add(join(prefix, "weight"), Shape{dim});
        bias = p.add(join(prefix, "bias"), Shape{dim});
    }
    void init(Rng&) {
        init_constant(ps->get(weight), T(1));
        init_constant(ps->get(bias), T(0));
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return ops::layernorm(tape, x, ps->get(weight), ps->get(bias), eps);
    }
};

}  // namespace flashlm::nn
