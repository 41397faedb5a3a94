// FlashLM v6.1 C engine ("supernova2-engine"): parameter count, per-token independence (and upstream's
// batch-wide activation scale), cached generation == full forward, the scale-omitted upstream weight
// gradient, SGD momentum, import's config inference, and PyTorch parity (tests/parity/supernova2_engine.py) in both modes.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "examples/supernova2_engine.hpp"
#include "flashlm/optim/sgd.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace supernova2_engine_test {

using namespace flashlm;

namespace {
// d_ffn 48 and d_model 40: K = 40/48 bits is ragged for the 64-bit words; 3 layers.
examples::Supernova2EngineConfig engine_tiny(bool compat = false) {
    examples::Supernova2EngineConfig c;
    c.vocab_size = 97, c.d_model = 40, c.d_ffn = 48, c.n_layers = 3, c.seq_len = 32, c.upstream_compat = compat;
    return c;
}

std::vector<float> logits_of(examples::Supernova2Engine<float>& m, const std::vector<int32_t>& ids, int64_t B, int64_t L) {
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    Tensor<float> l = m.logits(tape, ids.data(), B, L);
    return {l.data, l.data + l.numel()};
}
}  // namespace

TEST_CASE("supernova2-engine parameter count matches VARIANTS.md (1,082,496) under upstream names") {
    examples::Supernova2Engine<float> m("supernova2-engine", examples::Supernova2EngineConfig{});
    CHECK(m.params().count() == 1082496);
    CHECK(m.cfg().param_count() == 1082496);
    CHECK(m.params().get("embed").shape == Shape{1024, 192});
    CHECK(m.params().get("W_up_5").shape == Shape{384, 192});
    CHECK(m.params().get("W_down_5").shape == Shape{192, 384});
    CHECK(m.params().get("gamma_0").shape == Shape{192});
    CHECK_FALSE(m.params().contains("W_up_6"));
    const Recipe rc = examples::supernova2_engine_recipe();
    CHECK(rc.optimizer == "sgd");
    CHECK(rc.momentum == 0.9);
    CHECK(rc.lr == 0.01);
    CHECK(rc.min_lr == 0.001);
    CHECK(rc.warmup == 100);
    CHECK(rc.batch == 256);
    CHECK(rc.vocab == 1024);
}

TEST_CASE("supernova2-engine: positions are independent by default; upstream's activation scale spans the batch") {
    for (bool compat : {false, true}) {
        CAPTURE(compat);
        examples::Supernova2Engine<float> m("supernova2-engine", engine_tiny(compat));
        Rng rng(3);
        m.init(rng);
        std::vector<int32_t> a(2 * 12);
        for (auto& t : a) t = int32_t(rng.below(97));
        std::vector<int32_t> b = a;
        b[20] = (b[20] + 5) % 97;  // another position of the batch (row 1, t 8)
        const auto la = logits_of(m, a, 2, 12), lb = logits_of(m, b, 2, 12);
        double diff = 0;  // over row 0 only
        for (int64_t i = 0; i < 12 * 97; ++i) diff = std::max(diff, double(std::abs(la[size_t(i)] - lb[size_t(i)])));
        if (compat) CHECK(diff > 1e-4);
        else CHECK(diff == 0.0);
    }
}

TEST_CASE("cached supernova2-engine generation equals a full forward for 100 tokens") {
    examples::Supernova2Engine<float> m("supernova2-engine", engine_tiny());
    Rng rng(12);
    m.init(rng);
    std::vector<int32_t> ids(100);
    for (auto& t : ids) t = int32_t(rng.below(97));
    const auto full = logits_of(m, ids, 1, 100);
    for (Quant q : {Quant::exact, Quant::int8}) {
        auto gen = m.make_generator(q);
        REQUIRE(gen);
        CHECK(gen->vocab_size() == 97);
        gen->reset();
        double worst = 0, mag = 0;
        for (int64_t t = 0; t < 100; ++t) {
            const float* l = gen->step(ids[size_t(t)]);
            for (int64_t v = 0; v < 97; ++v) {
                worst = std::max(worst, double(std::abs(l[v] - full[size_t(t * 97 + v)])));
                mag = std::max(mag, double(std::abs(l[v])));
            }
        }
        CAPTURE(worst);
        CHECK(mag > 1e-3);
        CHECK(worst <= 1e-4);
    }
    auto gen = m.make_generator(Quant::exact);
    CHECK_THROWS_AS(gen->step(97), std::out_of_range);
}

