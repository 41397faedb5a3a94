#pragma once
// FlashLM v5 "ParallelGatedRecurrence" token mixer (VARIANTS.md §6.2), all projections BitLinear-Q1':
//   f = lb + (1−lb)·σ(W_f u + f_bias),  v = W_v u,  o = σ(W_o u)
//   h_t = f_t⊙h_{t−1} + (1−f_t)⊙v_t                       (ops::gated_recurrence)
//   y = W_proj( GroupNorm_heads(o⊙h) )
// Names: W_f, W_v, W_o, W_proj (.weight), f_bias, gn (.weight, .bias) — upstream's `rec.*` keys.
// The GroupNorm takes per-position statistics by default (causal, a per-head norm); whole_sequence
// reproduces upstream's statistics over every position of the window (VARIANTS.md §16 Q3).
#include <algorithm>

#include "flashlm/nn/bitlinear_q1p.hpp"
#include "flashlm/nn/group_norm.hpp"
#include "flashlm/ops/activation.hpp"
#include "flashlm/ops/elementwise.hpp"
#include "flashlm/ops/gated_recurrence.hpp"
#include "flashlm/ops/shift_recurrence_residual.hpp"

namespace flashlm::nn {

template <class T>
struct ParallelGatedRecurrence {
    ParamStore<T>* ps = nullptr;
    BitLinearQ1p<T> W_f, W_v, W_o, W_proj;
    std::size_t f_bias = 0;
    GroupNorm<T> gn;
    double lower_bound = 0;

    // Layer `index` of `layers`: the forget gate's lower bound rises linearly from 0 to 0.9.
    void declare(ParamStore<T>& p, const std::string& prefix, int64_t d_model, int64_t heads, int64_t d_head,
                 int64_t index, int64_t layers) {
        ps = &p;
        const int64_t inner = heads * d_head;
        W_f.declare(p, join(prefix, "W_f"), d_model, inner);
        W_v.declare(p, join(prefix, "W_v"), d_model, inner);
        W_o.declare(p, join(prefix, "W_o"), d_model, inner);
        W_proj.declare(p, join(prefix, "W_proj"), inner, d_model);
        f_bias = p.add(join(prefix, "f_bias"), Shape{inner});
        gn.declare(p, join(prefix, "gn"), inner, heads, 1e-5);
        lower_bound = 0.9 * double(index) / double(std::max<int64_t>(layers - 1, 1));
    }
    void init(Rng& rng) {
        W_f.init(rng);
        W_v.init(rng);
        W_o.init(rng);
        W_proj.init(rng);
        init_constant(ps->get(f_bias), T(0));
        gn.init(rng);
    }
    // The fused node's view (ops/shift_recurrence_residual.hpp), with the block's pre-norm and shift.
    ops::RecurrenceMixer<T> mixer(const GroupNorm<T>& norm, const Tensor<T>& mix) const {
        ops::RecurrenceMixer<T> m;
        m.norm_w = norm.w(), m.norm_b = norm.b(), m.mix = mix;
        m.W_f = W_f.w(), m.W_v = W_v.w(), m.W_o = W_o.w(), m.W_proj = W_proj.w();
        m.f_bias = ps->get(f_bias), m.gn_w = gn.w(), m.gn_b = gn.b();
        m.lower_bound = lower_bound, m.norm_eps = norm.eps, m.gn_eps = gn.eps, m.heads = gn.groups;
        return m;
    }
    // u: [B, T, d_model] -> [B, T, d_model]
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& u, bool whole_sequence_norm) const {
        Tensor<T> h = ops::gated_recurrence(tape, W_f(tape, u), ps->get(f_bias), W_v(tape, u), lower_bound);
        Tensor<T> y = ops::mul(tape, ops::sigmoid(tape, W_o(tape, u)), h);
        return W_proj(tape, gn(tape, y, whole_sequence_norm));
    }
};

}  // namespace flashlm::nn
