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

TEST_CASE("v3 matches PyTorch with the loss on sampled positions") {
    // The recipe's train-time subsampling: flashlm gathers the sampled rows before its fused head; the
    // reference takes the cross-entropy of the full logits at those rows (upstream's lm_head(x[indices])).
    examples::V3<float> model("v3", v3_tiny());
    Rng pick(5);
    std::vector<int32_t> rows, scratch;
    train::sample_positions(pick, 2 * 80, 0.25, rows, scratch);
    REQUIRE(rows.size() == 40);
    flashlm::parity::check_parity("v3", model, "v3-tiny-sampled", 2, 80, 1234, {}, rows);
}

TEST_CASE("v3 sampled loss is the mean cross-entropy at those positions, for one call only") {
    examples::V3<float> model("v3", v3_tiny());
    Rng rng(3);
    model.init(rng);
    const int64_t B = 2, L = 40, V = 300;
    std::vector<int32_t> ids(B * L), targets(B * L);
    for (auto& t : ids) t = int32_t(rng.below(V));
    for (auto& t : targets) t = int32_t(rng.below(V));
    Tape<float> tape;
    const Tensor<float> logits = model.logits(tape, ids.data(), B, L);
    std::vector<double> ce(B * L);
    double all = 0;
    for (int64_t r = 0; r < B * L; ++r) {
        const float* z = logits.data + r * V;
        const double mx = *std::max_element(z, z + V);
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - mx);
        ce[r] = mx + std::log(sum) - double(z[targets[r]]);
        all += ce[r] / double(B * L);
    }
    const std::vector<int32_t> rows = {0, 7, 39, 40, 41, 79};
    double sampled = 0;
    for (int32_t r : rows) sampled += ce[r] / double(rows.size());
    CHECK(std::abs(sampled - all) > 1e-3);  // the check below tells the two apart

    tape.reset();
    REQUIRE(model.set_loss_positions(rows));
    const double got = model.loss(tape, ids.data(), targets.data(), B, L).data[0];
    CHECK(got == doctest::Approx(sampled).epsilon(1e-5));
    tape.reset();  // the next call (an evaluation, say) sees every position again
    CHECK(double(model.loss(tape, ids.data(), targets.data(), B, L).data[0]) == doctest::Approx(all).epsilon(1e-5));
}

TEST_CASE("sample_positions draws upstream's count of distinct positions, ascending, from the stream") {
    std::vector<int32_t> a, b, scratch;
    Rng r1(9), r2(9);
    train::sample_positions(r1, 1000, 0.25, a, scratch);
    train::sample_positions(r2, 1000, 0.25, b, scratch);
    CHECK(a == b);
    REQUIRE(a.size() == 250);
    CHECK(std::is_sorted(a.begin(), a.end()));
    CHECK(std::adjacent_find(a.begin(), a.end()) == a.end());
    CHECK(a.front() >= 0);
    CHECK(a.back() < 1000);
    CHECK(a.back() - a.front() > 500);  // spread over the batch, not a prefix
    train::sample_positions(r1, 1000, 0.25, b, scratch);
    CHECK(a != b);  // the next step's sample differs
    CHECK(train::sampled_positions(3, 0.25) == 1);  // max(1, floor(n f))
    CHECK(train::sampled_positions(10, 1.0) == 10);
    CHECK_THROWS_AS(train::sampled_positions(10, 0.0), std::invalid_argument);
    CHECK_THROWS_AS(train::sampled_positions(10, 1.5), std::invalid_argument);
}

TEST_CASE("v3 matches PyTorch: real config, seq 72") {
    examples::V3Config c;
    c.seq_len = 72;
    examples::V3<float> model("v3", c);
    flashlm::parity::check_parity("v3", model, "v3-real", 2, 72, 42);
}

}  // namespace v3_test
