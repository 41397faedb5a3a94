#pragma once
// Shared by the cached-generation tests: a variant's Generator fed one token at a time must give the
// logits of a full forward over the window the recompute loop would use, and its int8 twin must stay
// close to (but not equal) the exact path.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "flashlm/autograd/tape.hpp"
#include "flashlm/train/generator.hpp"

namespace flashlm::testing {

struct WindowDiff {
    double worst = 0, max_logit = 0;
};

// Steps `gen` through `ids` and compares each step's logits with model.logits over the last
// min(t + 1, seq_len) tokens, at every `stride`-th step and the last (full forwards are O(T)).
template <class Model>
WindowDiff cached_vs_window(Model& model, Generator& gen, const std::vector<int32_t>& ids, int64_t seq_len,
                            size_t stride = 1) {
    const int64_t V = model.vocab_size();
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    WindowDiff d;
    for (size_t t = 0; t < ids.size(); ++t) {
        const float* z = gen.step(ids[t]);
        if ((t + 1) % stride != 0 && t + 1 != ids.size()) continue;
        const int64_t L = std::min<int64_t>(int64_t(t) + 1, seq_len);
        tape.reset();
        Tensor<float> full = model.logits(tape, ids.data() + t + 1 - size_t(L), 1, L);
        const float* zf = full.data + (L - 1) * V;
        for (int64_t v = 0; v < V; ++v) {
            d.worst = std::max(d.worst, double(std::abs(z[v] - zf[v])));
            d.max_logit = std::max(d.max_logit, double(std::abs(zf[v])));
        }
    }
    return d;
}

// Worst |int8 - exact| logit difference over the first n tokens of ids, both generators from the start.
inline double int8_vs_exact(Generator& exact, Generator& int8, const std::vector<int32_t>& ids, size_t n) {
    exact.reset(), int8.reset();
    const int64_t V = exact.vocab_size();
    double diff = 0;
    for (size_t t = 0; t < n; ++t) {
        const float* ze = exact.step(ids[t]);
        std::vector<float> e(ze, ze + V);
        const float* zi = int8.step(ids[t]);
        for (int64_t v = 0; v < V; ++v) diff = std::max(diff, double(std::abs(zi[v] - e[size_t(v)])));
    }
    return diff;
}

}  // namespace flashlm::testing
