// FlashLM v6 "SUPERNOVA" (--model supernova): parameter count, causality of the default planner mean
// (and the future leak of upstream's), cached generation against a full forward, and PyTorch parity
// (tests/parity/supernova.py) in the causal and the upstream-compatible mode.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/supernova.hpp"
#include "tests/generation_check.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace supernova_test {

using namespace flashlm;
using examples::Supernova;
using examples::SupernovaConfig;

namespace {

SupernovaConfig tiny() {
    SupernovaConfig c;
    c.vocab_size = 300, c.d_model = 48, c.n_layers = 3, c.d_reason = 16, c.n_mem_slots = 5, c.d_planner = 8;
    c.n_scales = 3, c.seq_len = 64;  // offsets 1, 2, 4: the generator's ring spans 4 rows
    return c;
}

// Last-position-first differences of the logits of two token sequences that agree up to position `cut`.
double max_diff_before(Supernova<float>& m, std::vector<int32_t> a, std::vector<int32_t> b, int64_t cut) {
    const int64_t T = int64_t(a.size()), V = m.vocab_size();
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    std::vector<float> za;
    {
        Tensor<float> z = m.logits(tape, a.data(), 1, T);
        za.assign(z.data, z.data + T * V);
    }
    tape.reset();
    Tensor<float> zb = m.logits(tape, b.data(), 1, T);
    double d = 0;
    for (int64_t i = 0; i < cut * V; ++i) d = std::max(d, double(std::abs(za[size_t(i)] - zb.data[i])));
    return d;
}

}  // namespace

TEST_CASE("supernova parameter count matches VARIANTS.md (4,141,862; 3,348,480 ternary)") {
    Supernova<float> m("supernova", SupernovaConfig{});
    CHECK(m.params().count() == 4141862);
    int64_t ternary = 0;
    for (auto& info : m.params().infos()) {
        const auto& n = info.name;
        const bool floaty = n == "embed.weight" || n == "planner_init" || n == "ln_out.weight" || n.find("norm") != std::string::npos ||
                            n.find("router") != std::string::npos || n.find("slots") != std::string::npos ||
                            n.find("res_gate") != std::string::npos;
        if (!floaty) ternary += info.shape.numel();
    }
    CHECK(ternary == 3348480);
    for (const char* n : {"planner_init", "head.weight", "ln_out.weight", "blocks.5.token_mix.mix.weight",
                          "blocks.5.reasoning.conv_bank.scales.1.weight", "blocks.5.reasoning.conv_bank.router.weight",
                          "blocks.5.reasoning.state_gate.planner_update.weight", "blocks.5.reasoning.memory.slots",
                          "blocks.5.reasoning.memory.mix_gate.weight", "blocks.5.reasoning.res_gate",
                          "blocks.5.channel_mix.gate_up.weight"})
        CHECK_MESSAGE(m.params().contains(n), n);
    CHECK(m.params().get("blocks.0.reasoning.conv_bank.router.weight").shape == Shape{2, 64});
    CHECK(m.params().get("planner_init").shape == Shape{1, 1, 32});
}

TEST_CASE("supernova config: bad values are one clear error") {
    CHECK_THROWS_WITH_AS(SupernovaConfig::from_json({{"d_reason", 0}}, {}), doctest::Contains("positive"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(SupernovaConfig::from_json({{"dropout", 0.1}}, {}), doctest::Contains("dropout"), std::invalid_argument);
    CHECK_THROWS_AS(SupernovaConfig::from_json({{"n_scales", "2"}}, {}), std::invalid_argument);
}

TEST_CASE("supernova default is causal; upstream_compat's whole-sequence planner mean leaks the future") {
    const int64_t T = 24, cut = 16;
    Rng rng(5);
    std::vector<int32_t> a(T), b;
    for (auto& t : a) t = int32_t(rng.below(300));
    b = a;
    for (int64_t t = cut; t < T; ++t) b[size_t(t)] = int32_t((a[size_t(t)] + 7) % 300);
    Supernova<float> causal("supernova", tiny());
    causal.init(rng);
    CHECK(max_diff_before(causal, a, b, cut) <= 1e-6);
    SupernovaConfig c = tiny();
    c.upstream_compat = true;
    Supernova<float> compat("supernova", c);
    for (auto& info : causal.params().infos()) {
        Tensor<float> src = causal.params().get(info.name), dst = compat.params().get(info.name);
        std::copy(src.data, src.data + src.numel(), dst.data);
    }
    CHECK(max_diff_before(compat, a, b, cut) > 1e-4);
    CHECK(compat.make_generator(Quant::exact) == nullptr);
}

TEST_CASE("cached supernova generation equals a full forward (exact; int8 close)") {
    Supernova<float> model("supernova", tiny());
    Rng rng(21);
    model.init(rng);
    const int64_t T = 60;
    std::vector<int32_t> ids(T);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(model.vocab_size())));
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    for (int pass = 0; pass < 2; ++pass) {  // the second pass checks reset()
        gen->reset();
        const auto d = testing::cached_vs_window(model, *gen, ids, model.max_seq_len());
        MESSAGE("pass " << pass << ": max |cached - full| " << d.worst << " (max |logit| " << d.max_logit << ")");
        CHECK(d.worst <= 1e-4);
        CHECK(d.max_logit > 0.1);
    }
    auto g8 = model.make_generator(Quant::int8);
    const double d8 = testing::int8_vs_exact(*gen, *g8, ids, 30);
    MESSAGE("int8 vs exact: " << d8);
    CHECK(d8 > 0);
    CHECK(d8 < 0.5);
}

TEST_CASE("supernova matches PyTorch: tiny config") {
    Supernova<float> model("supernova", tiny());
    parity::check_parity("supernova", model, "supernova-tiny", 2, 20, 1234);
}

TEST_CASE("supernova upstream_compat matches PyTorch: whole-sequence planner mean") {
    SupernovaConfig c = tiny();
    c.upstream_compat = true;
    Supernova<float> model("supernova", c);
    parity::check_parity("supernova", model, "supernova-compat", 2, 20, 777);
}

}  // namespace supernova_test
