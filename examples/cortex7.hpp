#pragma once
// FlashLM v7 "CORTEX" (VARIANTS.md §9, upstream v7/train.py@49423a9): ternary simplified RWKV with
// early-exit heads. CLI name `cortex`.
//   h = RMSNorm_in(embed[ids]) → n_layers × block → RMSNorm_out → head tied to the embedding
//   block:  x += time_mix(ln1(x));  x += channel_mix(ln2(x))
//   time_mix(u)    = Wo( ln_x( σ(Wr u) ⊙ decayed_cumsum(Wk u ⊙ Wv u, σ(decay)) ) )
//   channel_mix(u) = Wo( SiLU(W1 u) ⊙ W2 u )
// Every W* is BitLinear with the Q2 per-row quantizer; decay [D] is a float parameter (init 0.99, so
// w = σ(0.99) ≈ 0.729). After the blocks listed in exit_layers (2 and 4) a float exit gate reads x:
//   exit_gates.{e}: ln (RMSNorm), head (untied Linear D→V), gate (Linear D→64 + bias, ReLU, Linear 64→1
//   + bias, σ).
// Training objective (ops/early_exit.hpp): CE_final + Σ_e [ w_e CE_e + 0.1·diversity_e + 0.5·BCE(gate_e,
// agreement_e) ], weights 0.1 / 0.3 for the exits after blocks 2 / 4.
// Parameter names are upstream's state-dict keys; head.weight is an alias of embed.weight.
//
// Upstream defects fixed by default and reproduced with "upstream_compat": true (VARIANTS.md §16):
//  - Q1: next-token targets; upstream compares logits[:, :-1] with targets[:, 1:] (predicts t+2), for
//    every CE term and for the agreement/diversity/gate terms;
//  - Q10c: the decayed sum as the recurrence S_t = w S_{t−1} + kv_t; upstream's w^t·cumsum(kv / max(w^s,
//    1e-10)) breaks down once w^t < 1e-10 (position ≳ 73 at init);
//  - Q10b: evaluation (no gradient) reports the final head's cross-entropy; upstream's validation loss
//    is the whole training objective, auxiliary terms included.
//
// Generation. By default the final head generates. With "early_exit": true, upstream's inference rule
// is applied: at each exit, conf = 1 − H(softmax(z/τ))/ln V (τ = exit_temperature, upstream's sampling
// temperature 0.8); when the minimum of conf over every position of the context exceeds the exit's
// threshold (0.55 / 0.35), that exit's head generates. The learned gate is not used at inference
// (upstream trains it but never reads it).
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/bitlinear_rows.hpp>
#include <flashlm/nn/linear.hpp>
#include <flashlm/ops/decayed_cumsum.hpp>
#include <flashlm/ops/early_exit.hpp>
#include <flashlm/ops/linear_bias.hpp>
#include <flashlm/ops/relu.hpp>

namespace flashlm::examples {

struct Cortex7Config {
    int64_t vocab_size = 4096, d_model = 256, n_layers = 6, d_ff = 512, seq_len = 256, gate_hidden = 64;
    std::vector<int64_t> exit_layers{2, 4};  // 1-based block indices, increasing
    std::vector<double> exit_thresholds{0.55, 0.35}, exit_loss_weights{0.1, 0.3};
    double consistency_weight = 0.5, diversity_weight = 0.1, decay_init = 0.99, exit_temperature = 0.8;
    bool upstream_compat = false, early_exit = false;

