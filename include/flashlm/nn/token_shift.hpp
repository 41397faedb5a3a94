#pragma once
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/token_shift.hpp"

namespace flashlm::nn {

// Learned token shift y_t = σ(m)⊙u_t + (1−σ(m))⊙u_{t−1}; m is registered under its full key (upstream
// stores it directly on the block: `blocks.{i}.mix1`), initialised to 0 (an even mix).
template <class T>
struct TokenShift {
    ParamStore<T>* ps = nullptr;
    std::size_t mix = 0;

    void declare(ParamStore<T>& p, const std::string& name, int64_t dim) {
        ps = &p;
        mix = p.add(name, Shape{dim});
    }
    void init(Rng&) { init_constant(ps->get(mix), T(0)); }
    Tensor<T> m() const { return ps->get(mix); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& u) const { return ops::token_shift(tape, u, ps->get(mix)); }
};

// One step of the shift for cached generation: y = s⊙u + (1−s)⊙prev with s = σ(m) precomputed; then
// prev = u.
inline void token_shift_step(const float* u, const float* s, float* prev, float* y, int64_t D) {
    for (int64_t c = 0; c < D; ++c) {
        y[c] = s[c] * u[c] + (1.0f - s[c]) * prev[c];
        prev[c] = u[c];
    }
}

}  // namespace flashlm::nn
