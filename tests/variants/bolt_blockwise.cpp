// bolt-blockwise (altpav TeenyLM, VARIANTS.md §11.1): parameter count, the Q5 quantizer's packed form,
// cached generation against a full forward, PyTorch parity.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/bolt.hpp"
#include "tests/generation_check.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace bolt_blockwise_test {

using namespace flashlm;

namespace {
examples::BoltConfig altpav(examples::BoltConfig c) {
    c.quantizer = nn::WeightQuant::blockwise, c.inner_norm = true;
    return c;
}
}  // namespace

TEST_CASE("bolt-blockwise parameter count matches VARIANTS.md") {
    examples::Bolt<float> small("bolt-blockwise", examples::BoltConfig::altpav_small());
    CHECK(small.params().count() == 4370112);
    // Every BitLinear carries its own norm; the block-level norms are gone.
    CHECK(small.params().contains("blocks.0.mixer.up.norm.scale"));
    CHECK(small.params().contains("blocks.5.ffn.W_down.norm.scale"));
    CHECK_FALSE(small.params().contains("blocks.0.norm1.scale"));
}

TEST_CASE("Q5 quantizer: per-256-block scales over the flattened weight, Q1 fallback at <= 256 weights") {
    // 3 x 100 = 300 weights: blocks [0, 256) and [256, 300) + 212 zeros; block 1 starts inside row 2.
    std::vector<float> w(300), q(300);
    for (int i = 0; i < 300; ++i) w[size_t(i)] = float(((i * 37) % 11) - 5) * (i < 256 ? 0.1f : 1.0f);
    ops::quantize_blockwise(w.data(), q.data(), 300);
    double s0 = 0, s1 = 0;
    for (int i = 0; i < 256; ++i) s0 += std::abs(w[size_t(i)]);
    for (int i = 256; i < 300; ++i) s1 += std::abs(w[size_t(i)]);
    const float a0 = float(s0 / 256), a1 = float(s1 / 256);  // the padded block divides by 256, not 44
    for (int i = 0; i < 300; ++i) {
        const float a = i < 256 ? a0 : a1;
        const float e = std::clamp(std::nearbyint(w[size_t(i)] / (a + 1e-8f)), -1.0f, 1.0f) * a;
        REQUIRE(q[size_t(i)] == e);
    }
    // 256 weights: one block = Q1.
    std::vector<float> q1(256), qb(256);
    ops::quantize_absmean(w.data(), q1.data(), 256);
    ops::quantize_blockwise(w.data(), qb.data(), 256);
    CHECK(q1 == qb);
}

TEST_CASE("packed Q5 weights: unpack equals the training quantizer, matvec equals the float reference") {
    // Widths that straddle blocks (192, 384, 24), align with them (512), divide 256 (32), a ragged one (37),
    // and a tensor of <= 256 weights (Q1 fallback).
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{384, 192}, {192, 192}, {192, 512}, {512, 192},
                                                             {768, 384}, {16, 24},   {64, 32},   {100, 37},
                                                             {8, 24}};
    Rng rng(21);
    for (const auto& shape : shapes) {
        const int64_t rows = shape.first, cols = shape.second;  // no structured bindings in CAPTURE (clang 14)
        CAPTURE(rows);
        CAPTURE(cols);
        const int64_t n = rows * cols;
        const auto nn_ = static_cast<size_t>(n);
        std::vector<float> w(nn_), ref(nn_), un(nn_), x(static_cast<size_t>(cols));
        for (auto& v : w) v = float(rng.normal(0, 0.05));
        for (auto& v : x) v = float(rng.normal(0, 1));
        ops::quantize_blockwise(w.data(), ref.data(), n);
        const auto p = kernels::pack_ternary_blockwise(w.data(), rows, cols);
        kernels::unpack_ternary_blockwise(p, un.data());
        int64_t mism = 0;
        for (int64_t i = 0; i < n; ++i) mism += un[size_t(i)] != ref[size_t(i)];
        CHECK(mism == 0);
        if (cols % 64 == 0) CHECK(p.n_slices() <= (cols + 255) / 256 + 2);

        // exact matvec vs float GEMV with W̃ (double accumulation)
        const auto nr = static_cast<size_t>(rows);
        std::vector<float> y(nr), tmp(nr);
        kernels::ternary_blockwise_matvec(p, x.data(), y.data(), tmp.data());
        double err = 0, mag = 0;
        std::vector<double> yr(nr, 0.0);
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t k = 0; k < cols; ++k) yr[size_t(r)] += double(ref[size_t(r * cols + k)]) * x[size_t(k)];
            err = std::max(err, std::abs(double(y[size_t(r)]) - yr[size_t(r)]));
            mag = std::max(mag, std::abs(yr[size_t(r)]));
        }
        CAPTURE(err);
        CHECK(mag > 0);
        CHECK(err <= 1e-5 * mag);

        // int8 activations: close, not equal
        std::vector<int8_t> xq(static_cast<size_t>(cols));
        float xs = 0;
        kernels::quantize_activations_int8(x.data(), 1, cols, xq.data(), &xs);
        kernels::ternary_blockwise_matvec_int8(p, xq.data(), xs, y.data(), tmp.data());
        double e8 = 0;
        for (int64_t r = 0; r < rows; ++r) e8 = std::max(e8, std::abs(double(y[size_t(r)]) - yr[size_t(r)]));
        CHECK(e8 <= 0.02 * mag);
    }
}

TEST_CASE("cached bolt-blockwise generation equals a full recompute over the window for 300 tokens") {
    // D = 48: Q5 blocks straddle rows in every projection; a token sees the last 2·(8-1)+1 = 15 tokens.
    examples::BoltConfig c = altpav({300, 48, 2, 8, 96, 64});
    examples::Bolt<float> model("bolt-blockwise", c);
    Rng rng(11);
    model.init(rng);
    std::vector<int32_t> ids(300);
    for (auto& t : ids) t = int32_t(rng.below(300));
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    const testing::WindowDiff d = testing::cached_vs_window(model, *gen, ids, c.seq_len);
    const double worst = d.worst, max_logit = d.max_logit;
    MESSAGE("bolt-blockwise: worst |cached - recompute| over 300 tokens: " << worst << " (max |logit| " << max_logit << ")");
    CHECK(max_logit > 0.1);
    CHECK(worst <= 1e-4);

    auto g8 = model.make_generator(Quant::int8);
    const double diff8 = testing::int8_vs_exact(*gen, *g8, ids, 50);
    MESSAGE("bolt-blockwise int8 vs exact worst logit difference over 50 tokens: " << diff8);
    CHECK(diff8 > 0);
    CHECK(diff8 < 0.05 * max_logit + 0.05);
}

TEST_CASE("bolt-blockwise matches PyTorch: tiny config") {
    // D = 16, GLU 24: mixer.down (256 weights) takes the Q1 fallback, W_down's 24-wide rows straddle blocks.
    examples::Bolt<float> model("bolt-blockwise", altpav({300, 16, 2, 4, 24, 16}));
    flashlm::parity::check_parity("bolt-blockwise", model, "bolt-blockwise-tiny", 2, 16, 1234);
}

TEST_CASE("bolt-blockwise matches PyTorch: real config, seq 64") {
    examples::BoltConfig c = examples::BoltConfig::altpav_small();
    c.seq_len = 64;
    examples::Bolt<float> model("bolt-blockwise", c);
    flashlm::parity::check_parity("bolt-blockwise", model, "bolt-blockwise-real", 2, 64, 42);
}

}  // namespace bolt_blockwise_test