    int64_t exits() const { return int64_t(exit_layers.size()); }
    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size},
                {"d_model", d_model},
                {"n_layers", n_layers},
                {"d_ff", d_ff},
                {"seq_len", seq_len},
                {"gate_hidden", gate_hidden},
                {"exit_layers", exit_layers},
                {"exit_thresholds", exit_thresholds},
                {"exit_loss_weights", exit_loss_weights},
                {"consistency_weight", consistency_weight},
                {"diversity_weight", diversity_weight},
                {"decay_init", decay_init},
                {"exit_temperature", exit_temperature},
                {"early_exit", early_exit},
                {"upstream_compat", upstream_compat}};
    }
    // Also run by the model's constructor, so a config built in code is checked too.
    void validate() const {
        if (vocab_size < 2 || d_model < 1 || n_layers < 1 || d_ff < 1 || seq_len < 1 || gate_hidden < 1)
            throw std::invalid_argument("cortex: config values must be positive");
        if (exit_thresholds.size() != exit_layers.size() || exit_loss_weights.size() != exit_layers.size())
            throw std::invalid_argument("cortex: exit_layers, exit_thresholds and exit_loss_weights need one entry per exit");
        for (size_t e = 0; e < exit_layers.size(); ++e)
            if (exit_layers[e] < 1 || exit_layers[e] > n_layers || (e > 0 && exit_layers[e] <= exit_layers[e - 1]))
                throw std::invalid_argument("cortex: exit_layers must increase within [1, n_layers]");
        if (!(exit_temperature > 0)) throw std::invalid_argument("cortex: exit_temperature must be positive");
    }
    static Cortex7Config from_json(const nlohmann::json& j, Cortex7Config c) {
        try {
            c.vocab_size = j.value("vocab_size", c.vocab_size);
            c.d_model = j.value("d_model", c.d_model);
            c.n_layers = j.value("n_layers", c.n_layers);
            c.d_ff = j.value("d_ff", c.d_ff);
            c.seq_len = j.value("seq_len", c.seq_len);
            c.gate_hidden = j.value("gate_hidden", c.gate_hidden);
            c.exit_layers = j.value("exit_layers", c.exit_layers);
            c.exit_thresholds = j.value("exit_thresholds", c.exit_thresholds);
            c.exit_loss_weights = j.value("exit_loss_weights", c.exit_loss_weights);
            c.consistency_weight = j.value("consistency_weight", c.consistency_weight);
            c.diversity_weight = j.value("diversity_weight", c.diversity_weight);
            c.decay_init = j.value("decay_init", c.decay_init);
            c.exit_temperature = j.value("exit_temperature", c.exit_temperature);
            c.early_exit = j.value("early_exit", c.early_exit);
            c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument(std::string("cortex: config value of the wrong type: ") + e.what());
        }
        c.validate();
        return c;
    }
};

// v7 recipe (VARIANTS.md §9): AdamW 3e-3, betas (0.9, 0.95), wd 0.01, batch 16 × accum 2, seq 256,
// 200 warm-up steps, then upstream's cyclic cosine (500-step cycles, peak ×0.9 per cycle, floor 3e-4),
// clip 1.0, vocab 4096.
inline Recipe cortex7_recipe() {
    Recipe rc;
    rc.lr = 3e-3, rc.min_lr = 3e-4, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 200, rc.batch = 16, rc.accum = 2, rc.seq = 256, rc.vocab = 4096;
    rc.lr_cycle = 500, rc.lr_cycle_decay = 0.9;  // upstream's cyclic cosine
    return rc;
}

namespace detail {
// torch.nn.Linear's default init for weight and bias: U(−1/√fan_in, 1/√fan_in).
template <class T>
void init_uniform_fan_in(Tensor<T> t, int64_t fan_in, Rng& rng) {
    const double b = 1.0 / std::sqrt(double(fan_in));
    for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = T((2 * rng.uniform() - 1) * b);
}
}  // namespace detail

template <class T>
struct Cortex7Block {
    nn::RMSNorm<T> ln1, ln_x, ln2;
    nn::BitLinearRows<T> Wr, Wk, Wv, Wo, W1, W2, Wc;
    ParamStore<T>* ps = nullptr;
    std::size_t decay = 0;

    void declare(ParamStore<T>& p, const std::string& pre, const Cortex7Config& c) {
        const int64_t D = c.d_model;
        ps = &p;
        ln1.declare(p, nn::join(pre, "ln1"), D, 1e-6, "weight");
        Wr.declare(p, nn::join(pre, "time_mix.Wr"), D, D);
        Wk.declare(p, nn::join(pre, "time_mix.Wk"), D, D);
        Wv.declare(p, nn::join(pre, "time_mix.Wv"), D, D);
        Wo.declare(p, nn::join(pre, "time_mix.Wo"), D, D);
        decay = p.add(nn::join(pre, "time_mix.decay"), Shape{D});
        ln_x.declare(p, nn::join(pre, "time_mix.ln_x"), D, 1e-6, "weight");
        ln2.declare(p, nn::join(pre, "ln2"), D, 1e-6, "weight");
        W1.declare(p, nn::join(pre, "channel_mix.W1"), D, c.d_ff);
        W2.declare(p, nn::join(pre, "channel_mix.W2"), D, c.d_ff);
        Wc.declare(p, nn::join(pre, "channel_mix.Wo"), c.d_ff, D);
    }
    void init(Rng& rng, const Cortex7Config& c) {
        ln1.init(rng), ln_x.init(rng), ln2.init(rng);
        for (auto* l : {&Wr, &Wk, &Wv, &Wo, &W1, &W2, &Wc}) l->init(rng);
        nn::init_constant(ps->get(decay), T(c.decay_init));
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, bool compat) const {
        Tensor<T> u = ln1(tape, x);
        Tensor<T> r = ops::sigmoid(tape, Wr(tape, u));
        Tensor<T> s = ops::decayed_cumsum(tape, ops::mul(tape, Wk(tape, u), Wv(tape, u)),
                                          ops::sigmoid(tape, ps->get(decay)), compat);
        x = ops::add(tape, x, Wo(tape, ln_x(tape, ops::mul(tape, r, s))));
        u = ln2(tape, x);
        return ops::add(tape, x, Wc(tape, ops::swiglu(tape, W1(tape, u), W2(tape, u))));
    }
};

