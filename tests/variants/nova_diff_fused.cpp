// nova-diff's fused nodes against the op-by-op chains over three AdamW steps: the differential attention
// (ops/differential_attention.hpp; the chain copies q's and k's halves out and combines two attention
// outputs) and each expert (ops/moe_expert_silu.hpp; the chain is bitlinear_rows → silu → bitlinear_rows
// with gather/scale/scatter for a routed expert). The same bits, the Q2 weights' straight-through
// gradients, λ's and the router's included, in less tape memory.
#include <doctest/doctest.h>

#include <string>

#include "examples/nova_diff.hpp"
#include "tests/fused_steps.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace nova_diff_fused_test {

using namespace flashlm;

namespace {

testing::StepsRun train3(bool unfused) {
    examples::NovaDiffConfig c;
    c.vocab_size = 40, c.d_model = 32, c.n_layers = 3, c.n_heads = 2, c.d_head = 8, c.expert_dim = 48, c.n_experts = 3;
    c.seq_len = 24;
    examples::NovaDiff<float> model("nova-diff", c);
    Rng rng(7);
    model.init(rng);
    // Upstream's routers start at N(0, 0.01), which sends nearly every token to one expert: wider ones
    // spread the tokens, so every routed expert and the gate's gradient are exercised.
    for (int64_t l = 0; l < c.n_layers; ++l)
        nn::init_normal(model.params().get("blocks." + std::to_string(l) + ".ffn.router.weight"), rng, 0.5);
    model.set_unfused(unfused);
    return testing::train_three_steps(model, 3, 24, 40);
}

}  // namespace

TEST_CASE("nova-diff's fused attention and experts give the chains' bits in less tape memory") {
    const testing::StepsRun chain = train3(true), fused = train3(false);
    CHECK(chain.losses[2] < chain.losses[0]);
    CHECK(testing::same_bits(fused.losses, chain.losses));
    CHECK(testing::same_bits(fused.grads, chain.grads));
    std::size_t nonzero = 0;
    for (float g : chain.grads) nonzero += g != 0;
    CHECK(nonzero > chain.grads.size() * 9 / 10);  // every expert's weights got a gradient
    // The chains keep each expert's gathered rows, up output, SiLU output, down output and gated output,
    // and the attention's four halves, o₁ and o₂; the nodes keep the up output (and a routed expert's down
    // output), o₂ and the row log-sum-exps. Arena + planned gradient peak: measured 0.61 in this tiny config.
    MESSAGE("tape memory (arena + planned gradients): fused / chain = " << double(fused.tape_memory()) / double(chain.tape_memory()));
    CHECK(double(fused.tape_memory()) < 0.65 * double(chain.tape_memory()));
}

}  // namespace nova_diff_fused_test
