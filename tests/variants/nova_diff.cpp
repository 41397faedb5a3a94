// v5.2 Nova-Ignition as announced (examples/nova_diff.hpp, --model nova-diff): parameter count, the MoD
// weight in training/evaluation in both modes, top-1 routing (only the chosen expert runs), cached
// generation with the two-branch KV cache against full forwards (within seq_len and across refills, both
// modes), PyTorch parity (tests/parity/nova_diff.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "examples/nova_diff.hpp"
#include "tests/parity_harness.hpp"

// Own namespace: test_variants is a unity build, so the files' helpers share one translation unit.
namespace nova_diff_test {

using namespace flashlm;
using examples::NovaDiff;
using examples::NovaDiffConfig;

namespace {

NovaDiffConfig tiny() {
    NovaDiffConfig c;
    c.vocab_size = 300, c.d_model = 32, c.n_layers = 3, c.n_heads = 2, c.d_head = 8, c.expert_dim = 24, c.n_experts = 3;
    c.seq_len = 80;
    return c;
}

// Upstream's init (routers N(0, 0.01), λ near 0, norms at identity) leaves routing almost uniform and
// λ ≈ 1; parity and cache tests widen the float parameters so the routers, the MoD gate, λ (one layer
// clamped at lambda_max) and the LayerNorm affine terms all matter.
class NovaDiffSharp : public NovaDiff<float> {
public:
    using NovaDiff<float>::NovaDiff;
    void init(Rng& rng) override {
        NovaDiff<float>::init(rng);
        for (auto& info : params().infos()) {
            const std::string& n = info.name;
            Tensor<float> t = params().get(n);
            const bool bias = n.find("bias") != std::string::npos;
            if (n.find("norm") != std::string::npos || n.find("ln_out") != std::string::npos)
                for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = float((bias ? 0.0 : 1.0) + rng.normal(0, 0.3));
            else if (n.find("router") != std::string::npos)
                nn::init_normal(t, rng, 0.4);
            else if (n.find("lambda_q") != std::string::npos) {
                const double shift = n.find("blocks.0.") != std::string::npos ? 0.3 : (n.find("blocks.1.") != std::string::npos ? -0.5 : 1.0);
                for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = float(shift + rng.normal(0, 0.1));
            } else if (n == "embed.weight")
                nn::init_normal(t, rng, 1.0);
        }
    }
};

std::vector<int32_t> random_ids(Rng& rng, size_t n, int64_t V) {
    std::vector<int32_t> ids(n);
    for (auto& t : ids) t = int32_t(rng.below(uint64_t(V)));
    return ids;
}

// Worst |cached − full forward| over the steps of `ids` (full forward over the generator's window).
double cached_vs_full(NovaDiff<float>& model, const std::vector<int32_t>& ids, double& max_logit, int64_t& min_window) {
    auto gen = model.make_generator(Quant::exact);
    auto* g = dynamic_cast<examples::NovaDiffGenerator*>(gen.get());
    REQUIRE(g);
    const int64_t V = model.vocab_size();
    Tape<float> tape;
    NoGradGuard<float> guard(tape);
    double worst = 0;
    max_logit = 0;
    min_window = model.max_seq_len();
    for (size_t t = 0; t < ids.size(); ++t) {
        const float* z = gen->step(ids[t]);
        const int64_t L = g->context_length();
        REQUIRE(L <= int64_t(t) + 1);
        if (t >= size_t(model.max_seq_len())) min_window = std::min(min_window, L);
        tape.reset();
        Tensor<float> full = model.logits(tape, ids.data() + t + 1 - size_t(L), 1, L);
        const float* zf = full.data + (L - 1) * V;
        for (int64_t v = 0; v < V; ++v) {
            worst = std::max(worst, double(std::abs(z[v] - zf[v])));
            max_logit = std::max(max_logit, double(std::abs(zf[v])));
        }
    }
    return worst;
}

float loss_of(NovaDiff<float>& m, Tape<float>& tape, const std::vector<int32_t>& ids, const std::vector<int32_t>& tg,
              int64_t B, int64_t L, bool grad) {
    tape.reset();
    tape.set_grad_enabled(grad);
    const float l = m.loss(tape, ids.data(), tg.data(), B, L).data[0];
    tape.set_grad_enabled(true);
    return l;
}

}  // namespace

TEST_CASE("nova-diff parameter count matches VARIANTS.md (36,869,760; 35,315,712 ternary)") {
    NovaDiff<float> m("nova-diff", NovaDiffConfig{});
    CHECK(m.params().count() == 36869760);
    int64_t ternary = 0;
    for (auto& info : m.params().infos()) {
        const std::string& n = info.name;
        if (n.find(".W_") != std::string::npos || n.find("expert") != std::string::npos || n == "head.weight")
            ternary += info.shape.numel();
    }
    CHECK(ternary == 35315712);
    CHECK(m.params().contains("blocks.2.mod_router.router.weight"));
    CHECK_FALSE(m.params().contains("blocks.1.mod_router.router.weight"));
    CHECK(m.params().contains("blocks.11.ffn.experts.5.2.weight"));
    CHECK(m.params().get("blocks.0.attn.q_norm.weight").numel() == 576);
    CHECK(m.params().get("blocks.0.attn.lambda_q").shape == Shape{6, 48});
    CHECK_THROWS_WITH_AS(NovaDiffConfig::from_json({{"lambda_min", 0}}, {}), doctest::Contains("lambda_min"),
                         std::invalid_argument);
}

TEST_CASE("nova-diff MoD weight: always applied by default, training-only with upstream_compat") {
    Rng rng(7);
    NovaDiffSharp model("nova-diff", tiny());
    model.init(rng);
    NovaDiffConfig cc = tiny();
    cc.upstream_compat = true;
    NovaDiffSharp compat("nova-diff", cc);
    std::copy(model.params().values(), model.params().values() + model.params().flat_size(), compat.params().values());
    NovaDiffConfig cn = tiny();
    cn.mod_start = cn.n_layers;  // no MoD router at all
    NovaDiff<float> plain("nova-diff", cn);
    for (auto& info : plain.params().infos()) {
        Tensor<float> d = plain.params().get(info.name), s = model.params().get(info.name);
        std::copy(s.data, s.data + s.numel(), d.data);
    }
    const int64_t B = 2, L = 12;
    auto ids = random_ids(rng, B * L, 300), tg = random_ids(rng, B * L, 300);
    Tape<float> tape;
    const float train = loss_of(model, tape, ids, tg, B, L, true), eval = loss_of(model, tape, ids, tg, B, L, false);
    const float ctrain = loss_of(compat, tape, ids, tg, B, L, true), ceval = loss_of(compat, tape, ids, tg, B, L, false);
    const float no_mod = loss_of(plain, tape, ids, tg, B, L, false);
    MESSAGE("nova-diff loss: default train " << train << " eval " << eval << "; upstream_compat train " << ctrain
                                             << " eval " << ceval << "; without MoD " << no_mod);
    CHECK(train == eval);
    CHECK(ctrain == train);
    CHECK(ceval == no_mod);
    CHECK(std::abs(ceval - eval) > 1e-3);
}

TEST_CASE("nova-diff MoE: a routed expert gets gradient only from the tokens that chose it") {
    // Weights of experts no token chose get exactly zero gradient (they never ran); the shared expert always does.
    Rng rng(11);
    NovaDiffConfig c = tiny();
    c.n_experts = 6;
    NovaDiffSharp model("nova-diff", c);
    model.init(rng);
    auto ids = random_ids(rng, 3, 300), tg = random_ids(rng, 3, 300);
    Tape<float> tape;
    model.params().zero_grad();
    tape.backward(model.loss(tape, ids.data(), tg.data(), 1, 3));
    for (int64_t l = 0; l < c.n_layers; ++l) {
        int used = 0;
        for (int64_t e = 0; e < c.n_experts; ++e) {
            Tensor<float> w = model.params().get("blocks." + std::to_string(l) + ".ffn.experts." + std::to_string(e) + ".0.weight");
            double s = 0;
            for (int64_t i = 0; i < w.numel(); ++i) s += std::abs(w.grad[i]);
            used += s > 0;
        }
        Tensor<float> sh = model.params().get("blocks." + std::to_string(l) + ".ffn.shared_expert.0.weight");
        double s = 0;
        for (int64_t i = 0; i < sh.numel(); ++i) s += std::abs(sh.grad[i]);
        CAPTURE(l);
        CHECK(used >= 1);
        CHECK(used <= 3);  // 3 tokens, 6 experts: at least 3 experts stayed idle
        CHECK(s > 0);
    }
}

TEST_CASE("cached nova-diff generation (KV cache) equals a full forward, within seq_len and across refills") {
    for (bool compat : {false, true}) {
        CAPTURE(compat);
        NovaDiffConfig c = tiny();
        c.seq_len = 24, c.upstream_compat = compat;
        NovaDiffSharp model("nova-diff", c);
        Rng rng(21);
        model.init(rng);
        auto ids = random_ids(rng, 70, c.vocab_size);
        double max_logit = 0;
        int64_t min_window = 0;
        const double worst = cached_vs_full(model, ids, max_logit, min_window);
        MESSAGE(std::string(compat ? "nova-diff (upstream_compat)" : "nova-diff") << ": worst |cached - full forward| over 70 tokens (seq_len 24): "
                            << worst << " (max |logit| " << max_logit << ")");
        CHECK(max_logit > 0.5);
        CHECK(worst <= 1e-4);
        CHECK(min_window == 13);
    }
    // int8 activations run and stay close to the exact path.
    NovaDiffSharp model("nova-diff", tiny());
    Rng rng(3);
    model.init(rng);
    auto ge = model.make_generator(Quant::exact), gi = model.make_generator(Quant::int8);
    double d = 0, m = 0;
    for (int32_t t : random_ids(rng, 10, 300)) {
        const float *a = ge->step(t), *b = gi->step(t);
        for (int64_t v = 0; v < 300; ++v) d = std::max(d, double(std::abs(a[v] - b[v]))), m = std::max(m, double(std::abs(a[v])));
    }
    MESSAGE("nova-diff int8 vs exact generation: max |diff| " << d << " (max |logit| " << m << ")");
    CHECK(d < 0.1 * m);
}

// k_norm's bias adds q·b to every score of a query row, which the softmax cancels: its exact gradient is 0.
std::vector<std::string> key_biases(int64_t n_layers) {
    std::vector<std::string> v;
    for (int64_t l = 0; l < n_layers; ++l) v.push_back("blocks." + std::to_string(l) + ".attn.k_norm.bias");
    return v;
}

TEST_CASE("nova-diff matches PyTorch: tiny config, two attention row blocks (seq 70)") {
    NovaDiffSharp model("nova-diff", tiny());
    flashlm::parity::check_parity("nova-diff", model, "nova-diff-tiny", 2, 70, 1234, key_biases(3));
}

TEST_CASE("nova-diff matches PyTorch: real config, seq 16") {
    NovaDiff<float> model("nova-diff", NovaDiffConfig{});
    flashlm::parity::check_parity("nova-diff", model, "nova-diff-real", 1, 16, 42, key_biases(12));
}

}  // namespace nova_diff_test
