#pragma once
// FlashLM v6 "SUPERNOVA" as trained (VARIANTS.md §8.2, upstream train_v6.py@69d1280): shift-concat
// linear token mixer + P-RCSM reasoning module + ternary GLU, every projection BitLinear-Q2 (per-row
// absmean), untied ternary head. CLI name `supernova`.
//   h = embed[ids] · D^−½;  P = planner_init (learned [1, 1, d_planner])
//   block:  x += token_mix(x);  (x, P) = reasoning(x, P);  x += channel_mix(x)
//   token_mix(x)   = σ(gate_proj u) ⊙ value_proj(mix([u, shift₁ u])),  u = norm(x)
//   channel_mix(x) = down(SiLU(a) ⊙ b),  [a, b] = gate_up(norm(x))
//   reasoning (P-RCSM), r = down_proj(x):
//     conv_bank:  u = norm(r);  w = softmax(router u) (float, no bias);  r += Σ_i w_i · scales.i([u, shift_{2^i} u])
//     state_gate: g = σ(planner_to_gate P);  P' = P + planner_update(norm(P + executor_to_planner(mean_T r)));
//                 r ⊙= g
//     memory:     r += mix_gate([r, softmax(query_proj(r) slotsᵀ/√d_reason) slots])
//     x += σ(res_gate) · up_proj(r)
//   logits = head(ln_out(x))
// RMSNorm x/√(mean x² + 1e-6)·weight everywhere. Parameter names are upstream's state-dict keys.
//
// Upstream defect fixed by default (VARIANTS.md §16 Q3): upstream's planner summary mean_T r is the mean
// over the whole sequence, so every position of every later block is gated by a summary of future
// tokens. flashlm uses the causal running mean (position t averages r_0 … r_t), which makes the planner
// state per position: P_l[t] is what block l's gate uses at position t, and P_{l+1}[t] is built from
// P_l[t] and the running mean at t. "upstream_compat":
// true (train --upstream-compat) takes upstream's whole-sequence mean (one planner per sequence);
// that mode has no cached generator (a streaming state cannot see the future), so generation recomputes
// the window, as upstream's generate() does.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/bitlinear_rows.hpp>
#include <flashlm/nn/linear.hpp>
#include <flashlm/nn/slot_memory.hpp>
#include <flashlm/ops/bitlinear_rows.hpp>
#include <flashlm/ops/broadcast.hpp>
#include <flashlm/ops/concat.hpp>
#include <flashlm/ops/scale.hpp>
#include <flashlm/ops/seq_mean.hpp>
#include <flashlm/ops/softmax.hpp>
#include <flashlm/ops/time_shift.hpp>

namespace flashlm::examples {

struct SupernovaConfig {
    int64_t vocab_size = 4096, d_model = 192, n_layers = 6, d_ffn_mult = 2, n_scales = 2, d_reason = 64,
            n_mem_slots = 8, d_planner = 32, seq_len = 128;
    bool upstream_compat = false;

    int64_t d_ffn() const { return d_model * d_ffn_mult; }
    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"d_model", d_model},         {"n_layers", n_layers},
                {"d_ffn_mult", d_ffn_mult}, {"n_scales", n_scales},       {"d_reason", d_reason},
                {"n_mem_slots", n_mem_slots}, {"d_planner", d_planner},   {"seq_len", seq_len},
                {"dropout", 0.0},           {"upstream_compat", upstream_compat}};
    }
    void validate() const {
        if (vocab_size < 2 || d_model < 1 || n_layers < 1 || d_ffn_mult < 1 || d_reason < 1 || n_mem_slots < 1 ||
            d_planner < 1 || seq_len < 1)
            throw std::invalid_argument("supernova: config values must be positive");
        if (n_scales < 1 || n_scales > 16) throw std::invalid_argument("supernova: n_scales must be in [1, 16]");
    }
    static SupernovaConfig from_json(const nlohmann::json& j, SupernovaConfig c) {
        try {
            c.vocab_size = j.value("vocab_size", c.vocab_size);
            c.d_model = j.value("d_model", c.d_model);
            c.n_layers = j.value("n_layers", c.n_layers);
            c.d_ffn_mult = j.value("d_ffn_mult", c.d_ffn_mult);
            c.n_scales = j.value("n_scales", c.n_scales);
            c.d_reason = j.value("d_reason", c.d_reason);
            c.n_mem_slots = j.value("n_mem_slots", c.n_mem_slots);
            c.d_planner = j.value("d_planner", c.d_planner);
            c.seq_len = j.value("seq_len", c.seq_len);
            c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
            // Upstream's config carries dropout = 0 and its model never reads it.
            if (j.value("dropout", 0.0) != 0.0) throw std::invalid_argument("supernova: dropout is not supported (upstream: 0)");
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument(std::string("supernova: config value of the wrong type: ") + e.what());
        }
        c.validate();
        return c;
    }
};

