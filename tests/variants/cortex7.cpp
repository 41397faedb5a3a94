// FlashLM v7 "CORTEX" (--model cortex): parameter count, Q2 quantizer and its STE, the decayed sum,
// cached generation (with and without early exits) against a full forward, the evaluation loss, and
// PyTorch parity (tests/parity/cortex7.py) in both the corrected and the upstream-compatible mode.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "examples/cortex7.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace cortex7_test {

using namespace flashlm;
using examples::Cortex7;
using examples::Cortex7Config;

namespace {

Cortex7Config tiny() {
    Cortex7Config c;
    c.vocab_size = 300, c.d_model = 48, c.n_layers = 3, c.d_ff = 96, c.seq_len = 128, c.gate_hidden = 16;
    c.exit_layers = {1, 2};
    return c;
}

double max_abs(const float* a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, double(std::abs(a[i])));
    return m;
}

}  // namespace

TEST_CASE("cortex parameter count matches VARIANTS.md (7,118,082; 3,932,160 ternary)") {
    Cortex7<float> m("cortex", Cortex7Config{});
    CHECK(m.params().count() == 7118082);
    int64_t ternary = 0;
    for (auto& info : m.params().infos())
        if (info.name.find(".W") != std::string::npos && info.name.find("exit_gates") == std::string::npos)
            ternary += info.shape.numel();
    CHECK(ternary == 3932160);
    CHECK(m.params().contains("blocks.5.time_mix.decay"));
    CHECK(m.params().contains("exit_gates.1.gate.2.bias"));
    CHECK(m.params().contains("head.weight"));
}

TEST_CASE("cortex config: bad exits are one clear error") {
    CHECK_THROWS_WITH_AS(Cortex7Config::from_json({{"exit_layers", {4, 2}}}, {}), doctest::Contains("exit_layers"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(Cortex7Config::from_json({{"exit_layers", {2}}}, {}), doctest::Contains("one entry per exit"),
                         std::invalid_argument);
    CHECK_THROWS_AS(Cortex7Config::from_json({{"exit_layers", "2"}}, {}), std::invalid_argument);
}

TEST_CASE("Q2 BitLinear: per-row absmean ternary values, identity STE for the weight") {
    const int64_t N = 5, K = 7;
    Rng rng(3);
    std::vector<float> w(N * K), wq(N * K), alpha(N), x(3 * K);
    for (auto& v : w) v = float(rng.normal(0, 1));
    for (int64_t k = 0; k < K; ++k) w[size_t(4 * K + k)] = 0;  // an all-zero row: α clamps to 1e-5
    for (auto& v : x) v = float(rng.normal(0, 1));
    ops::quantize_absmean_rows(w.data(), wq.data(), N, K, alpha.data());
    for (int64_t r = 0; r < N; ++r) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += std::abs(w[size_t(r * K + k)]);
        CHECK(alpha[size_t(r)] == doctest::Approx(std::max(s / K, 1e-5)).epsilon(1e-6));
        for (int64_t k = 0; k < K; ++k) {
            const float q = wq[size_t(r * K + k)], want = std::clamp(std::nearbyint(w[size_t(r * K + k)] / alpha[size_t(r)]), -1.0f, 1.0f);
            CHECK(q == want * alpha[size_t(r)]);
        }
    }
    // dW of bitlinear_rows equals dW of a plain linear at W̃ (the STE), dx too.
    std::vector<float> g1(N * K, 0), g2(N * K, 0), gx1(3 * K, 0), gx2(3 * K, 0);
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    Tensor<float> X1(x.data(), gx1.data(), Shape{3, K}), X2(x.data(), gx2.data(), Shape{3, K});
    Tensor<float> y1 = ops::bitlinear_rows(tape, X1, Tensor<float>(w.data(), g1.data(), Shape{N, K}));
    Tensor<float> y2 = ops::linear(tape, X2, Tensor<float>(wq.data(), g2.data(), Shape{N, K}));
    for (int64_t i = 0; i < y1.numel(); ++i) {
        CHECK(y1.data[i] == doctest::Approx(y2.data[i]).epsilon(1e-6));
        y1.grad[i] = y2.grad[i] = float(i % 3) - 1.0f;
    }
    tape.run_backward();
    for (int64_t i = 0; i < N * K; ++i) CHECK(g1[size_t(i)] == doctest::Approx(g2[size_t(i)]).epsilon(1e-6));
    for (int64_t i = 0; i < 3 * K; ++i) CHECK(gx1[size_t(i)] == doctest::Approx(gx2[size_t(i)]).epsilon(1e-6));
}

TEST_CASE("decayed_cumsum equals Σ w^(t-s) kv_s; the upstream clamp agrees only while w^t >= 1e-10") {
    const int64_t B = 2, L = 120, D = 3;
    const std::vector<double> w = {0.729, 0.5, 0.95};
    Rng rng(9);
    std::vector<double> kv(B * L * D);
    for (auto& v : kv) v = rng.normal(0, 1);
    Tape<double> tape;
    NoGradGuard<double> ng(tape);
    Tensor<double> K(kv.data(), nullptr, Shape{B, L, D}), W(const_cast<double*>(w.data()), nullptr, Shape{D});
    Tensor<double> S = ops::decayed_cumsum(tape, K, W), U = ops::decayed_cumsum(tape, K, W, true);
    double worst = 0, worst_before = 0, worst_after = 0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < L; ++t)
            for (int64_t d = 0; d < D; ++d) {
                double ref = 0;
                for (int64_t s = 0; s <= t; ++s) ref += std::pow(w[size_t(d)], double(t - s)) * kv[size_t((b * L + s) * D + d)];
                const int64_t o = (b * L + t) * D + d;
                worst = std::max(worst, std::abs(S.data[o] - ref));
                const double diff = std::abs(U.data[o] - ref);
                if (std::pow(w[size_t(d)], double(t)) >= 1e-10) worst_before = std::max(worst_before, diff);
                else worst_after = std::max(worst_after, diff);
            }
    CHECK(worst < 1e-12);
    CHECK(worst_before < 1e-9);
    CHECK(worst_after > 0.1);  // past the clamp upstream's sum is a different function
}

