// FlashLM v6.1 "SUPERNOVA II" (--model supernova2): parameter count, the Q3 quantizer and its clipped STE,
// sparse top-2 experts against the dense run of every expert, the fused expert against the op chain,
// --recompute against the recorded forward, the aux loss, weight-decay groups, cached
// generation against the recompute window (past max_seq_len too) and PyTorch parity
// (tests/parity/supernova2.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "examples/supernova2.hpp"
#include "tests/generation_check.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace supernova2_test {

using namespace flashlm;
using examples::Supernova2;
using examples::Supernova2Config;

namespace {

Supernova2Config tiny() {
    Supernova2Config c;
    c.vocab_size = 300, c.d_model = 48, c.n_layers = 2, c.d_ffn = 96, c.d_reason = 16, c.n_scales = 3, c.n_slots = 5;
    c.max_seq_len = 32;
    return c;
}

// Router weights N(0, 0.5) instead of N(0, 0.02): logits far apart, so the top-2 choice has no near-ties
// that float round-off could flip between flashlm and PyTorch, and tokens spread over all experts.
class WideRouter : public Supernova2<float> {
public:
    using Supernova2<float>::Supernova2;
    void init(Rng& rng) override {
        Supernova2<float>::init(rng);
        for (int64_t l = 0; l < cfg().n_layers; ++l)
            nn::init_normal(params().get("layers." + std::to_string(l) + ".ffn.router.weight"), rng, 0.5);
    }
};

std::vector<int32_t> random_ids(Rng& rng, int64_t n, int64_t V) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    return ids;
}

}  // namespace

TEST_CASE("supernova2 parameter count matches VARIANTS.md (43,043,232 total, 28,887,456 active, 39,714,816 ternary)") {
    Supernova2<float> m("supernova2", Supernova2Config{});
    const int64_t total = m.params().count();
    CHECK(total == 43043232);
    int64_t expert = 0, ternary = 0;
    for (auto& info : m.params().infos()) {
        const std::string& n = info.name;
        if (n.find("layers.0.ffn.experts.0.") == 0) expert += info.shape.numel();
        if (n.find("router") == std::string::npos && n.find("emb") == std::string::npos && n != "lm_head.weight" &&
            n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0)
            ternary += info.shape.numel();
    }
    CHECK(total - expert * (4 - 2) * 8 == 28887456);
    CHECK(ternary == 39714816);
    for (const char* name : {"token_emb.weight", "pos_emb.weight", "layers.7.temporal.gate.weight",
                             "layers.0.reasoning.projections.3.weight", "layers.0.reasoning.router.bias",
                             "layers.0.state_gate.norm.scale", "layers.0.slot_mem.slots", "layers.0.ffn.router.weight",
                             "layers.0.ffn.experts.3.w_down.weight", "out_norm.scale", "lm_head.weight"})
        CHECK_MESSAGE(m.params().contains(name), name);
}

TEST_CASE("supernova2 weight decay follows upstream's name rule") {
    Supernova2<float> m("supernova2", tiny());
    int64_t off = 0;
    for (auto& info : m.params().infos()) {
        CHECK_MESSAGE(info.decay == examples::supernova2_decays(info.name), info.name);
        off += info.decay ? 0 : 1;
    }
    // per layer: 4 norms, bank router weight + bias, slots, MoE router; plus both embeddings and out_norm
    CHECK(off == 2 * 8 + 3);
    CHECK_FALSE(examples::supernova2_decays("layers.0.ffn.router.weight"));
    CHECK(examples::supernova2_decays("lm_head.weight"));
}