template <class T>
struct Cortex7Exit {
    nn::RMSNorm<T> ln;
    nn::Linear<T> head;
    ParamStore<T>* ps = nullptr;
    std::size_t g0w = 0, g0b = 0, g2w = 0, g2b = 0;
    int64_t D = 0, H = 0;

    void declare(ParamStore<T>& p, const std::string& pre, const Cortex7Config& c) {
        ps = &p, D = c.d_model, H = c.gate_hidden;
        ln.declare(p, nn::join(pre, "ln"), D, 1e-6, "weight");
        head.declare(p, nn::join(pre, "head"), D, c.vocab_size);
        g0w = p.add(nn::join(pre, "gate.0.weight"), Shape{H, D});
        g0b = p.add(nn::join(pre, "gate.0.bias"), Shape{H});
        g2w = p.add(nn::join(pre, "gate.2.weight"), Shape{1, H});
        g2b = p.add(nn::join(pre, "gate.2.bias"), Shape{1});
    }
    void init(Rng& rng) {
        ln.init(rng);
        detail::init_uniform_fan_in(head.w(), D, rng);
        detail::init_uniform_fan_in(ps->get(g0w), D, rng);
        detail::init_uniform_fan_in(ps->get(g0b), D, rng);
        detail::init_uniform_fan_in(ps->get(g2w), H, rng);
        detail::init_uniform_fan_in(ps->get(g2b), H, rng);
    }
    // σ(gate MLP) of normalised rows h: [M, D] -> [M, 1].
    Tensor<T> gate(Tape<T>& tape, const Tensor<T>& h) const {
        Tensor<T> a = ops::relu(tape, ops::linear_bias(tape, h, ps->get(g0w), ps->get(g0b)));
        return ops::sigmoid(tape, ops::linear_bias(tape, a, ps->get(g2w), ps->get(g2b)));
    }
};

