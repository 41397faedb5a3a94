#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/bitlinear.hpp"

namespace flashlm::nn {

// Ternary linear layer (Q1 absmean quantizer, identity STE), weight [out, in], no bias.
template <class T>
struct BitLinear {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
    }
    void init(Rng& rng) { init_kaiming_fan_out(ps->get(weight), rng); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return ops::bitlinear(tape, x, w()); }
};

}  // namespace flashlm::nn