// v6 recipe (VARIANTS.md §8.2): AdamW 4e-3, betas (0.9, 0.95), wd 0.05 on every parameter, 100 warm-up
// steps, cosine with warm restarts (cycle 500, peak ×0.85 per cycle, floor 1e-4), clip 1.0, batch 4 × accum 2,
// seq 128, vocab 4096.
inline Recipe supernova_recipe() {
    Recipe rc;
    rc.lr = 4e-3, rc.min_lr = 1e-4, rc.weight_decay = 0.05, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 100, rc.batch = 4, rc.accum = 2, rc.seq = 128, rc.vocab = 4096;
    rc.lr_cycle = 500, rc.lr_cycle_decay = 0.85;  // upstream's cosine with warm restarts
    return rc;
}

namespace supernova_detail {
// torch.nn.Linear's default weight init: U(−1/√fan_in, 1/√fan_in).
template <class T>
void init_uniform_fan_in(Tensor<T> t, int64_t fan_in, Rng& rng) {
    const double b = 1.0 / std::sqrt(double(fan_in));
    for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = T((2 * rng.uniform() - 1) * b);
}
}  // namespace supernova_detail

template <class T>
struct SupernovaBlock {
    // token_mix
    nn::RMSNorm<T> tm_norm;
    nn::BitLinearRows<T> tm_mix, tm_gate, tm_value;
    // reasoning (P-RCSM)
    nn::BitLinearRows<T> down_proj, up_proj;
    nn::RMSNorm<T> bank_norm;
    std::vector<nn::BitLinearRows<T>> scales;
    nn::Linear<T> router;
    nn::BitLinearRows<T> planner_to_gate, executor_to_planner, planner_update;
    nn::RMSNorm<T> sg_norm;
    nn::SlotMemory<T> memory;
    nn::BitLinearRows<T> query_proj, mix_gate;
    ParamStore<T>* ps = nullptr;
    std::size_t res_gate = 0;
    // channel_mix
    nn::RMSNorm<T> cm_norm;
    nn::BitLinearRows<T> gate_up, down;

    void declare(ParamStore<T>& p, const std::string& pre, const SupernovaConfig& c) {
        const int64_t D = c.d_model, R = c.d_reason, Pl = c.d_planner;
        ps = &p;
        auto J = [&](const std::string& n) { return nn::join(pre, n); };
        tm_norm.declare(p, J("token_mix.norm"), D, 1e-6, "weight");
        tm_mix.declare(p, J("token_mix.mix"), 2 * D, D);
        tm_gate.declare(p, J("token_mix.gate_proj"), D, D);
        tm_value.declare(p, J("token_mix.value_proj"), D, D);
        down_proj.declare(p, J("reasoning.down_proj"), D, R);
        bank_norm.declare(p, J("reasoning.conv_bank.norm"), R, 1e-6, "weight");
        scales.resize(size_t(c.n_scales));
        for (int64_t i = 0; i < c.n_scales; ++i)
            scales[size_t(i)].declare(p, J("reasoning.conv_bank.scales." + std::to_string(i)), 2 * R, R);
        router.declare(p, J("reasoning.conv_bank.router"), R, c.n_scales);
        planner_to_gate.declare(p, J("reasoning.state_gate.planner_to_gate"), Pl, R);
        executor_to_planner.declare(p, J("reasoning.state_gate.executor_to_planner"), R, Pl);
        planner_update.declare(p, J("reasoning.state_gate.planner_update"), Pl, Pl);
        sg_norm.declare(p, J("reasoning.state_gate.norm"), Pl, 1e-6, "weight");
        memory.declare(p, J("reasoning.memory"), c.n_mem_slots, R);
        query_proj.declare(p, J("reasoning.memory.query_proj"), R, R);
        mix_gate.declare(p, J("reasoning.memory.mix_gate"), 2 * R, R);
        up_proj.declare(p, J("reasoning.up_proj"), R, D);
        res_gate = p.add(J("reasoning.res_gate"), Shape{1});
        cm_norm.declare(p, J("channel_mix.norm"), D, 1e-6, "weight");
        gate_up.declare(p, J("channel_mix.gate_up"), D, 2 * c.d_ffn());
        down.declare(p, J("channel_mix.down"), c.d_ffn(), D);
    }
    void init(Rng& rng, const SupernovaConfig& c) {
        tm_norm.init(rng), bank_norm.init(rng), sg_norm.init(rng), cm_norm.init(rng);
        for (auto* l : {&tm_mix, &tm_gate, &tm_value, &down_proj, &up_proj, &planner_to_gate, &executor_to_planner,
                        &planner_update, &query_proj, &mix_gate, &gate_up, &down})
            l->init(rng);
        for (auto& s : scales) s.init(rng);
        supernova_detail::init_uniform_fan_in(router.w(), c.d_reason, rng);
        memory.init(rng, 0.01);
        nn::init_constant(ps->get(res_gate), T(0));
    }

