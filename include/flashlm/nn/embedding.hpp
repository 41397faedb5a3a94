#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/embedding.hpp"

namespace flashlm::nn {

// Token embedding table [V, D], N(0, 0.02) init; also serves as the tied output head.
template <class T>
struct Embedding {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;
    int64_t vocab = 0, dim = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t v, int64_t d) {
        ps = &p, vocab = v, dim = d;
        weight = p.add(join(prefix, "weight"), Shape{v, d});
    }
    void init(Rng& rng, double std = 0.02) { init_normal(ps->get(weight), rng, std); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const int32_t* ids, int64_t M) const {
        return ops::embedding(tape, w(), ids, M);
    }
};

}  // namespace flashlm::nn