TEST_CASE("Q3 BitLinear: median threshold, unscaled ±1, clipped straight-through gradient") {
    const int64_t N = 6, K = 5, M = 3;
    Rng rng(5);
    std::vector<float> w(N * K), wq(N * K), x(M * K);
    for (auto& v : w) v = float(rng.normal(0, 1));
    for (auto& v : x) v = float(rng.normal(0, 1));
    std::vector<float> a(w.size());
    for (size_t i = 0; i < w.size(); ++i) a[i] = std::abs(w[i]);
    std::sort(a.begin(), a.end());
    const float alpha = a[size_t(N * K - 1) / 2];  // torch's lower median of 30 values
    CHECK(ops::quantize_median(w.data(), wq.data(), N * K) == alpha);
    int zeros = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        CHECK(wq[i] == (w[i] > alpha ? 1.0f : (w[i] < -alpha ? -1.0f : 0.0f)));
        zeros += wq[i] == 0;
    }
    CHECK(zeros == 15);  // |W| ≤ the 15th smallest: exactly half
    std::vector<float> gw(N * K, 0), gx(M * K, 0), gw2(N * K, 0), gx2(M * K, 0);
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    Tensor<float> y = ops::bitlinear_median(tape, Tensor<float>(x.data(), gx.data(), Shape{M, K}),
                                            Tensor<float>(w.data(), gw.data(), Shape{N, K}));
    Tensor<float> y2 = ops::linear(tape, Tensor<float>(x.data(), gx2.data(), Shape{M, K}), Tensor<float>(wq.data(), gw2.data(), Shape{N, K}));
    for (int64_t i = 0; i < y.numel(); ++i) {
        CHECK(y.data[i] == doctest::Approx(y2.data[i]).epsilon(1e-6));
        y.grad[i] = y2.grad[i] = float(i % 5) - 2.0f;
    }
    tape.run_backward();
    int clipped = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        const bool pass = std::abs(w[i]) < 1.5f * alpha;
        clipped += !pass;
        CHECK(gw[i] == doctest::Approx(pass ? gw2[i] : 0.0f).epsilon(1e-6));
    }
    CHECK(clipped > 0);
    for (size_t i = 0; i < x.size(); ++i) CHECK(gx[i] == doctest::Approx(gx2[i]).epsilon(1e-6));

    // The float radix select equals nth_element on a copy (odd/even counts, repeats, zeros, signs), on one
    // thread and with per-thread histograms (from 262,144 weights).
    const int threads = max_threads();
    for (int t : {1, 2})
        for (int64_t n : {1, 2, 7, 30, 1000, 70001, 300001}) {
            std::vector<float> v(static_cast<size_t>(n)), work(static_cast<size_t>(n));
            for (auto& e : v) e = rng.uniform() < 0.1 ? 0.0f : float(std::round(rng.normal(0, 0.02) * 1e4) / 1e4);
            CAPTURE(n);
            CAPTURE(t);
            set_threads(t);
            const float fast = ops::median_abs(v.data(), n, work.data());
            set_threads(threads);
            CHECK(fast == ops::median_abs<float>(v.data(), n, work.data()));
        }
}

TEST_CASE("supernova2 sparse experts equal running every expert densely; aux loss and eval loss") {
    WideRouter sparse("supernova2", tiny());
    Supernova2Config dc = tiny();
    dc.dense_experts = true;
    WideRouter dense("supernova2", dc);
    Rng rng(7);
    sparse.init(rng);
    std::copy(sparse.params().values(), sparse.params().values() + sparse.params().flat_size(), dense.params().values());
    const int64_t B = 2, L = 24, V = sparse.vocab_size();
    auto ids = random_ids(rng, B * L, V), tg = random_ids(rng, B * L, V);
    Tape<float> t1, t2;
    sparse.params().zero_grad(), dense.params().zero_grad();
    Tensor<float> l1 = sparse.loss(t1, ids.data(), tg.data(), B, L), l2 = dense.loss(t2, ids.data(), tg.data(), B, L);
    CHECK(l1.data[0] == doctest::Approx(l2.data[0]).epsilon(1e-6));
    const double train_loss = l1.data[0];  // l1 lives in t1's arena, which t1.reset() below frees
    t1.backward(l1), t2.backward(l2);
    double num = 0, den = 0;
    for (size_t i = 0; i < sparse.params().flat_size(); ++i) {
        const double d = double(sparse.params().grads()[i]) - dense.params().grads()[i];
        num += d * d, den += double(dense.params().grads()[i]) * dense.params().grads()[i];
    }
    CHECK(std::sqrt(num / den) < 1e-5);
    // Every expert served someone, the load line adds up to the 2 · B · L · layers assignments.
    int64_t total = 0;
    for (int64_t v : sparse.expert_load()) {
        CHECK(v > 0);
        total += v;
    }
    CHECK(total == 2 * B * L * 2);
    const std::string stats = sparse.train_stats();
    CHECK(stats.rfind("experts ", 0) == 0);
    CHECK(stats.back() == '%');
    CHECK(sparse.train_stats().empty());  // counts restart after each read

    // Evaluation reports the CE alone; training adds Σ_layers 0.01·4·Σ P_e² ≥ 0.01 per layer.
    t1.reset();
    NoGradGuard<float> ng(t1);
    const double eval = sparse.loss(t1, ids.data(), tg.data(), B, L).data[0];
    t1.reset();
    Tensor<float> z = sparse.logits(t1, ids.data(), B, L);
    double ce = 0;
    for (int64_t r = 0; r < B * L; ++r) {
        const float* zr = z.data + r * V;
        double mx = zr[0], s = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(zr[v]));
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(zr[v]) - mx);
        ce += mx + std::log(s) - zr[tg[size_t(r)]];
    }
    CHECK(eval == doctest::Approx(ce / double(B * L)).epsilon(1e-5));
    const double aux = train_loss - eval;
    CHECK(aux >= 0.02 - 1e-6);
    CHECK(aux <= 0.02 * 4 + 1e-6);
}

