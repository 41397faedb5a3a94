// altpav "TeenyLM Delta" (--model bolt-deltanet): parameter counts, the gated delta rule against its
// closed matrix form, cached generation (matrix state kept) against a full forward, and PyTorch parity
// (tests/parity/bolt_deltanet.py) in the default and the upstream-compatible mode.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "examples/bolt_deltanet.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace bolt_deltanet_test {

using namespace flashlm;
using examples::BoltDeltaNet;
using examples::BoltDeltaNetConfig;

namespace {

BoltDeltaNetConfig tiny() {
    BoltDeltaNetConfig c;
    c.vocab_size = 300, c.dim = 48, c.n_blocks = 2, c.num_heads = 2, c.glu_hidden = 64, c.seq_len = 128;
    return c;
}

}  // namespace

TEST_CASE("bolt-deltanet parameter counts match VARIANTS.md (5,042,112 small / 20,435,328 large)") {
    BoltDeltaNet<float> s("bolt-deltanet", BoltDeltaNetConfig::small());
    CHECK(s.params().count() == 5042112);
    CHECK(s.cfg().key_dim() == 144);
    CHECK(s.cfg().value_dim() == 288);
    CHECK(s.cfg().head_k() == 36);
    CHECK(s.cfg().head_v() == 72);
    CHECK(s.params().get("blocks.5.mixer.q_conv.weight").shape == Shape{144, 1, 4});
    CHECK(s.params().get("blocks.0.mixer.v_conv.weight").shape == Shape{288, 1, 4});
    CHECK(s.params().get("blocks.0.mixer.gk_proj.weight").shape == Shape{4, 192});
    CHECK(s.params().get("blocks.0.mixer.beta_proj.weight").shape == Shape{4, 192});
    CHECK(s.params().get("blocks.0.mixer.o_proj.weight").shape == Shape{192, 288});
    CHECK(s.params().contains("blocks.3.ffn.W_down.weight"));
    CHECK(s.params().contains("head.weight"));
    BoltDeltaNet<float> l("bolt-deltanet-large", BoltDeltaNetConfig::large());
    CHECK(l.params().count() == 20435328);
    CHECK(l.cfg().head_k() == 48);
    CHECK(l.cfg().head_v() == 96);
}

TEST_CASE("bolt-deltanet config: heads must divide the key and value widths") {
    CHECK_THROWS_WITH_AS(BoltDeltaNetConfig::from_json({{"num_heads", 5}}, BoltDeltaNetConfig::small()),
                         doctest::Contains("divisible by num_heads"), std::invalid_argument);
    CHECK_THROWS_AS(BoltDeltaNetConfig::from_json({{"expand_k", "x"}}, {}), std::invalid_argument);
    CHECK_THROWS_AS(BoltDeltaNetConfig::from_json({{"expand_v", 0.0}}, {}), std::invalid_argument);
    CHECK_THROWS_WITH_AS(BoltDeltaNetConfig::from_json({{"delta_form", "naive"}}, {}),
                         "bolt-deltanet: delta_form must be \"chunked\" or \"sequential\", got \"naive\"", std::invalid_argument);
    CHECK(BoltDeltaNetConfig::from_json({{"delta_form", "sequential"}}, {}).form() == ops::DeltaForm::sequential);
    CHECK(BoltDeltaNetConfig::small().form() == ops::DeltaForm::chunked);  // training default
}

