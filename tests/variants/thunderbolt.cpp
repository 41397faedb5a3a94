// FlashLM v5 "Thunderbolt": parameter count, the recurrence against the spec's Hillis–Steele scan,
// causality of the default model (and upstream's non-causal GroupNorm), cached generation == full forward,
// and PyTorch parity (tests/parity/thunderbolt.py).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "examples/thunderbolt.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace thunderbolt_test {

using namespace flashlm;
using flashlm::parity::check_parity;

namespace {
examples::ThunderboltConfig tb_tiny() {
    examples::ThunderboltConfig c;
    c.vocab_size = 300, c.d_model = 32, c.n_heads = 4, c.d_head = 8, c.n_layers = 3, c.d_ffn = 48, c.seq_len = 16;
    return c;
}
}  // namespace

TEST_CASE("thunderbolt parameter count matches VARIANTS.md (29,750,784; 26,542,080 ternary)") {
    examples::Thunderbolt<float> m("thunderbolt", examples::ThunderboltConfig{});
    CHECK(m.params().count() == 29750784);
    int64_t ternary = 0;
    for (auto& p : m.params().infos())
        if (p.name.find(".W_") != std::string::npos || p.name.find(".ffn_") != std::string::npos) ternary += p.shape.numel();
    CHECK(ternary == 26542080);
    CHECK(m.params().contains("blocks.17.rec.gn.bias"));
    CHECK(m.params().contains("head.weight"));
    // Forget-gate lower bounds rise from 0 to 0.9 over the 18 layers.
    CHECK(m.block_lower_bound(0) == 0.0);
    CHECK(m.block_lower_bound(17) == doctest::Approx(0.9));
    CHECK(m.block_lower_bound(9) == doctest::Approx(0.9 * 9 / 17));
}

TEST_CASE("gated_recurrence equals the Hillis-Steele log-step scan of the spec") {
    const int64_t B = 2, L = 37, C = 70;  // L not a power of two; C spans two channel blocks
    const double lb = 0.6;
    Rng rng(21);
    std::vector<double> z(B * L * C), v(B * L * C), bias(C);
    for (auto& x : z) x = rng.normal(0, 1.5);
    for (auto& x : v) x = rng.normal(0, 1);
    for (auto& x : bias) x = rng.normal(0, 0.5);
    Tape<double> tape;
    NoGradGuard<double> ng(tape);
    const Shape sh{B, L, C};
    Tensor<double> h = ops::gated_recurrence(tape, Tensor<double>(z.data(), nullptr, sh), Tensor<double>(bias.data(), nullptr, Shape{C}),
                                             Tensor<double>(v.data(), nullptr, sh), lb);
    // Scan: start from h = (1−f)⊙v, g = f; for offset 1, 2, 4, …: h += g⊙shift(h), g ⊙= shift(g), zero fill.
    std::vector<double> f(B * L * C), hs(B * L * C);
    for (int64_t i = 0; i < B * L * C; ++i) {
        f[i] = lb + (1 - lb) / (1 + std::exp(-(z[i] + bias[i % C])));
        hs[i] = (1 - f[i]) * v[i];
    }
    std::vector<double> g = f;
    int passes = 0;
    for (int64_t off = 1; off < L; off *= 2, ++passes) {
        std::vector<double> h2 = hs, g2 = g;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = off; t < L; ++t)
                for (int64_t c = 0; c < C; ++c) {
                    const int64_t i = (b * L + t) * C + c, j = (b * L + t - off) * C + c;
                    h2[i] = hs[i] + g[i] * hs[j];
                    g2[i] = g[i] * g[j];
                }
        hs.swap(h2), g.swap(g2);
    }
    CHECK(passes == 6);
    double worst = 0, maxh = 0;
    for (int64_t i = 0; i < B * L * C; ++i) worst = std::max(worst, std::abs(hs[i] - h.data[i])), maxh = std::max(maxh, std::abs(hs[i]));
    CHECK(maxh > 0.1);
    CHECK(worst < 1e-12);
}

TEST_CASE("thunderbolt is causal by default; upstream_compat's GroupNorm sees later positions") {
    for (bool compat : {false, true}) {
        examples::ThunderboltConfig c = tb_tiny();
        c.upstream_compat = compat;
        examples::Thunderbolt<float> m("thunderbolt", c);
        Rng rng(4);
        m.init(rng);
        std::vector<int32_t> a(16), b;
        for (auto& t : a) t = int32_t(rng.below(300));
        b = a;
        b[12] = (b[12] + 1) % 300;  // change one later token
        Tape<float> tape;
        NoGradGuard<float> ng(tape);
        Tensor<float> la = m.logits(tape, a.data(), 1, 16);
        Tensor<float> lb = m.logits(tape, b.data(), 1, 16);
        double diff = 0;
        for (int64_t i = 0; i < 12 * 300; ++i) diff = std::max(diff, double(std::abs(la.data[i] - lb.data[i])));
        CAPTURE(compat);
        if (compat) CHECK(diff > 1e-4);
        else CHECK(diff == 0.0);
    }
}