TEST_CASE("cached cortex generation equals a full forward (final head, exact and int8)") {
    Cortex7<float> model("cortex", tiny());
    Rng rng(21);
    model.init(rng);
    const int64_t T = 100, V = model.vocab_size();
    std::vector<int32_t> ids(T);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    Tensor<float> full = model.logits(tape, ids.data(), 1, T);
    const double max_logit = max_abs(full.data, full.numel());
    for (Quant q : {Quant::exact, Quant::int8}) {
        auto gen = model.make_generator(q);
        REQUIRE(gen);
        for (int pass = 0; pass < 2; ++pass) {  // the second pass checks reset()
            gen->reset();
            double worst = 0;
            for (int64_t t = 0; t < T; ++t) {
                const float* z = gen->step(ids[size_t(t)]);
                for (int64_t v = 0; v < V; ++v) worst = std::max(worst, double(std::abs(z[v] - full.data[t * V + v])));
            }
            MESSAGE(std::string(q == Quant::exact ? "exact" : "int8") << " pass " << pass << ": max |cached - full| " << worst
                                                           << " (max |logit| " << max_logit << ")");
            if (q == Quant::exact) CHECK(worst <= 1e-4);
            else CHECK(worst <= 0.05 * max_logit);  // activations quantised to int8 per token
        }
    }
}