TEST_CASE("q4_linear: upstream_compat's weight gradient is the default's without the activation scale") {
    const int64_t M = 5, K = 19, N = 7;
    Rng rng(8);
    std::vector<float> x(M * K), w(N * K), dy(M * N);
    for (auto& v : x) v = float(rng.normal(0, 1));
    for (auto& v : w) v = float(rng.normal(0, 0.1));
    for (auto& v : dy) v = float(rng.normal(0, 1));
    auto run = [&](ops::Q4Options o, std::vector<float>& dx, std::vector<float>& dw) {
        dx.assign(x.size(), 0), dw.assign(w.size(), 0);
        Tape<float> tape;
        tape.set_retain_grads(true);  // output gradients are seeded by hand
        Tensor<float> tx(x.data(), dx.data(), Shape{M, K}), tw(w.data(), dw.data(), Shape{N, K});
        Tensor<float> y = ops::q4_linear(tape, tx, tw, o);
        for (int64_t i = 0; i < M * N; ++i) y.grad[i] = dy[size_t(i)];
        tape.run_backward();
    };
    std::vector<float> dx0, dw0, dx1, dw1;
    run({}, dx0, dw0);
    run({false, true}, dx1, dw1);
    CHECK(dx0 == dx1);  // the input gradient does not involve s_x
    // dW_default = Σ_i s_x,i dy_iᵀ t(x_i), dW_upstream = Σ_i dy_iᵀ t(x_i): with one row they differ by s_x.
    std::vector<float> xt(x.size());
    ops::q4_dequantize_activations(x.data(), M, K, xt.data());
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
            double d0 = 0, d1 = 0;
            for (int64_t i = 0; i < M; ++i) {
                double mean = 0;
                for (int64_t c = 0; c < K; ++c) mean += std::abs(x[size_t(i * K + c)]);
                mean = mean / K + 1e-8;
                d0 += dy[size_t(i * N + n)] * xt[size_t(i * K + k)];
                d1 += dy[size_t(i * N + n)] * std::round(xt[size_t(i * K + k)] / mean);
            }
            CHECK(dw0[size_t(n * K + k)] == doctest::Approx(d0).epsilon(1e-5));
            CHECK(dw1[size_t(n * K + k)] == doctest::Approx(d1).epsilon(1e-5));
        }
}

TEST_CASE("SGD momentum: v = mu v + g + wd p; p -= lr v (torch.optim.SGD)") {
    ParamStore<float> ps;
    ps.add("a", Shape{3});
    ps.add("b", Shape{2}, false);  // no weight decay
    ps.allocate();
    Storage<float> vel;
    vel.resize(ps.flat_size());
    std::fill(vel.data(), vel.data() + vel.size(), 0.0f);
    optim::SgdMomentum<float> sgd(ps, vel, {0.9, 0.1});
    Tensor<float> a = ps.get("a"), b = ps.get("b");
    const float a0[3] = {1, -2, 0.5f}, b0[2] = {3, -1};
    std::copy(a0, a0 + 3, a.data), std::copy(b0, b0 + 2, b.data);
    double va[3] = {0, 0, 0}, vb[2] = {0, 0}, pa[3] = {1, -2, 0.5}, pb[2] = {3, -1};
    for (int step = 0; step < 3; ++step) {
        for (int i = 0; i < 3; ++i) a.grad[i] = float(0.5 * (i + 1) + step);
        for (int i = 0; i < 2; ++i) b.grad[i] = float(-0.25 * (i + 1));
        sgd.step(0.01);
        for (int i = 0; i < 3; ++i) va[i] = 0.9 * va[i] + (0.5 * (i + 1) + step) + 0.1 * pa[i], pa[i] -= 0.01 * va[i];
        for (int i = 0; i < 2; ++i) vb[i] = 0.9 * vb[i] + (-0.25 * (i + 1)), pb[i] -= 0.01 * vb[i];
    }
    for (int i = 0; i < 3; ++i) CHECK(a.data[i] == doctest::Approx(pa[i]).epsilon(1e-6));
    for (int i = 0; i < 2; ++i) CHECK(b.data[i] == doctest::Approx(pb[i]).epsilon(1e-6));
    CHECK(a.data[0] != doctest::Approx(1.0));
}

TEST_CASE("supernova2-engine PyTorch parity (tiny config, both modes)") {
    for (bool compat : {false, true}) {
        CAPTURE(compat);
        examples::Supernova2Engine<float> m("supernova2-engine", engine_tiny(compat));
        parity::check_parity("supernova2-engine", m, compat ? "sn2e-compat" : "sn2e", 2, 16, 1234);
    }
}

}  // namespace supernova2_engine_test
