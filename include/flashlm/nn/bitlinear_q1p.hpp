#pragma once
#include <vector>

#include "flashlm/kernels/ternary_pack.hpp"
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/bitlinear_q1p.hpp"

namespace flashlm::nn {

// Ternary linear layer with the Q1' quantizer (FlashLM v5), weight [out, in], no bias.
template <class T>
struct BitLinearQ1p {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
    }
    void init(Rng& rng) { init_kaiming_fan_out(ps->get(weight), rng); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return ops::bitlinear_q1p(tape, x, w()); }
};

// Packs a weight with the Q1' codes and scale (the packed kernels take any codes and one scale).
inline kernels::PackedTernary pack_ternary_q1p(const Tensor<float>& w) {
    std::vector<int8_t> codes(size_t(w.numel()));
    const float alpha = ops::quantize_absmean_q1p<float>(w.data, nullptr, w.numel(), codes.data());
    return kernels::pack_ternary_codes(codes.data(), w.dim(0), w.dim(1), alpha);
}

}  // namespace flashlm::nn