TEST_CASE("cached supernova2 generation equals the recompute window, past max_seq_len too (exact and int8)") {
    WideRouter model("supernova2", tiny());
    Rng rng(11);
    model.init(rng);
    const int64_t T = 50;  // > max_seq_len 32: the window crops and the generator replays 2·2+1 tokens
    auto ids = random_ids(rng, T, model.vocab_size());
    auto gen = model.make_generator(Quant::exact);
    REQUIRE(gen);
    double max_logit = 0;
    for (int pass = 0; pass < 2; ++pass) {  // the second pass checks reset()
        gen->reset();
        testing::WindowDiff d = testing::cached_vs_window(model, *gen, ids, model.max_seq_len(), 3);
        max_logit = d.max_logit;
        MESSAGE("exact pass " << pass << ": max |cached - window| " << d.worst << " (max |logit| " << d.max_logit << ")");
        CHECK(d.worst <= 1e-4);
        CHECK(d.max_logit > 0.01);
    }
    auto gi = model.make_generator(Quant::int8);
    REQUIRE(gi);
    // int8 activations: a few % RMS per token, except where the int8 error flips a top-2 routing choice
    // (a discrete change, then carried two steps on by the temporal mixers). The median token is checked.
    gen->reset(), gi->reset();
    const int64_t V = model.vocab_size();
    std::vector<double> rel;
    for (size_t t = 0; t < 40; ++t) {
        const float* ze = gen->step(ids[t]);
        std::vector<float> e(ze, ze + V);
        const float* zi = gi->step(ids[t]);
        double se = 0, sz = 0;
        for (int64_t v = 0; v < V; ++v) se += double(zi[v] - e[size_t(v)]) * (zi[v] - e[size_t(v)]), sz += double(e[size_t(v)]) * e[size_t(v)];
        rel.push_back(std::sqrt(se / sz));
    }
    std::sort(rel.begin(), rel.end());
    MESSAGE("int8 vs exact, RMS delta / RMS logit per token: median " << rel[20] << ", max " << rel.back()
                                                                       << " (max |logit| " << max_logit << ")");
    CHECK(rel[0] > 0);
    CHECK(rel[20] <= 0.1);
}