TEST_CASE("cortex early exit: cached generation picks the same head as upstream's full recompute") {
    Cortex7Config c = tiny();
    c.early_exit = true;
    Cortex7<float> model("cortex", c);
    Rng rng(22);
    model.init(rng);
    const int64_t T = 24, V = model.vocab_size();
    std::vector<int32_t> ids(T);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    // Running minimum of each exit's confidence; thresholds between its values at steps 3 and 12 make
    // exit 0 generate first and hand over later.
    std::vector<std::vector<double>> runmin(2, std::vector<double>(T));
    for (int64_t e = 0; e < 2; ++e) {
        tape.reset();
        Tensor<float> z = model.exit_logits(tape, ids.data(), 1, T, e);
        double m = std::numeric_limits<double>::infinity();
        for (int64_t t = 0; t < T; ++t)
            runmin[size_t(e)][size_t(t)] = m = std::min(m, ops::exit_confidence(z.data + t * V, V, c.exit_temperature));
    }
    REQUIRE(runmin[0][3] > runmin[0][12]);
    c.exit_thresholds = {0.5 * (runmin[0][3] + runmin[0][12]), -1.0};  // exit 1 takes over from exit 0
    Cortex7<float> m2("cortex", c);
    for (auto& info : model.params().infos()) {
        Tensor<float> src = model.params().get(info.name), dst = m2.params().get(info.name);
        std::copy(src.data, src.data + src.numel(), dst.data);
    }
    auto gen = m2.make_generator(Quant::exact);
    REQUIRE(gen);
    double worst = 0;
    int from_exit0 = 0;
    for (int64_t t = 0; t < T; ++t) {
        const float* z = gen->step(ids[size_t(t)]);
        tape.reset();
        Tensor<float> full = m2.logits(tape, ids.data(), 1, t + 1);
        for (int64_t v = 0; v < V; ++v) worst = std::max(worst, double(std::abs(z[v] - full.data[t * V + v])));
        tape.reset();
        Tensor<float> e0 = m2.exit_logits(tape, ids.data(), 1, t + 1, 0);
        if (std::abs(z[0] - e0.data[t * V]) < 1e-4 && std::abs(z[1] - e0.data[t * V + 1]) < 1e-4) ++from_exit0;
    }
    CHECK(worst <= 1e-4);
    CHECK(from_exit0 > 0);
    CHECK(from_exit0 < T);
}

TEST_CASE("cortex evaluation loss is the final head's cross-entropy; training adds the exit terms") {
    Cortex7<float> model("cortex", tiny());
    Rng rng(23);
    model.init(rng);
    const int64_t B = 2, L = 16, V = model.vocab_size();
    std::vector<int32_t> ids(B * L), tg(B * L);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    for (auto& t : tg) t = int32_t(rng.below(uint64_t(V)));
    Tape<float> tape;
    const double train = model.loss(tape, ids.data(), tg.data(), B, L).data[0];
    tape.reset();
    NoGradGuard<float> ng(tape);
    const double eval = model.loss(tape, ids.data(), tg.data(), B, L).data[0];
    tape.reset();
    Tensor<float> z = model.logits(tape, ids.data(), B, L);
    double ce = 0;
    for (int64_t r = 0; r < B * L; ++r) {
        const float* zr = z.data + r * V;
        double mx = zr[0], s = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(zr[v]));
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(zr[v]) - mx);
        ce += mx + std::log(s) - zr[tg[size_t(r)]];
    }
    CHECK(eval == doctest::Approx(ce / double(B * L)).epsilon(1e-5));
    // 0.1·CE + 0.3·CE of near-uniform exits (≈ 0.4 ln 300) plus two BCE terms (≈ 0.5 · 2 · 0.69).
    CHECK(train - eval > 0.4 * std::log(300.0));
}

TEST_CASE("cortex matches PyTorch: tiny config") {
    Cortex7<float> model("cortex", tiny());
    parity::check_parity("cortex", model, "cortex7-tiny", 2, 16, 1234);
}

TEST_CASE("cortex matches PyTorch: real config, seq 32") {
    Cortex7Config c;
    c.seq_len = 32;
    Cortex7<float> model("cortex", c);
    parity::check_parity("cortex", model, "cortex7-real", 2, 32, 42);
}

TEST_CASE("cortex upstream_compat matches PyTorch: double-shifted loss, clamped decayed sum past position 73") {
    Cortex7Config c = tiny();
    c.upstream_compat = true;
    Cortex7<float> model("cortex", c);
    parity::check_parity("cortex", model, "cortex7-compat", 2, 96, 777);
}

}  // namespace cortex7_test
