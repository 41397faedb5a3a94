#pragma once
// Shared by the fused-sublayer tests (tests/variants/bolt_fused.cpp, cortex_fused.cpp): three AdamW steps
// of a model on fixed ids and targets, recording each step's loss, every gradient and the tape's memory
// (the arena after the forward and the activation gradients' planned peak), so a fused model can be
// compared with its op-by-op chain.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/flashlm.hpp"

namespace flashlm::testing {

struct StepsRun {
    std::vector<float> losses, grads;  // grads: the flat gradient buffer of each step, one after the other
    std::size_t arena_after_forward = 0;
    std::size_t grad_peak = 0;  // the activation gradients' planned peak (autograd/grad_plan.hpp)
    std::size_t tape_memory() const { return arena_after_forward + grad_peak; }
};

template <class Model>
StepsRun train_three_steps(Model& model, int64_t B, int64_t L, int32_t vocab) {
    optim::AdamW<float> adam(model.params(), optim::AdamWConfig{});
    Tape<float> tape;
    std::vector<int32_t> ids(size_t(B * L)), targets(size_t(B * L));
    for (int64_t i = 0; i < B * L; ++i) ids[size_t(i)] = int32_t((i * 7 + 3) % vocab), targets[size_t(i)] = int32_t((i * 11 + 1) % vocab);
    StepsRun r;
    for (int step = 0; step < 3; ++step) {
        model.params().zero_grad();
        tape.reset();
        Tensor<float> loss = model.loss(tape, ids.data(), targets.data(), B, L);
        r.arena_after_forward = tape.arena().used();
        tape.backward(loss);
        r.grad_peak = tape.grad_peak();
        r.losses.push_back(loss.data[0]);
        const float* g = model.params().grads();
        r.grads.insert(r.grads.end(), g, g + model.params().flat_size());
        optim::clip_grad_norm(model.params(), 1.0);
        adam.step(1e-2);
    }
    return r;
}

// A fused model against its chain when the sums run in another order: losses within 1e-5 relative, every
// first-step gradient (same weights on both sides) within 1e-5 of the largest, some bits actually
// different (so the bound is doing work), and more than nonzero_num/nonzero_den of the gradients nonzero.
inline void check_same_to_rounding(const StepsRun& fused, const StepsRun& chain, std::size_t nonzero_num,
                                   std::size_t nonzero_den) {
    CHECK(chain.losses[2] < chain.losses[0]);  // the steps train
    for (std::size_t i = 0; i < chain.losses.size(); ++i)
        CHECK(std::abs(fused.losses[i] - chain.losses[i]) <= 1e-5f * chain.losses[i]);
    REQUIRE(fused.grads.size() == chain.grads.size());
    const std::size_t per_step = fused.grads.size() / 3;
    double worst = 0, scale = 0;
    std::size_t differ = 0, nonzero = 0;
    for (std::size_t i = 0; i < per_step; ++i) {
        worst = std::max(worst, double(std::abs(fused.grads[i] - chain.grads[i])));
        scale = std::max(scale, double(std::abs(chain.grads[i])));
        differ += fused.grads[i] != chain.grads[i];
        nonzero += chain.grads[i] != 0;
    }
    CHECK(scale > 0);
    CHECK(nonzero > per_step * nonzero_num / nonzero_den);
    CHECK(worst <= 1e-5 * scale);
    CHECK(differ > 0);
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace flashlm::testing