    // x: [B, T, D]; P: [B, T, d_planner] (the planner each position's gate reads). Returns the new x
    // and writes the next block's planner to P.
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, Tensor<T>& P, bool compat) const {
        // token_mix
        Tensor<T> u = tm_norm(tape, x);
        Tensor<T> m = tm_mix(tape, ops::concat_cols(tape, u, ops::time_shift(tape, u, 1)));
        x = ops::add(tape, x, ops::mul(tape, ops::sigmoid(tape, tm_gate(tape, u)), tm_value(tape, m)));
        // reasoning: multi-scale bank
        Tensor<T> r = down_proj(tape, x);
        Tensor<T> h = bank_norm(tape, r);
        Tensor<T> w = ops::softmax(tape, router(tape, h));
        for (size_t i = 0; i < scales.size(); ++i) {
            Tensor<T> s = scales[i](tape, ops::concat_cols(tape, h, ops::time_shift(tape, h, int64_t(1) << i)));
            r = ops::add(tape, r, ops::mul_col(tape, s, w, int64_t(i)));
        }
        // state gate: the gate reads the incoming planner; the update reads the un-gated r
        Tensor<T> g = ops::sigmoid(tape, planner_to_gate(tape, P));
        Tensor<T> summary = executor_to_planner(tape, ops::seq_mean(tape, r, !compat));
        P = ops::add(tape, P, planner_update(tape, sg_norm(tape, ops::add(tape, P, summary))));
        r = ops::mul(tape, r, g);
        // slot memory
        Tensor<T> read = memory(tape, query_proj(tape, r));
        r = ops::add(tape, r, mix_gate(tape, ops::concat_cols(tape, r, read)));
        x = ops::add(tape, x, ops::mul_scalar(tape, up_proj(tape, r), ops::sigmoid(tape, ps->get(res_gate))));
        // channel_mix
        auto [a, b] = ops::split2(tape, gate_up(tape, cm_norm(tape, x)));
        return ops::add(tape, x, down(tape, ops::swiglu(tape, a, b)));
    }
};

