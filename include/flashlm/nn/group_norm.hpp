#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/group_norm.hpp"

namespace flashlm::nn {

// torch LayerNorm / GroupNorm (affine, `weight` ones and `bias` zeros). groups = 1 with per-position
// statistics is nn.LayerNorm over the last dimension; whole_sequence = true takes each group's
// statistics over every position of the sequence (torch GroupNorm on (B, C, T), FlashLM v5's output norm).
template <class T>
struct GroupNorm {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0, bias = 0;
    int64_t groups = 1;
    double eps = 1e-5;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t channels, int64_t g = 1, double e = 1e-5) {
        ps = &p, groups = g, eps = e;
        weight = p.add(join(prefix, "weight"), Shape{channels});
        bias = p.add(join(prefix, "bias"), Shape{channels});
    }
    void init(Rng&) {
        init_constant(ps->get(weight), T(1));
        init_constant(ps->get(bias), T(0));
    }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> b() const { return ps->get(bias); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x, bool whole_sequence = false) const {
        return ops::group_norm(tape, x, ps->get(weight), ps->get(bias), groups, eps, whole_sequence);
    }
};

// One position, float: y = norm(x) per group of channels, for cached generation.
inline void group_norm_vec(const float* x, const float* w, const float* b, float* y, int64_t C, int64_t groups,
                           float eps) {
    const int64_t Cg = C / groups;
    for (int64_t g = 0; g < groups; ++g) {
        const float* xg = x + g * Cg;
        double s = 0;
        for (int64_t c = 0; c < Cg; ++c) s += xg[c];
        const double m = s / double(Cg);
        double q = 0;
        for (int64_t c = 0; c < Cg; ++c) q += (xg[c] - m) * (xg[c] - m);
        const float mt = float(m), r = float(1.0 / std::sqrt(q / double(Cg) + eps));
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) y[c] = (x[c] - mt) * r * w[c] + b[c];
    }
}

}  // namespace flashlm::nn