TEST_CASE("gated_delta_rule equals the matrix recurrence S_t = a_t (I - b_t k k^T) S_{t-1} + b_t k v^T (and the fork's form)") {
    const int64_t B = 2, L = 150, H = 3, dk = 4, dv = 5;  // 150 > chunk: checkpoints in play
    Rng rng(5);
    std::vector<double> q(B * L * H * dk), k(q.size()), v(B * L * H * dv), g(B * L * H), beta(g.size());
    for (auto& x : q) x = rng.normal(0, 1);
    for (auto& x : v) x = rng.normal(0, 1);
    for (int64_t r = 0; r < B * L * H; ++r) {  // unit-norm keys keep (I - b k k^T) contractive, as in the model
        double n = 0;
        for (int64_t i = 0; i < dk; ++i) n += (k[r * dk + i] = rng.normal(0, 1)) * k[r * dk + i];
        for (int64_t i = 0; i < dk; ++i) k[r * dk + i] /= std::sqrt(n);
        g[r] = std::log(0.8 + 0.2 * rng.uniform());
        beta[r] = rng.uniform();
    }
    for (bool compat : {false, true})
    for (ops::DeltaForm form : {ops::DeltaForm::sequential, ops::DeltaForm::chunked}) {
        Tape<double> tape;
        NoGradGuard<double> ng(tape);
        Tensor<double> Q(q.data(), nullptr, Shape{B, L, H * dk}), K(k.data(), nullptr, Shape{B, L, H * dk});
        Tensor<double> Vt(v.data(), nullptr, Shape{B, L, H * dv}), G(g.data(), nullptr, Shape{B, L, H});
        Tensor<double> Bt(beta.data(), nullptr, Shape{B, L, H});
        Tensor<double> o = ops::gated_delta_rule(tape, Q, K, Vt, G, Bt, H, compat, 64, form);
        double worst = 0, biggest = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
                Eigen::MatrixXd S = Eigen::MatrixXd::Zero(dk, dv);
                for (int64_t t = 0; t < L; ++t) {
                    const int64_t r = (b * L + t) * H + h;
                    Eigen::Map<const Eigen::VectorXd> kt(k.data() + r * dk, dk), qt(q.data() + r * dk, dk);
                    Eigen::Map<const Eigen::VectorXd> vt(v.data() + r * dv, dv);
                    const double a = std::exp(g[r]), bb = beta[r];
                    const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(dk, dk);
                    if (compat) S = a * S + bb * kt * (vt - S.transpose() * kt).transpose();
                    else S = a * (I - bb * kt * kt.transpose()) * S + bb * kt * vt.transpose();
                    const Eigen::VectorXd ot = S.transpose() * qt;
                    for (int64_t j = 0; j < dv; ++j) {
                        worst = std::max(worst, std::abs(ot[j] - o.data[r * dv + j]));
                        biggest = std::max(biggest, std::abs(ot[j]));
                    }
                }
            }
        CAPTURE(compat);
        CAPTURE(int(form));
        CHECK(biggest > 0.1);
        CHECK(worst < 1e-12);
    }
}

TEST_CASE("cached bolt-deltanet generation keeps the matrix state and equals a full forward") {
    for (bool compat : {false, true}) {
        BoltDeltaNetConfig c = tiny();
        c.upstream_compat = compat;
        BoltDeltaNet<float> model("bolt-deltanet", c);
        Rng rng(31);
        model.init(rng);
        const int64_t T = 100, V = model.vocab_size();
        std::vector<int32_t> ids(T);
        for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
        Tape<float> tape;
        NoGradGuard<float> ng(tape);
        Tensor<float> full = model.logits(tape, ids.data(), 1, T);
        double max_logit = 0;
        for (int64_t i = 0; i < full.numel(); ++i) max_logit = std::max(max_logit, double(std::abs(full.data[i])));
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
                const std::string mode = std::string(compat ? "compat " : "default ") + (q == Quant::exact ? "exact" : "int8");
                MESSAGE(mode << " pass " << pass
                                                          << ": max |cached - full| " << worst << " (max |logit| "
                                                          << max_logit << ")");
                if (q == Quant::exact) CHECK(worst <= 1e-4);
                else CHECK(worst <= 0.05 * max_logit);  // activations quantised to int8 per token
            }
        }
    }
}

TEST_CASE("the two prediction rules give different models") {
    BoltDeltaNetConfig c = tiny();
    BoltDeltaNet<float> a("bolt-deltanet", c);
    c.upstream_compat = true;
    BoltDeltaNet<float> b("bolt-deltanet", c);
    Rng r1(8), r2(8);
    a.init(r1), b.init(r2);
    std::vector<int32_t> ids(40);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37) % 300);
    Tape<float> t1, t2;
    Tensor<float> za = a.logits(t1, ids.data(), 1, 40), zb = b.logits(t2, ids.data(), 1, 40);
    double diff = 0;
    for (int64_t i = 0; i < za.numel(); ++i) diff = std::max(diff, double(std::abs(za.data[i] - zb.data[i])));
    CHECK(diff > 1e-4);
}

TEST_CASE("bolt-deltanet matches PyTorch: tiny config") {
    BoltDeltaNet<float> model("bolt-deltanet", tiny());
    parity::check_parity("bolt-deltanet", model, "deltanet-tiny", 2, 24, 1234);
}

