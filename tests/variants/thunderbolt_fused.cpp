// Thunderbolt's token mixer and FFN sub-layers through the fused nodes (ops/shift_recurrence_residual.hpp,
// ops/shift_relu2_residual.hpp) against the op-by-op chains over three AdamW steps: the same to rounding,
// the Q1' weights' straight-through gradients included, in less tape memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/thunderbolt.hpp"
#include "tests/fused_steps.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace thunderbolt_fused_test {

using namespace flashlm;

namespace {

testing::StepsRun train3(bool unfused, bool compat = false) {
    examples::ThunderboltConfig c;
    c.vocab_size = 40, c.d_model = 48, c.n_heads = 4, c.d_head = 12, c.n_layers = 3, c.d_ffn = 80, c.seq_len = 24;
    c.upstream_compat = compat;
    examples::Thunderbolt<float> model("thunderbolt", c);
    Rng rng(5);
    model.init(rng);
    // mix and f_bias start at 0 upstream: random values make the shift and the gate's bias matter
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blocks." + std::to_string(l) + ".";
        for (const char* n : {"mix1", "mix2", "rec.f_bias", "rec.gn.bias", "ln1.bias", "ln2.bias"})
            nn::init_normal(model.params().get(p + n), rng, 0.5);
    }
    model.set_unfused(unfused);
    return testing::train_three_steps(model, 3, 24, 40);
}

}  // namespace

TEST_CASE("thunderbolt's fused token mixer and FFN match the op chains to rounding, in less tape memory") {
    const testing::StepsRun chain = train3(true), fused = train3(false);
    testing::check_same_to_rounding(fused, chain, 9, 10);  // the identity STE passes every weight's gradient on
    // The chains keep ~16 activations of the block; the nodes keep Z, h, the FFN's up projection and the
    // norms' statistics. Both sides' gradients are planned by lifetime (arena + gradient peak compared).
    MESSAGE("tape memory (arena + planned gradients): fused / chain = " << double(fused.tape_memory()) / double(chain.tape_memory()));
    CHECK(double(fused.tape_memory()) < 0.6 * double(chain.tape_memory()));  // measured 0.54
}

TEST_CASE("thunderbolt with upstream's whole-window GroupNorm keeps the mixer's chain and fuses the FFN") {
    const testing::StepsRun chain = train3(true, true), fused = train3(false, true);
    testing::check_same_to_rounding(fused, chain, 9, 10);
    MESSAGE("tape memory (arena + planned gradients): fused / chain = " << double(fused.tape_memory()) / double(chain.tape_memory()));
    CHECK(double(fused.tape_memory()) < 0.9 * double(chain.tape_memory()));
}

}  // namespace thunderbolt_fused_test