template <class T>
class Cortex7 : public LanguageModel<T> {
public:
    Cortex7(std::string name, Cortex7Config c) : name_(std::move(name)), cfg_(std::move(c)) {
        cfg_.validate();
        auto& p = this->params_;
        embed_.declare(p, "embed", cfg_.vocab_size, cfg_.d_model);
        ln_in_.declare(p, "ln_in", cfg_.d_model, 1e-6, "weight");
        blocks_.resize(size_t(cfg_.n_layers));
        for (int64_t i = 0; i < cfg_.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), cfg_);
        ln_out_.declare(p, "ln_out", cfg_.d_model, 1e-6, "weight");
        p.alias("head.weight", "embed.weight");
        exits_.resize(size_t(cfg_.exits()));
        for (int64_t e = 0; e < cfg_.exits(); ++e) exits_[size_t(e)].declare(p, "exit_gates." + std::to_string(e), cfg_);
        p.allocate();
        exit_x_.resize(exits_.size());
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const Cortex7Config& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embed_.init(rng, 0.02);
        ln_in_.init(rng);
        for (auto& b : blocks_) b.init(rng, cfg_);
        ln_out_.init(rng);
        for (auto& e : exits_) e.init(rng);
    }

    // Runs the blocks; keeps the residual stream after each exit layer in exit_x_. Returns x after the
    // last block (before ln_out).
    Tensor<T> blocks(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = ln_in_(tape, embed_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model}));
        size_t e = 0;
        for (int64_t i = 0; i < cfg_.n_layers; ++i) {
            x = blocks_[size_t(i)](tape, x, cfg_.upstream_compat);
            if (e < exits_.size() && cfg_.exit_layers[e] == i + 1) exit_x_[e++] = x;
        }
        return x;
    }

    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        const int64_t D = cfg_.d_model;
        Tensor<T> x = blocks(tape, ids, B, L);
        const bool compat = cfg_.upstream_compat;
        int64_t M = B * L;
        const int32_t* tg = targets;
        if (compat) {
            // Upstream v7: logits[:, :-1] against targets[:, 1:] (targets are already shifted once).
            FLASHLM_CHECK(L >= 2, "cortex upstream_compat loss needs sequences of at least 2 tokens");
            M = B * (L - 1);
            rows_.resize(size_t(M));
            shifted_.resize(size_t(M));
            for (int64_t b = 0, r = 0; b < B; ++b)
                for (int64_t t = 0; t + 1 < L; ++t, ++r) {
                    rows_[size_t(r)] = int32_t(b * L + t);
                    shifted_[size_t(r)] = targets[b * L + t + 1];
                }
            tg = shifted_.data();
        }
        auto pick = [&](const Tensor<T>& h) {
            Tensor<T> h2 = h.reshape(Shape{B * L, D});
            return compat ? ops::embedding(tape, h2, rows_.data(), M) : h2;  // row gather
        };
        argmax_final_.resize(size_t(M));
        argmax_exit_.resize(size_t(M));
        agree_.resize(size_t(M * cfg_.exits()));
        Tensor<T> total = ops::exit_head_loss(tape, pick(ln_out_(tape, x)), embed_.w(), tg, argmax_final_.data(),
                                              nullptr, 1.0, 0.0);
        // Evaluation reports the language model's cross-entropy; upstream reports the whole objective.
        if (!tape.grad_enabled() && !compat) return total;
        for (size_t e = 0; e < exits_.size(); ++e) {
            Tensor<T> h = pick(exits_[e].ln(tape, exit_x_[e]));
            Tensor<T> le = ops::exit_head_loss(tape, h, exits_[e].head.w(), tg, argmax_exit_.data(),
                                               argmax_final_.data(), cfg_.exit_loss_weights[e], cfg_.diversity_weight);
            total = ops::add_weighted(tape, total, le, 1.0);
            int32_t* agree = agree_.data() + int64_t(e) * M;  // read by the BCE backward: one slice per exit
            for (int64_t i = 0; i < M; ++i) agree[i] = argmax_exit_[size_t(i)] == argmax_final_[size_t(i)] ? 1 : 0;
            total = ops::add_weighted(tape, total, ops::binary_cross_entropy(tape, exits_[e].gate(tape, h), agree),
                                      cfg_.consistency_weight);
        }
        return total;
    }

    // Logits [B, L, V] of the head that generates: the final head, or with early_exit the first exit
    // whose confidence exceeds its threshold at every position of the batch (upstream's generate()).
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        Tensor<T> x = ln_in_(tape, embed_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model}));
        size_t e = 0;
        for (int64_t i = 0; i < cfg_.n_layers; ++i) {
            x = blocks_[size_t(i)](tape, x, cfg_.upstream_compat);
            if (e < exits_.size() && cfg_.exit_layers[e] == i + 1) {
                if (cfg_.early_exit) {
                    Tensor<T> z = ops::linear(tape, exits_[e].ln(tape, x), exits_[e].head.w());
                    double mn = std::numeric_limits<double>::infinity();
                    for (int64_t r = 0; r < B * L; ++r)
                        mn = std::min(mn, ops::exit_confidence(z.data + r * cfg_.vocab_size, cfg_.vocab_size,
                                                               cfg_.exit_temperature));
                    if (mn > cfg_.exit_thresholds[e]) return z;
                }
                ++e;
            }
        }
        return ops::linear(tape, ln_out_(tape, x), embed_.w());
    }

    // Logits [B, L, V] of exit e (tests, diagnostics).
    Tensor<T> exit_logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L, int64_t e) {
        FLASHLM_CHECK(e >= 0 && e < cfg_.exits(), "cortex: no exit " + std::to_string(e));
        blocks(tape, ids, B, L);
        return ops::linear(tape, exits_[size_t(e)].ln(tape, exit_x_[size_t(e)]), exits_[size_t(e)].head.w());
    }

    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    Cortex7Config cfg_;
    nn::Embedding<T> embed_;
    nn::RMSNorm<T> ln_in_, ln_out_;
    std::vector<Cortex7Block<T>> blocks_;
    std::vector<Cortex7Exit<T>> exits_;
    std::vector<Tensor<T>> exit_x_;
    std::vector<int32_t> rows_, shifted_;                         // upstream_compat: gathered rows, targets
    std::vector<int32_t> argmax_final_, argmax_exit_, agree_;     // early-exit loss bookkeeping
};

