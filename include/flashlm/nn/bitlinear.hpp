#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/nn/rmsnorm.hpp"
#include "flashlm/ops/bitlinear.hpp"
#include "flashlm/ops/bitlinear_blockwise.hpp"
#include "flashlm/ops/bitlinear_threshold.hpp"

namespace flashlm::nn {

// Which ternary quantizer a BitLinear applies (VARIANTS.md §2): Q1 per-tensor absmean (v4), Q5
// per-256-block absmean (altpav fork) or Q0 unscaled ±1 at threshold mean|W| (v3).
enum class WeightQuant { absmean, blockwise, threshold };

struct BitLinearOptions {
    WeightQuant quant = WeightQuant::absmean;
    // altpav: the layer normalises its own input, BitLinear(x) = Linear_Q(RMSNorm_in(x)), with a learnable
    // RMSNorm (eps 1e-6) named `<prefix>.norm.scale`.
    bool inner_norm = false;
};

// Ternary linear layer (identity STE), weight [out, in], no bias.
template <class T>
struct BitLinear {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;
    BitLinearOptions opt;
    RMSNorm<T> norm;  // declared only with opt.inner_norm

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out, BitLinearOptions o = {}) {
        ps = &p, opt = o;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
        if (opt.inner_norm) norm.declare(p, join(prefix, "norm"), in);
    }
    void init(Rng& rng) {
        init_kaiming_fan_out(ps->get(weight), rng);
        if (opt.inner_norm) norm.init(rng);
    }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        const Tensor<T> h = opt.inner_norm ? norm(tape, x) : x;
        switch (opt.quant) {
            case WeightQuant::blockwise: return ops::bitlinear_blockwise(tape, h, w());
            case WeightQuant::threshold: return ops::bitlinear_threshold(tape, h, w());
            case WeightQuant::absmean: break;
        }
        return ops::bitlinear(tape, h, w());
    }
};

}  // namespace flashlm::nn