TEST_CASE("expert_glu_median: the fused expert gives the unfused chain's numbers bit for bit, weights' STE included") {
    const int64_t M = 23, D = 40, F = 72, n = 13;  // ragged sizes: the buffers' 64-byte alignment matters
    Rng rng(3);
    auto randv = [&](int64_t k, double sd) {
        std::vector<float> v(static_cast<size_t>(k));
        for (auto& e : v) e = float(rng.normal(0, sd));
        return v;
    };
    const auto z = randv(M * D, 1), wg = randv(F * D, 0.1), wu = randv(F * D, 0.1), wd = randv(D * F, 0.1),
               dy = randv(n * D, 1);
    std::vector<int32_t> rows(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) rows[size_t(r)] = int32_t((r * 7 + 2) % M);
    struct Run {
        std::vector<float> y, gz, gg, gu, gd;
    };
    auto run = [&](bool fused) {
        std::vector<float> zc = z, a = wg, b = wu, c = wd;
        Run out{{}, std::vector<float>(z.size()), std::vector<float>(wg.size()), std::vector<float>(wu.size()),
                std::vector<float>(wd.size())};
        Tensor<float> Z(zc.data(), out.gz.data(), Shape{M, D}), G(a.data(), out.gg.data(), Shape{F, D}),
            U(b.data(), out.gu.data(), Shape{F, D}), W(c.data(), out.gd.data(), Shape{D, F});
        Tape<float> tape;
        tape.set_retain_grads(true);  // output gradients are seeded by hand
        Tensor<float> y;
        if (fused) {
            y = ops::expert_glu_median(tape, Z, rows.data(), n, G, U, W, tape.scratch(ops::expert_glu_work_size(n, D, F)));
        } else {
            Tensor<float> xe = ops::embedding(tape, Z, rows.data(), n);
            y = ops::bitlinear_median(tape, ops::swiglu(tape, ops::bitlinear_median(tape, xe, G), ops::bitlinear_median(tape, xe, U)), W);
        }
        std::copy(dy.begin(), dy.end(), y.grad);
        tape.run_backward();
        out.y.assign(y.data, y.data + y.numel());
        return out;
    };
    const Run a = run(false), b = run(true);
    CHECK(a.y == b.y);
    CHECK(a.gz == b.gz);
    CHECK(a.gg == b.gg);
    CHECK(a.gu == b.gu);
    CHECK(a.gd == b.gd);
    int64_t clipped = 0;  // the STE's clip did act on some weights
    for (size_t i = 0; i < wd.size(); ++i) clipped += b.gd[i] == 0.0f;
    CHECK(clipped > 0);
}

TEST_CASE("supernova2 --recompute: the same loss and gradients bit for bit") {
    WideRouter a("supernova2", tiny()), b("supernova2", tiny());
    Rng rng(9);
    a.init(rng);
    std::copy(a.params().values(), a.params().values() + a.params().flat_size(), b.params().values());
    REQUIRE(b.set_recompute(true));
    const int64_t B = 2, L = 24;
    auto ids = random_ids(rng, B * L, a.vocab_size()), tg = random_ids(rng, B * L, a.vocab_size());
    Tape<float> ta, tb;
    for (int step = 0; step < 2; ++step) {  // the second step reuses the side tape
        ta.reset(), tb.reset();
        a.params().zero_grad(), b.params().zero_grad();
        Tensor<float> la = a.loss(ta, ids.data(), tg.data(), B, L), lb = b.loss(tb, ids.data(), tg.data(), B, L);
        CHECK(la.data[0] == lb.data[0]);
        ta.backward(la), tb.backward(lb);
        CHECK(std::equal(a.params().grads(), a.params().grads() + a.params().flat_size(), b.params().grads()));
    }
    // The main tape keeps the MoE parts and the mix parts' outputs only (tiny config: ~76% of the recorded
    // forward, whose mix parts are two fused nodes; ~51% before they were; the side tape holds one mix
    // part at a time).
    CHECK(double(tb.arena().peak()) < 0.85 * double(ta.arena().peak()));
}

TEST_CASE("supernova2 config: bad values are one clear error") {
    CHECK_THROWS_WITH_AS(Supernova2Config::from_json({{"top_k_experts", 5}}, {}), doctest::Contains("top_k_experts"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(Supernova2Config::from_json({{"use_moe", false}}, {}), doctest::Contains("use_moe"),
                         std::invalid_argument);
    CHECK_THROWS_AS(Supernova2Config::from_json({{"d_model", "x"}}, {}), std::invalid_argument);
    Supernova2<float> m("supernova2", tiny());
    Tape<float> tape;
    std::vector<int32_t> ids(40, 1);
    CHECK_THROWS_WITH_AS(m.logits(tape, ids.data(), 1, 40), doctest::Contains("max_seq_len"), std::invalid_argument);
}

TEST_CASE("supernova2 matches PyTorch: tiny config, top-2 of 4 experts") {
    WideRouter model("supernova2", tiny());
    parity::check_parity("supernova2", model, "supernova2-tiny", 2, 24, 4321);
}

}  // namespace supernova2_test