// Cached CORTEX generation, one token at a time: per block the decayed sum S_t = w ⊙ S_{t−1} + k_t ⊙ v_t
// ([D] floats), ternary weights packed (Q2 codes + per-row α), float heads. The state is never cropped:
// step t's logits equal a full forward over all t+1 tokens seen since reset(). With early_exit, each
// exit keeps the running minimum of its confidence since reset() (upstream's minimum over the context);
// every block still runs for every token, because the deeper blocks' states must absorb it, so an exit
// only chooses the head (and skips the final head), and an exit whose minimum has fallen below its
// threshold is not evaluated again. Nothing is allocated after construction.
class Cortex7Generator : public Generator {
public:
    Cortex7Generator(const Cortex7<float>& m, Quant q) : c_(m.cfg()), q_(q) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto W = [&](const std::string& n) { return ps.get(n).data; };
        emb_ = W("embed.weight");
        ln_in_ = W("ln_in.weight");
        ln_out_ = W("ln_out.weight");
        const int64_t D = c_.d_model;
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Block b;
            b.ln1 = W(p + "ln1.weight"), b.ln_x = W(p + "time_mix.ln_x.weight"), b.ln2 = W(p + "ln2.weight");
            b.Wr = nn::FrozenBitLinearRows(ps.get(p + "time_mix.Wr.weight"));
            b.Wk = nn::FrozenBitLinearRows(ps.get(p + "time_mix.Wk.weight"));
            b.Wv = nn::FrozenBitLinearRows(ps.get(p + "time_mix.Wv.weight"));
            b.Wo = nn::FrozenBitLinearRows(ps.get(p + "time_mix.Wo.weight"));
            b.W1 = nn::FrozenBitLinearRows(ps.get(p + "channel_mix.W1.weight"));
            b.W2 = nn::FrozenBitLinearRows(ps.get(p + "channel_mix.W2.weight"));
            b.Wc = nn::FrozenBitLinearRows(ps.get(p + "channel_mix.Wo.weight"));
            const float* dec = W(p + "time_mix.decay");
            b.w.resize(size_t(D));
            for (int64_t d = 0; d < D; ++d) b.w[size_t(d)] = 1.0f / (1.0f + std::exp(-dec[d]));
            b.S.assign(size_t(D), 0.0f);
            blocks_.push_back(std::move(b));
        }
        for (int64_t e = 0; e < c_.exits(); ++e) {
            const std::string p = "exit_gates." + std::to_string(e) + ".";
            Exit x;
            x.ln = W(p + "ln.weight"), x.head = W(p + "head.weight");
            x.layer = c_.exit_layers[size_t(e)];
            x.threshold = c_.exit_thresholds[size_t(e)];
            x.z.resize(size_t(c_.vocab_size));
            exits_.push_back(std::move(x));
        }
        const size_t F = size_t(c_.d_ff);
        x_.resize(size_t(D)), u_.resize(size_t(D)), r_.resize(size_t(D)), k_.resize(size_t(D)), v_.resize(size_t(D));
        t_.resize(size_t(D)), a_.resize(F), b_.resize(F), xq_.resize(std::max(size_t(D), F));
        logits_.resize(size_t(c_.vocab_size));
        reset();
    }
    void reset() override {
        for (auto& b : blocks_) std::fill(b.S.begin(), b.S.end(), 0.0f);
        for (auto& e : exits_) e.min_conf = std::numeric_limits<double>::infinity(), e.eligible = true;
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, F = c_.d_ff, V = c_.vocab_size;
        if (token < 0 || token >= V) throw std::out_of_range("token id outside the vocabulary");
        nn::rmsnorm_vec(emb_ + int64_t(token) * D, ln_in_, x_.data(), D, 1e-6f);
        const float* out = nullptr;
        size_t e = 0;
        for (int64_t l = 0; l < c_.n_layers; ++l) {
            Block& b = blocks_[size_t(l)];
            nn::rmsnorm_vec(x_.data(), b.ln1, u_.data(), D, 1e-6f);
            b.Wr(u_.data(), r_.data(), q_, xq_.data());
            b.Wk(u_.data(), k_.data(), q_, xq_.data());
            b.Wv(u_.data(), v_.data(), q_, xq_.data());
            for (int64_t d = 0; d < D; ++d) {
                float& s = b.S[size_t(d)];
                s = b.w[size_t(d)] * s + k_[size_t(d)] * v_[size_t(d)];
                r_[size_t(d)] = s / (1.0f + std::exp(-r_[size_t(d)]));
            }
            nn::rmsnorm_vec(r_.data(), b.ln_x, u_.data(), D, 1e-6f);
            b.Wo(u_.data(), t_.data(), q_, xq_.data());
            for (int64_t d = 0; d < D; ++d) x_[size_t(d)] += t_[size_t(d)];
            nn::rmsnorm_vec(x_.data(), b.ln2, u_.data(), D, 1e-6f);
            b.W1(u_.data(), a_.data(), q_, xq_.data());
            b.W2(u_.data(), b_.data(), q_, xq_.data());
            nn::silu_mul(a_.data(), b_.data(), F);
            b.Wc(a_.data(), t_.data(), q_, xq_.data());
            for (int64_t d = 0; d < D; ++d) x_[size_t(d)] += t_[size_t(d)];
            if (e < exits_.size() && exits_[e].layer == l + 1) {
                Exit& x = exits_[e++];
                if (c_.early_exit && x.eligible) {
                    nn::rmsnorm_vec(x_.data(), x.ln, u_.data(), D, 1e-6f);
                    kernels::dense_f32_matvec(x.head, V, D, u_.data(), x.z.data());
                    x.min_conf = std::min(x.min_conf, ops::exit_confidence(x.z.data(), V, c_.exit_temperature));
                    x.eligible = x.min_conf > x.threshold;
                    if (x.eligible && !out) out = x.z.data();
                }
            }
        }
        if (out) return out;
        nn::rmsnorm_vec(x_.data(), ln_out_, u_.data(), D, 1e-6f);
        kernels::dense_f32_matvec(emb_, V, D, u_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *ln1 = nullptr, *ln_x = nullptr, *ln2 = nullptr;
        nn::FrozenBitLinearRows Wr, Wk, Wv, Wo, W1, W2, Wc;
        std::vector<float> w, S;  // σ(decay) and the decayed sum
    };
    struct Exit {
        const float *ln = nullptr, *head = nullptr;
        int64_t layer = 0;
        double threshold = 0, min_conf = 0;
        bool eligible = true;
        std::vector<float> z;
    };
    Cortex7Config c_;
    Quant q_;
    const float *emb_ = nullptr, *ln_in_ = nullptr, *ln_out_ = nullptr;
    std::vector<Block> blocks_;
    std::vector<Exit> exits_;
    std::vector<float> x_, u_, r_, k_, v_, t_, a_, b_, logits_;
    std::vector<int8_t> xq_;
};