template <class T>
class Supernova : public LanguageModel<T> {
public:
    Supernova(std::string name, SupernovaConfig c) : name_(std::move(name)), cfg_(c) {
        cfg_.validate();
        auto& p = this->params_;
        embed_.declare(p, "embed", cfg_.vocab_size, cfg_.d_model);
        blocks_.resize(size_t(cfg_.n_layers));
        for (int64_t i = 0; i < cfg_.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), cfg_);
        ln_out_.declare(p, "ln_out", cfg_.d_model, 1e-6, "weight");
        head_.declare(p, "head", cfg_.d_model, cfg_.vocab_size);
        planner_init_ = p.add("planner_init", Shape{1, 1, cfg_.d_planner});
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const SupernovaConfig& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embed_.init(rng, 0.02);
        for (auto& b : blocks_) b.init(rng, cfg_);
        ln_out_.init(rng);
        head_.init(rng);
        nn::init_normal(this->params_.get(planner_init_), rng, 0.01);
    }

    // ln_out(x) after the last block, [B, L, D].
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        const int64_t D = cfg_.d_model;
        Tensor<T> x = ops::mul_const(tape, embed_(tape, ids, B * L).reshape(Shape{B, L, D}), 1.0 / std::sqrt(double(D)));
        Tensor<T> P = ops::broadcast_rows(tape, this->params_.get(planner_init_), Shape{B, L, cfg_.d_planner});
        for (auto& b : blocks_) x = b(tape, x, P, cfg_.upstream_compat);
        return ln_out_(tape, x);
    }
    // The head is fused with the cross-entropy (no [B·L, V] logits kept): it runs on the Q2 codes W̃ and
    // its weight gradient lands on the float weight, the identity STE of ops::bitlinear_rows.
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        Tensor<T> h = hidden(tape, ids, B, L);
        Tensor<T> W = head_.w();
        T* wq = tape.scratch(W.numel());
        ops::quantize_absmean_rows(W.data, wq, W.dim(0), W.dim(1));
        return ops::tied_head_cross_entropy(tape, h, Tensor<T>(wq, W.grad, W.shape), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return head_(tape, hidden(tape, ids, B, L));
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    SupernovaConfig cfg_;
    nn::Embedding<T> embed_;
    std::vector<SupernovaBlock<T>> blocks_;
    nn::RMSNorm<T> ln_out_;
    nn::BitLinearRows<T> head_;
    std::size_t planner_init_ = 0;
};

