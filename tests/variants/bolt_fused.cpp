// Bolt's fused pre-norm residual sublayers (ops/prenorm_residual.hpp) against the op-by-op chain they
// replace: the same loss and the same gradient bits over three AdamW steps, with and without
// --recompute, in less tape memory.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "examples/bolt.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace bolt_fused_test {

using namespace flashlm;

namespace {

struct Run {
    std::vector<float> losses, grads;
    std::size_t arena_after_forward = 0;
};

Run train3(bool unfused, bool recompute) {
    examples::BoltConfig c;
    c.vocab_size = 40, c.dim = 16, c.n_blocks = 2, c.kernel_size = 4, c.glu_hidden = 24, c.seq_len = 24;
    examples::Bolt<float> model("bolt", c);
    Rng rng(5);
    model.init(rng);
    model.set_unfused(unfused);
    model.set_recompute(recompute);
    optim::AdamW<float> adam(model.params(), optim::AdamWConfig{});
    Tape<float> tape;
    const int64_t B = 3, L = 24;
    std::vector<int32_t> ids(B * L), targets(B * L);
    for (int64_t i = 0; i < B * L; ++i) ids[i] = int32_t((i * 7 + 3) % 40), targets[i] = int32_t((i * 11 + 1) % 40);
    Run r;
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

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("bolt's fused sublayers give the op chain's loss and gradients bit for bit, in less tape memory") {
    const Run chain = train3(true, false), fused = train3(false, false), fused_rc = train3(false, true);
    CHECK(chain.losses[2] < chain.losses[0]);  // the steps train
    CHECK(same_bits(fused.losses, chain.losses));
    CHECK(same_bits(fused.grads, chain.grads));
    CHECK(same_bits(fused_rc.losses, chain.losses));
    CHECK(same_bits(fused_rc.grads, chain.grads));
    // Per block the chain keeps 20 [M, D] and 6 [M, H] buffers, the fused nodes 5 and 2.
    CHECK(double(fused.arena_after_forward) < 0.45 * double(chain.arena_after_forward));
}

}  // namespace bolt_fused_test