template <class T>
std::unique_ptr<Generator> Cortex7<T>::make_generator(Quant q) const {
    // Upstream's clamped sum depends on the position inside the window, which a streaming state
    // cannot reproduce once the window slides: that mode generates by recomputing the window.
    if constexpr (std::is_same_v<T, float>) {
        if (cfg_.upstream_compat) return nullptr;
        return std::make_unique<Cortex7Generator>(*this, q);
    } else {
        return nullptr;
    }
}

// `flashlm import` of a bare upstream state dict: the sizes its tensors fix (exit_layers, seq_len and the
// loss weights are not in the shapes; the exit count must match the default's two or come from --config).
inline nlohmann::json infer_cortex7_config(const io::TensorShapes& s) {
    nlohmann::json j = nlohmann::json::object();
    if (auto v = io::dim_of(s, "embed.weight", 0)) j["vocab_size"] = *v;
    if (auto d = io::dim_of(s, "embed.weight", 1)) j["d_model"] = *d;
    if (int64_t n = io::count_indexed(s, "blocks.")) j["n_layers"] = n;
    if (auto f = io::dim_of(s, "blocks.0.channel_mix.W1.weight", 0)) j["d_ff"] = *f;
    if (auto h = io::dim_of(s, "exit_gates.0.gate.0.weight", 0)) j["gate_hidden"] = *h;
    return j;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_CORTEX7 for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_CORTEX7
extern template class Cortex7<float>;
#endif

}  // namespace flashlm::examples
