#include <doctest/doctest.h>

#include "examples/bolt.hpp"

using namespace flashlm;

TEST_CASE("bolt parameter counts match VARIANTS.md") {
    examples::Bolt<float> small("bolt", examples::BoltConfig::small());
    CHECK(small.params().count() == 4364736);
    examples::Bolt<float> large("bolt-large", examples::BoltConfig::large());
    CHECK(large.params().count() == 16847232);
}

TEST_CASE("cached Bolt generation equals a full recompute over the window for 300 tokens") {
    // seq_len 64 < 300 tokens: the recompute crops to the last 64 tokens, the cached path never crops;
    // both agree because a token sees only the last n_blocks·(k-1)+1 = 15 tokens.
    examples::BoltConfig c{300, 48, 2, 8, 96, 64};
    examples::Bolt<float> model("bolt", c);
    Rng rng(11);
    model.init(rng);
    std::vector<int32_t> ids(300);
    for (auto& t : ids) t = int32_t(rng.below(300));
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    double worst = 0, max_logit = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        const float* z = gen->step(ids[t]);
        const int64_t L = std::min<int64_t>(int64_t(t) + 1, c.seq_len);
        tape.reset();
        Tensor<float> full = model.logits(tape, ids.data() + t + 1 - size_t(L), 1, L);
        const float* zf = full.data + (L - 1) * c.vocab_size;
        for (int64_t v = 0; v < c.vocab_size; ++v) {
            worst = std::max(worst, double(std::abs(z[v] - zf[v])));
            max_logit = std::max(max_logit, double(std::abs(zf[v])));
        }
    }
    MESSAGE("worst |cached - recompute| over 300 tokens: " << worst << " (max |logit| " << max_logit << ")");
    CHECK(max_logit > 0.1);
    CHECK(worst <= 1e-4);

    // int8 activations: close to the exact path, not equal.
    auto g8 = model.make_generator(Quant::int8);
    gen->reset();
    double diff8 = 0;
    for (size_t t = 0; t < 50; ++t) {
        const float* ze = gen->step(ids[t]);
        std::vector<float> e(ze, ze + c.vocab_size);
        const float* zi = g8->step(ids[t]);
        for (int64_t v = 0; v < c.vocab_size; ++v) diff8 = std::max(diff8, double(std::abs(zi[v] - e[size_t(v)])));
    }
    MESSAGE("int8 vs exact worst logit difference over 50 tokens: " << diff8);
    CHECK(diff8 > 0);
    CHECK(diff8 < 0.05 * max_logit + 0.05);
}
