#pragma once
// Shared by the fused-sublayer tests (tests/variants/bolt_fused.cpp, cortex_fused.cpp): three AdamW steps
// of a model on fixed ids and targets, recording each step's loss, every gradient and the tape arena
// after the forward, so a fused model can be compared with its op-by-op chain.
#include <cstdint>
#include <cstring>
#include <vector>

#include "flashlm/flashlm.hpp"

namespace flashlm::testing {

struct StepsRun {
    std::vector<float> losses, grads;  // grads: the flat gradient buffer of each step, one after the other
    std::size_t arena_after_forward = 0;
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
        r.losses.push_back(loss.data[0]);
        const float* g = model.params().grads();
        r.grads.insert(r.grads.end(), g, g + model.params().flat_size());
        optim::clip_grad_norm(model.params(), 1.0);
        adam.step(1e-2);
    }
    return r;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace flashlm::testing
