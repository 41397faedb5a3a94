// CORTEX-III/VI blocks through the fused pre-norm residual nodes with float weights
// (ops/prenorm_residual.hpp, BranchWeights::dense; ops/prenorm_memory_residual.hpp) against the op-by-op
// chain over three AdamW steps: the same bits for CORTEX-III, the same to rounding for CORTEX-VI, in less
// tape memory.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/cortex.hpp"
#include "tests/fused_steps.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace cortex_fused_test {

using namespace flashlm;

namespace {

testing::StepsRun train3(bool memory, bool unfused) {
    examples::CortexConfig c = memory ? examples::CortexConfig::cortex6() : examples::CortexConfig::cortex3();
    c.vocab_size = 40, c.d_model = 40, c.n_layers = 2, c.d_ff = 56, c.kernel_size = 5, c.seq_len = 24;
    if (memory) c.d_mem = 8;
    examples::Cortex<float> model(memory ? "cortex6" : "cortex3", c);
    Rng rng(5);
    model.init(rng);
    model.set_unfused(unfused);
    return testing::train_three_steps(model, 4, 24, 40);
}

}  // namespace

TEST_CASE("cortex3's fused sublayers give the op chain's loss and gradients bit for bit, in less tape memory") {
    const testing::StepsRun chain = train3(false, true), fused = train3(false, false);
    CHECK(chain.losses[2] < chain.losses[0]);  // the steps train
    CHECK(testing::same_bits(fused.losses, chain.losses));
    CHECK(testing::same_bits(fused.grads, chain.grads));
    // Per block the chain keeps ~12 [M, D] and 6 [M, d_ff] buffers for these sublayers; the fused nodes 2 and 2.
    // Arena + planned gradient peak on both sides: measured 0.51.
    MESSAGE("tape memory (arena + planned gradients): fused / chain = " << double(fused.tape_memory()) / double(chain.tape_memory()));
    CHECK(double(fused.tape_memory()) < 0.58 * double(chain.tape_memory()));
}

TEST_CASE("cortex6's fused sublayers, memory included, match the op chain to rounding, in less tape memory") {
    const testing::StepsRun chain = train3(true, true), fused = train3(true, false);
    CHECK(chain.losses[2] < chain.losses[0]);
    // The memory node sums dRMSNorm over the 3d projection rows at once where the chain added three sums.
    for (size_t i = 0; i < chain.losses.size(); ++i) CHECK(std::abs(fused.losses[i] - chain.losses[i]) <= 1e-5f * chain.losses[i]);
    REQUIRE(fused.grads.size() == chain.grads.size());
    const size_t per_step = fused.grads.size() / 3;
    double worst = 0, scale = 0;
    size_t differ = 0;
    for (size_t i = 0; i < per_step; ++i) {  // the first step's gradients: same weights on both sides
        worst = std::max(worst, double(std::abs(fused.grads[i] - chain.grads[i])));
        scale = std::max(scale, double(std::abs(chain.grads[i])));
        differ += fused.grads[i] != chain.grads[i];
    }
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * scale);
    CHECK(differ > 0);  // the bound above is doing work: the summation order did change something
    // Arena + planned gradient peak on both sides: measured 0.51.
    MESSAGE("tape memory (arena + planned gradients): fused / chain = " << double(fused.tape_memory()) / double(chain.tape_memory()));
    CHECK(double(fused.tape_memory()) < 0.58 * double(chain.tape_memory()));
}

}  // namespace cortex_fused_test