TEST_CASE("bolt-deltanet upstream_compat matches PyTorch: tiny config") {
    BoltDeltaNetConfig c = tiny();
    c.upstream_compat = true;
    BoltDeltaNet<float> model("bolt-deltanet", c);
    parity::check_parity("bolt-deltanet", model, "deltanet-compat", 2, 24, 4321);
}

TEST_CASE("bolt-deltanet matches PyTorch: real config, seq 32") {
    BoltDeltaNetConfig c = BoltDeltaNetConfig::small();
    c.seq_len = 32;
    BoltDeltaNet<float> model("bolt-deltanet", c);
    parity::check_parity("bolt-deltanet", model, "deltanet-real", 2, 32, 42);
}

TEST_CASE("gated_delta_rule: the chunked form equals the sequential reference (outputs and every gradient)") {
    // The real head shapes (small 4 × 36 × 72, large 6 × 48 × 96) at T 256, and T 200 (3 checkpoint spans
    // + 8: short last block and span); the model's decay and β ranges; both prediction rules.
    struct Case {
        int64_t L, H, dk, dv;
    };
    for (const Case cs : {Case{256, 4, 36, 72}, Case{256, 6, 48, 96}, Case{200, 4, 36, 72}}) {
        const int64_t B = 2, L = cs.L, H = cs.H, dk = cs.dk, dv = cs.dv;
        Rng rng(17);
        std::vector<float> q(B * L * H * dk), k(q.size()), v(B * L * H * dv), g(B * L * H), beta(g.size()), dout(v.size());
        for (auto* x : {&q, &k})
            for (int64_t r = 0; r < B * L * H; ++r) {  // L2-normalised per head, as in the model
                double n = 0;
                for (int64_t i = 0; i < dk; ++i) n += double((*x)[size_t(r * dk + i)] = float(rng.normal(0, 1))) * (*x)[size_t(r * dk + i)];
                for (int64_t i = 0; i < dk; ++i) (*x)[size_t(r * dk + i)] /= float(std::sqrt(n));
            }
        for (auto& x : v) x = float(rng.normal(0, 1));
        for (auto& x : dout) x = float(rng.normal(0, 1));
        for (size_t i = 0; i < g.size(); ++i) {
            g[i] = ops::log_sigmoid_scalar(float(rng.normal(0, 3))) / 16;  // the model's decay range
            beta[i] = ops::sigmoid_scalar(float(rng.normal(0, 2)));
        }
        for (bool compat : {false, true}) {
            std::vector<std::vector<std::vector<float>>> res;  // [form][o, dq, dk, dv, dg, dβ]
            for (ops::DeltaForm form : {ops::DeltaForm::sequential, ops::DeltaForm::chunked}) {
                std::vector<float> gq(q.size(), 0), gk(k.size(), 0), gv(v.size(), 0), gg(g.size(), 0), gb(beta.size(), 0);
                Tape<float> tape;
                tape.set_retain_grads(true);  // output gradients are seeded by hand
                Tensor<float> Q(q.data(), gq.data(), Shape{B, L, H * dk}), K(k.data(), gk.data(), Shape{B, L, H * dk});
                Tensor<float> Vt(v.data(), gv.data(), Shape{B, L, H * dv}), G(g.data(), gg.data(), Shape{B, L, H});
                Tensor<float> Bt(beta.data(), gb.data(), Shape{B, L, H});
                Tensor<float> o = ops::gated_delta_rule(tape, Q, K, Vt, G, Bt, H, compat, 64, form);
                std::vector<float> out(o.data, o.data + o.numel());
                std::copy(dout.begin(), dout.end(), o.grad);
                tape.run_backward();
                res.push_back({out, gq, gk, gv, gg, gb});
            }
            const char* names[] = {"o", "dq", "dk", "dv", "dg", "dbeta"};
            for (size_t t = 0; t < 6; ++t) {
                double worst = 0, big = 0;
                for (size_t i = 0; i < res[0][t].size(); ++i) {
                    worst = std::max(worst, double(std::abs(res[0][t][i] - res[1][t][i])));
                    big = std::max(big, double(std::abs(res[0][t][i])));
                }
                MESSAGE("T " << L << ", " << H << " x " << dk << " x " << dv << std::string(compat ? ", compat " : ", default ")
                             << std::string(names[t]) << ": max |chunked - sequential| " << worst << " of max " << big);
                CHECK(big > 0.01);
                CHECK(worst <= 1e-4 * big);  // relative to the tensor's largest entry
            }
        }
    }
}

}  // namespace bolt_deltanet_test