TEST_CASE("cached thunderbolt generation equals a full forward over the whole prefix for 200 tokens") {
    examples::ThunderboltConfig c = tb_tiny();
    c.d_model = 48, c.n_heads = 4, c.d_head = 12, c.d_ffn = 96, c.seq_len = 200;
    examples::Thunderbolt<float> model("thunderbolt", c);
    Rng rng(12);
    model.init(rng);
    // Non-trivial shifts, gate biases and norms so every path of the step matters.
    for (auto& p : model.params().infos())
        if (p.name.find("mix") != std::string::npos || p.name.find("f_bias") != std::string::npos ||
            p.name.find(".bias") != std::string::npos)
            nn::init_normal(model.params().get(p.name), rng, 0.5);
    std::vector<int32_t> ids(200);
    for (auto& t : ids) t = int32_t(rng.below(300));
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    const int64_t V = c.vocab_size;
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    // Causal: row t of one forward over 200 tokens is the forward over the first t+1 (spot-checked below).
    Tensor<float> lf = model.logits(tape, ids.data(), 1, 200);
    const std::vector<float> full_logits(lf.data, lf.data + lf.numel());
    struct {
        const float* data;
    } full{full_logits.data()};
    double worst = 0, max_logit = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        const float* z = gen->step(ids[t]);
        const float* zf = full.data + int64_t(t) * V;
        for (int64_t v = 0; v < V; ++v) {
            worst = std::max(worst, double(std::abs(z[v] - zf[v])));
            max_logit = std::max(max_logit, double(std::abs(zf[v])));
        }
    }
    // Spot-check that the prefix forward equals the row of the long forward at a few lengths.
    for (int64_t L : {1, 7, 64}) {
        tape.reset();
        Tensor<float> p = model.logits(tape, ids.data(), 1, L);
        Tensor<float> f2 = model.logits(tape, ids.data(), 1, 200);
        for (int64_t v = 0; v < V; ++v)
            worst = std::max(worst, double(std::abs(p.data[(L - 1) * V + v] - f2.data[(L - 1) * V + v])));
    }
    MESSAGE("thunderbolt: worst |cached - full forward| over 200 tokens: " << worst << " (max |logit| " << max_logit << ")");
    CHECK(max_logit > 0.1);
    CHECK(worst <= 1e-4);

    // reset() forgets the context: the first step again equals row 0.
    gen->reset();
    const float* z0 = gen->step(ids[0]);
    double d0 = 0;
    for (int64_t v = 0; v < V; ++v) d0 = std::max(d0, double(std::abs(z0[v] - full.data[v])));
    CHECK(d0 <= 1e-5);

    // int8 activations stay close to the exact path.
    auto g8 = model.make_generator(Quant::int8);
    double se = 0, sz = 0;
    for (size_t t = 0; t < 50; ++t) {
        const float* z = g8->step(ids[t]);
        for (int64_t v = 0; v < V; ++v) {
            const double d = z[v] - full.data[int64_t(t) * V + v];
            se += d * d, sz += double(full.data[int64_t(t) * V + v]) * full.data[int64_t(t) * V + v];
        }
    }
    MESSAGE("thunderbolt int8: RMS delta / RMS logit over 50 tokens " << std::sqrt(se / sz));
    CHECK(std::sqrt(se / sz) <= 0.1);

    // upstream_compat normalises over the whole window, which a streaming state cannot know: no cache.
    c.upstream_compat = true;
    examples::Thunderbolt<float> compat("thunderbolt", c);
    CHECK(compat.make_generator(Quant::exact) == nullptr);
}

TEST_CASE("thunderbolt matches PyTorch: tiny config") {
    examples::Thunderbolt<float> model("thunderbolt", tb_tiny());
    check_parity("thunderbolt", model, "thunderbolt-tiny", 2, 16, 1234);
}

TEST_CASE("thunderbolt upstream_compat matches PyTorch: GroupNorm over every position") {
    examples::ThunderboltConfig c = tb_tiny();
    c.upstream_compat = true;
    examples::Thunderbolt<float> model("thunderbolt", c);
    check_parity("thunderbolt", model, "thunderbolt-compat", 2, 16, 77);
}

TEST_CASE("thunderbolt matches PyTorch: real config, seq 32") {
    examples::ThunderboltConfig c;
    c.seq_len = 32;
    examples::Thunderbolt<float> model("thunderbolt", c);
    check_parity("thunderbolt", model, "thunderbolt-real", 2, 32, 42);
}

}  // namespace thunderbolt_test
