// v3 (VARIANTS.md §4): parameter count, cached generation against a full forward, PyTorch parity.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/v3.hpp"
#include "tests/generation_check.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace v3_test {

using namespace flashlm;

namespace {
examples::V3Config v3_tiny() {
    examples::V3Config c;
    c.vocab_size = 300, c.d_model = 32, c.glu_inner_dim = 48, c.seq_len = 512;  // 2 channels per conv group
    return c;
}
}  // namespace

TEST_CASE("v3 parameter count matches VARIANTS.md") {
    examples::V3<float> model("v3", examples::V3Config{});
    CHECK(model.params().count() == 13555969);
    CHECK(model.params().get("block.token_mixer.layers.2.conv_gate.conv.weight").shape == Shape{256, 16, 4});
    CHECK(model.params().get("block.glu.down_proj.weight").shape == Shape{256, 683});
    CHECK(model.params().contains("lm_head.weight"));
}

TEST_CASE("cached v3 generation equals a full forward over the window") {
    // A token sees the last 2·3·(1+4+64)+1 = 415 tokens: with a 416-token window the recompute crops for
    // the last 44 of 460 tokens and must still agree with the cache, which never crops.
    examples::V3Config c = v3_tiny();
    c.seq_len = 416;
    examples::V3<float> model("v3", c);
    Rng rng(14);
    model.init(rng);
    std::vector<int32_t> ids(460);
    for (auto& t : ids) t = int32_t(rng.below(300));
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    const testing::WindowDiff d = testing::cached_vs_window(model, *gen, ids, c.seq_len, 7);
    const double worst = d.worst, max_logit = d.max_logit;
    MESSAGE("v3: worst |cached - full| over 460 tokens: " << worst << " (max |logit| " << max_logit << ")");
    CHECK(max_logit > 0.1);
    CHECK(worst <= 1e-4);

    auto g8 = model.make_generator(Quant::int8);
    const double diff8 = testing::int8_vs_exact(*gen, *g8, ids, 50);
    MESSAGE("v3 int8 vs exact worst logit difference over 50 tokens: " << diff8);
    CHECK(diff8 > 0);
    CHECK(diff8 < 0.05 * max_logit + 0.05);
}

TEST_CASE("v3 matches PyTorch: tiny config") {
    // L = 80 > 3·64: the dilation-64 taps read real tokens, not only the causal padding.
    examples::V3<float> model("v3", v3_tiny());
    flashlm::parity::check_parity("v3", model, "v3-tiny", 2, 80, 1234);
}

TEST_CASE("v3 matches PyTorch: real config, seq 72") {
    examples::V3Config c;
    c.seq_len = 72;
    examples::V3<float> model("v3", c);
    flashlm::parity::check_parity("v3", model, "v3-real", 2, 72, 42);
}

}  // namespace v3_test
