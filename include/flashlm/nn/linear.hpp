#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/linear.hpp"

namespace flashlm::nn {

// Float linear layer y = x Wᵀ, weight [out, in] named `weight`, no bias; kaiming-normal fan-out init
// (the CORTEX scripts' nn.init.kaiming_normal_(w, mode='fan_out')) unless a normal std is given.
template <class T>
struct Linear {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
    }
    void init(Rng& rng) { init_kaiming_fan_out(ps->get(weight), rng); }
    void init_normal_std(Rng& rng, double std) { init_normal(ps->get(weight), rng, std); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return ops::linear(tape, x, w()); }
};

}  // namespace flashlm::nn