// Cached SUPERNOVA generation, one token at a time. Per block it keeps the token mixer's previous
// normalised row (D floats), the bank's last 2^(n_scales−1) normalised rows (a ring of d_reason-rows)
// and the running sum of r for the causal planner mean (d_reason floats); the planner itself is rebuilt
// through the blocks for every token from planner_init, as in the forward. Ternary weights are packed
// (Q2 codes + per-row α), the router is float. The state is never cropped: step t's logits equal a
// full forward over all t+1 tokens since reset(). Nothing is allocated after construction.
class SupernovaGenerator : public Generator {
public:
    SupernovaGenerator(const Supernova<float>& m, Quant q) : c_(m.cfg()), q_(q) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto W = [&](const std::string& n) { return ps.get(n).data; };
        auto F = [&](const std::string& n) { return nn::FrozenBitLinearRows(ps.get(n + ".weight")); };
        const int64_t D = c_.d_model, R = c_.d_reason, Pl = c_.d_planner;
        emb_ = W("embed.weight");
        ln_out_ = W("ln_out.weight");
        planner_init_ = W("planner_init");
        head_ = F("head");
        span_ = int64_t(1) << (c_.n_scales - 1);
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Block b;
            b.tm_norm = W(p + "token_mix.norm.weight");
            b.tm_mix = F(p + "token_mix.mix"), b.tm_gate = F(p + "token_mix.gate_proj");
            b.tm_value = F(p + "token_mix.value_proj");
            b.down_proj = F(p + "reasoning.down_proj"), b.up_proj = F(p + "reasoning.up_proj");
            b.bank_norm = W(p + "reasoning.conv_bank.norm.weight");
            for (int64_t s = 0; s < c_.n_scales; ++s) b.scales.push_back(F(p + "reasoning.conv_bank.scales." + std::to_string(s)));
            b.router = W(p + "reasoning.conv_bank.router.weight");
            b.p2g = F(p + "reasoning.state_gate.planner_to_gate");
            b.e2p = F(p + "reasoning.state_gate.executor_to_planner");
            b.pupd = F(p + "reasoning.state_gate.planner_update");
            b.sg_norm = W(p + "reasoning.state_gate.norm.weight");
            b.slots = W(p + "reasoning.memory.slots");
            b.query = F(p + "reasoning.memory.query_proj"), b.mix_gate = F(p + "reasoning.memory.mix_gate");
            b.res = 1.0f / (1.0f + std::exp(-W(p + "reasoning.res_gate")[0]));
            b.cm_norm = W(p + "channel_mix.norm.weight");
            b.gate_up = F(p + "channel_mix.gate_up"), b.down = F(p + "channel_mix.down");
            b.prev_u.resize(size_t(D));
            b.ring.resize(size_t(span_ * R));
            b.rsum.resize(size_t(R));
            blocks_.push_back(std::move(b));
        }
        const size_t Ff = size_t(c_.d_ffn());
        x_.resize(size_t(D)), cat_.resize(size_t(2 * D)), t1_.resize(size_t(D)), t2_.resize(size_t(D));
        r_.resize(size_t(R)), h_.resize(size_t(R)), s_.resize(size_t(R)), w_.resize(size_t(c_.n_scales));
        hcat_.resize(size_t(2 * R)), g_.resize(size_t(R)), mean_.resize(size_t(R)), a_.resize(size_t(c_.n_mem_slots));
        P_.resize(size_t(Pl)), Pn_.resize(size_t(Pl)), pt_.resize(size_t(Pl)), pu_.resize(size_t(Pl));
        gu_.resize(2 * Ff), xq_.resize(std::max<size_t>(2 * size_t(D), 2 * Ff));
        logits_.resize(size_t(c_.vocab_size));
        reset();
    }
    void reset() override {
        for (auto& b : blocks_) {
            std::fill(b.prev_u.begin(), b.prev_u.end(), 0.0f);
            std::fill(b.ring.begin(), b.ring.end(), 0.0f);
            std::fill(b.rsum.begin(), b.rsum.end(), 0.0);
        }
        pos_ = 0;
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, R = c_.d_reason, Pl = c_.d_planner, V = c_.vocab_size, Ff = c_.d_ffn();
        if (token < 0 || token >= V) throw std::out_of_range("token id outside the vocabulary");
        const float es = 1.0f / std::sqrt(float(D));
        for (int64_t c = 0; c < D; ++c) x_[size_t(c)] = emb_[int64_t(token) * D + c] * es;
        std::copy(planner_init_, planner_init_ + Pl, P_.begin());
        const float scale = float(1.0 / std::sqrt(double(R)));
        for (auto& b : blocks_) {
            // token_mix
            float* u = cat_.data();
            nn::rmsnorm_vec(x_.data(), b.tm_norm, u, D, 1e-6f);
            std::copy(b.prev_u.begin(), b.prev_u.end(), cat_.begin() + D);
            std::copy(u, u + D, b.prev_u.begin());
            b.tm_gate(u, t1_.data(), q_, xq_.data());
            b.tm_mix(cat_.data(), t2_.data(), q_, xq_.data());
            b.tm_value(t2_.data(), cat_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += cat_[size_t(c)] / (1.0f + std::exp(-t1_[size_t(c)]));
            // reasoning: bank; ring slot j holds the normalised row of position j mod span
            b.down_proj(x_.data(), r_.data(), q_, xq_.data());
            nn::rmsnorm_vec(r_.data(), b.bank_norm, h_.data(), R, 1e-6f);
            kernels::dense_f32_matvec(b.router, c_.n_scales, R, h_.data(), w_.data());
            ops::softmax_row(w_.data(), w_.data(), c_.n_scales);
            std::copy(h_.begin(), h_.end(), hcat_.begin());
            for (int64_t i = 0; i < c_.n_scales; ++i) {
                const int64_t off = int64_t(1) << i;
                float* dst = hcat_.data() + R;
                if (pos_ >= off) {
                    const float* src = b.ring.data() + ((pos_ - off) % span_) * R;
                    std::copy(src, src + R, dst);
                } else {
                    std::fill(dst, dst + R, 0.0f);
                }
                b.scales[size_t(i)](hcat_.data(), s_.data(), q_, xq_.data());
                for (int64_t c = 0; c < R; ++c) r_[size_t(c)] += w_[size_t(i)] * s_[size_t(c)];
            }
            std::copy(h_.begin(), h_.end(), b.ring.begin() + (pos_ % span_) * R);
            // state gate with the running mean
            for (int64_t c = 0; c < R; ++c) {
                b.rsum[size_t(c)] += double(r_[size_t(c)]);
                mean_[size_t(c)] = float(b.rsum[size_t(c)] / double(pos_ + 1));
            }
            b.p2g(P_.data(), g_.data(), q_, xq_.data());
            b.e2p(mean_.data(), pt_.data(), q_, xq_.data());
            for (int64_t c = 0; c < Pl; ++c) pt_[size_t(c)] += P_[size_t(c)];
            nn::rmsnorm_vec(pt_.data(), b.sg_norm, pu_.data(), Pl, 1e-6f);
            b.pupd(pu_.data(), Pn_.data(), q_, xq_.data());
            for (int64_t c = 0; c < Pl; ++c) P_[size_t(c)] += Pn_[size_t(c)];
            for (int64_t c = 0; c < R; ++c) r_[size_t(c)] /= 1.0f + std::exp(-g_[size_t(c)]);
            // slot memory
            b.query(r_.data(), s_.data(), q_, xq_.data());
            std::copy(r_.begin(), r_.end(), hcat_.begin());
            nn::slot_memory_read(s_.data(), b.slots, c_.n_mem_slots, R, scale, a_.data(), hcat_.data() + R);
            b.mix_gate(hcat_.data(), s_.data(), q_, xq_.data());
            for (int64_t c = 0; c < R; ++c) r_[size_t(c)] += s_[size_t(c)];
            b.up_proj(r_.data(), t1_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += b.res * t1_[size_t(c)];
            // channel_mix
            nn::rmsnorm_vec(x_.data(), b.cm_norm, t2_.data(), D, 1e-6f);
            b.gate_up(t2_.data(), gu_.data(), q_, xq_.data());
            nn::silu_mul(gu_.data(), gu_.data() + Ff, Ff);
            b.down(gu_.data(), t1_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t1_[size_t(c)];
        }
        ++pos_;
        nn::rmsnorm_vec(x_.data(), ln_out_, t2_.data(), D, 1e-6f);
        head_(t2_.data(), logits_.data(), q_, xq_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *tm_norm = nullptr, *bank_norm = nullptr, *router = nullptr, *sg_norm = nullptr, *slots = nullptr,
                    *cm_norm = nullptr;
        nn::FrozenBitLinearRows tm_mix, tm_gate, tm_value, down_proj, up_proj, p2g, e2p, pupd, query, mix_gate, gate_up, down;
        std::vector<nn::FrozenBitLinearRows> scales;
        float res = 0.5f;
        std::vector<float> prev_u, ring;
        std::vector<double> rsum;
    };
    SupernovaConfig c_;
    Quant q_;
    const float *emb_ = nullptr, *ln_out_ = nullptr, *planner_init_ = nullptr;
    nn::FrozenBitLinearRows head_;
    std::vector<Block> blocks_;
    int64_t span_ = 1, pos_ = 0;
    std::vector<float> x_, cat_, t1_, t2_, r_, h_, s_, w_, hcat_, g_, mean_, a_, P_, Pn_, pt_, pu_, gu_, logits_;
    std::vector<int8_t> xq_;
};

template <class T>
std::unique_ptr<Generator> Supernova<T>::make_generator(Quant q) const {
    // Upstream's whole-sequence mean needs the future: that mode generates by recomputing the window.
    if constexpr (std::is_same_v<T, float>) {
        if (cfg_.upstream_compat) return nullptr;
        return std::make_unique<SupernovaGenerator>(*this, q);
    } else {
        return nullptr;
    }
}

// `flashlm import` of a bare upstream state dict: every size is in the tensor shapes except seq_len.
inline nlohmann::json infer_supernova_config(const io::TensorShapes& s) {
    nlohmann::json j = nlohmann::json::object();
    if (auto v = io::dim_of(s, "embed.weight", 0)) j["vocab_size"] = *v;
    if (auto d = io::dim_of(s, "embed.weight", 1)) j["d_model"] = *d;
    if (int64_t n = io::count_indexed(s, "blocks.")) j["n_layers"] = n;
    if (auto r = io::dim_of(s, "blocks.0.reasoning.down_proj.weight", 0)) j["d_reason"] = *r;
    if (auto p = io::dim_of(s, "planner_init", 2)) j["d_planner"] = *p;
    if (auto m = io::dim_of(s, "blocks.0.reasoning.memory.slots", 0)) j["n_mem_slots"] = *m;
    if (auto k = io::dim_of(s, "blocks.0.reasoning.conv_bank.router.weight", 0)) j["n_scales"] = *k;
    if (auto f = io::dim_of(s, "blocks.0.channel_mix.down.weight", 1))
        if (auto d = io::dim_of(s, "embed.weight", 1); d && *d > 0) j["d_ffn_mult"] = *f / *d;
    return j;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_SUPERNOVA for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_SUPERNOVA
extern template class Supernova<float>;
#endif

}  // namespace flashlm::examples
