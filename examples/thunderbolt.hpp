#pragma once
// FlashLM v5 "Thunderbolt" (VARIANTS.md §6): ternary (Q1') HGRN-style gated linear recurrence + token shift.
//   x = embed[ids] → n_layers × block → LayerNorm ln_out → head tied to the embedding.
// Block l:  h = shift(ln1(x), mix1);  x += rec(h)                 (nn::ParallelGatedRecurrence, lb = 0.9·l/(L−1))
//           h = shift(ln2(x), mix2);  x += ffn_down( relu(ffn_up(h))² )
// Parameter names are the upstream state-dict keys (model.py@4b751d4): embed, blocks.{i}.{ln1, ln2, mix1,
// mix2, rec.{W_f, W_v, W_o, W_proj, f_bias, gn}, ffn_up, ffn_down}, ln_out; head.weight aliases
// embed.weight. LayerNorms are torch defaults (affine, eps 1e-5).
//
// One upstream defect is fixed by default (VARIANTS.md §16 Q3) and reproduced with "upstream_compat": true:
// upstream's GroupNorm normalises o⊙h over each head's channels *and every position of the window*, so a
// position's output depends on later tokens (training sees the future; generation differs from training).
// flashlm normalises each head at each position on its own (causal), which also lets cached generation
// keep O(1) state per token.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/bitlinear_q1p.hpp>
#include <flashlm/nn/gated_recurrence.hpp>
#include <flashlm/nn/group_norm.hpp>
#include <flashlm/nn/token_shift.hpp>
#include <flashlm/ops/relu_squared.hpp>
#include <flashlm/ops/shift_relu2_residual.hpp>

namespace flashlm::examples {

struct ThunderboltConfig {
    int64_t vocab_size = 8192, d_model = 384, n_heads = 8, d_head = 48, n_layers = 18, d_ffn = 1152, seq_len = 256;
    bool upstream_compat = false;

    int64_t inner() const { return n_heads * d_head; }
    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"d_model", d_model}, {"n_heads", n_heads},   {"d_head", d_head},
                {"n_layers", n_layers},     {"d_ffn", d_ffn},     {"seq_len", seq_len}, {"upstream_compat", upstream_compat}};
    }
    static ThunderboltConfig from_json(const nlohmann::json& j, ThunderboltConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_heads = j.value("n_heads", c.n_heads);
        c.d_head = j.value("d_head", c.d_head);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.d_ffn = j.value("d_ffn", c.d_ffn);
        c.seq_len = j.value("seq_len", c.seq_len);
        c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
        if (c.vocab_size < 2 || c.d_model < 1 || c.n_heads < 1 || c.d_head < 1 || c.n_layers < 1 || c.d_ffn < 1 ||
            c.seq_len < 1)
            throw std::invalid_argument("thunderbolt: config values must be positive");
        return c;
    }
};

template <class T>
struct ThunderboltBlock {
    nn::GroupNorm<T> ln1, ln2;  // one group, per position: LayerNorm
    nn::TokenShift<T> mix1, mix2;
    nn::ParallelGatedRecurrence<T> rec;
    nn::BitLinearQ1p<T> ffn_up, ffn_down;
    bool unfused = false;  // tests and benches: the sub-layers as op-by-op chains

    void declare(ParamStore<T>& p, const std::string& pre, const ThunderboltConfig& c, int64_t index) {
        const int64_t D = c.d_model;
        ln1.declare(p, nn::join(pre, "ln1"), D);
        ln2.declare(p, nn::join(pre, "ln2"), D);
        mix1.declare(p, nn::join(pre, "mix1"), D);
        mix2.declare(p, nn::join(pre, "mix2"), D);
        rec.declare(p, nn::join(pre, "rec"), D, c.n_heads, c.d_head, index, c.n_layers);
        ffn_up.declare(p, nn::join(pre, "ffn_up"), D, c.d_ffn);
        ffn_down.declare(p, nn::join(pre, "ffn_down"), c.d_ffn, D);
    }
    void init(Rng& rng) {
        ln1.init(rng);
        ln2.init(rng);
        mix1.init(rng);
        mix2.init(rng);
        rec.init(rng);
        ffn_up.init(rng);
        ffn_down.init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, const ThunderboltConfig& c) const {
        if (!unfused) {  // two nodes (ops/shift_recurrence_residual.hpp, ops/shift_relu2_residual.hpp)
            // upstream's whole-window GroupNorm (upstream_compat) stays the chain's
            x = c.upstream_compat ? ops::add(tape, x, rec(tape, mix1(tape, ln1(tape, x)), true))
                                  : ops::shift_recurrence_residual(tape, x, rec.mixer(ln1, mix1.m()));
            return ops::shift_relu2_residual(tape, x, ln2.w(), ln2.b(), mix2.m(), ffn_up.w(), ffn_down.w(), ln2.eps);
        }
        x = ops::add(tape, x, rec(tape, mix1(tape, ln1(tape, x)), c.upstream_compat));
        Tensor<T> h = mix2(tape, ln2(tape, x));
        return ops::add(tape, x, ffn_down(tape, ops::relu_squared(tape, ffn_up(tape, h))));
    }
};

template <class T>
class Thunderbolt : public LanguageModel<T> {
public:
    Thunderbolt(std::string name, ThunderboltConfig c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        embed_.declare(p, "embed", c.vocab_size, c.d_model);
        blocks_.resize(size_t(c.n_layers));
        for (int64_t i = 0; i < c.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), c, i);
        ln_out_.declare(p, "ln_out", c.d_model);
        p.alias("head.weight", "embed.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const ThunderboltConfig& cfg() const { return cfg_; }
    double block_lower_bound(int64_t i) const { return blocks_.at(size_t(i)).rec.lower_bound; }
    // Tests and benches: run the sub-layers as op-by-op chains.
    void set_unfused(bool on) {
        for (auto& b : blocks_) b.unfused = on;
    }

    void init(Rng& rng) override {
        embed_.init(rng, 0.02);
        for (auto& b : blocks_) b.init(rng);
        ln_out_.init(rng);
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = embed_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model});
        for (auto& b : blocks_) x = b(tape, x, cfg_);
        return ln_out_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L), embed_.w(), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embed_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    ThunderboltConfig cfg_;
    nn::Embedding<T> embed_;
    std::vector<ThunderboltBlock<T>> blocks_;
    nn::GroupNorm<T> ln_out_;
};

// Cached Thunderbolt generation, one token at a time. Per block: the previous LayerNorm outputs of the two
// token shifts and the recurrent state h (inner floats), so a token costs O(1) in the context length and
// step t's logits equal a full forward over all t+1 tokens since reset() (the state is never cropped).
// Ternary projections are packed once with their Q1' codes; Quant::int8 quantises each input once and
// shares it between W_f, W_v and W_o. Nothing is allocated after construction.
class ThunderboltGenerator : public Generator {
public:
    ThunderboltGenerator(const Thunderbolt<float>& m, Quant q) : q_(q), c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto W = [&](const std::string& n) { return ps.get(n).data; };
        auto P = [&](const std::string& n) { return nn::FrozenBitLinear(nn::pack_ternary_q1p(ps.get(n))); };
        const size_t D = size_t(c_.d_model), I = size_t(c_.inner()), F = size_t(c_.d_ffn);
        emb_ = W("embed.weight");
        ln_out_w_ = W("ln_out.weight"), ln_out_b_ = W("ln_out.bias");
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Block b;
            b.ln1w = W(p + "ln1.weight"), b.ln1b = W(p + "ln1.bias"), b.ln2w = W(p + "ln2.weight"), b.ln2b = W(p + "ln2.bias");
            b.gnw = W(p + "rec.gn.weight"), b.gnb = W(p + "rec.gn.bias"), b.fb = W(p + "rec.f_bias");
            b.Wf = P(p + "rec.W_f.weight"), b.Wv = P(p + "rec.W_v.weight"), b.Wo = P(p + "rec.W_o.weight");
            b.Wproj = P(p + "rec.W_proj.weight"), b.up = P(p + "ffn_up.weight"), b.down = P(p + "ffn_down.weight");
            b.lb = float(m.block_lower_bound(i));
            b.s1.resize(D), b.s2.resize(D);
            const float* m1 = W(p + "mix1");
            const float* m2 = W(p + "mix2");
            for (size_t c = 0; c < D; ++c) b.s1[c] = 1.0f / (1.0f + std::exp(-m1[c])), b.s2[c] = 1.0f / (1.0f + std::exp(-m2[c]));
            b.prev1.assign(D, 0.0f), b.prev2.assign(D, 0.0f), b.h.assign(I, 0.0f);
            blocks_.push_back(std::move(b));
        }
        x_.resize(D), n_.resize(D), u_.resize(D), t_.resize(D);
        zf_.resize(I), v_.resize(I), zo_.resize(I), y_.resize(I), g_.resize(I), a_.resize(F);
        xq_.resize(std::max({D, I, F}));
        logits_.resize(size_t(c_.vocab_size));
        if (q_ == Quant::int8) head8_ = nn::FrozenHeadInt8(emb_, c_.vocab_size, c_.d_model);
    }
    void reset() override {
        for (auto& b : blocks_) {
            std::fill(b.prev1.begin(), b.prev1.end(), 0.0f);
            std::fill(b.prev2.begin(), b.prev2.end(), 0.0f);
            std::fill(b.h.begin(), b.h.end(), 0.0f);
        }
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, I = c_.inner(), F = c_.d_ffn;
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        std::copy(emb_ + int64_t(token) * D, emb_ + (int64_t(token) + 1) * D, x_.begin());
        for (auto& b : blocks_) {
            nn::group_norm_vec(x_.data(), b.ln1w, b.ln1b, n_.data(), D, 1, 1e-5f);
            nn::token_shift_step(n_.data(), b.s1.data(), b.prev1.data(), u_.data(), D);
            if (q_ == Quant::exact) {
                b.Wf(u_.data(), zf_.data(), q_, xq_.data());
                b.Wv(u_.data(), v_.data(), q_, xq_.data());
                b.Wo(u_.data(), zo_.data(), q_, xq_.data());
            } else {  // the three projections read the same u: quantise it once
                const float us = b.Wf.quantize(u_.data(), xq_.data());
                b.Wf(xq_.data(), us, zf_.data());
                b.Wv(xq_.data(), us, v_.data());
                b.Wo(xq_.data(), us, zo_.data());
            }
            const float lb = b.lb, ub = 1.0f - lb;
            for (int64_t k = 0; k < I; ++k) {
                const float s = 1.0f / (1.0f + std::exp(-(zf_[size_t(k)] + b.fb[k])));
                float& h = b.h[size_t(k)];
                h = (lb + ub * s) * h + ub * (1.0f - s) * v_[size_t(k)];
                y_[size_t(k)] = h / (1.0f + std::exp(-zo_[size_t(k)]));
            }
            nn::group_norm_vec(y_.data(), b.gnw, b.gnb, g_.data(), I, c_.n_heads, 1e-5f);
            b.Wproj(g_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            nn::group_norm_vec(x_.data(), b.ln2w, b.ln2b, n_.data(), D, 1, 1e-5f);
            nn::token_shift_step(n_.data(), b.s2.data(), b.prev2.data(), u_.data(), D);
            b.up(u_.data(), a_.data(), q_, xq_.data());
            for (int64_t k = 0; k < F; ++k) {
                const float r = std::max(a_[size_t(k)], 0.0f);
                a_[size_t(k)] = r * r;
            }
            b.down(a_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
        }
        nn::group_norm_vec(x_.data(), ln_out_w_, ln_out_b_, n_.data(), D, 1, 1e-5f);
        if (q_ == Quant::exact)
            kernels::dense_f32_matvec(emb_, c_.vocab_size, D, n_.data(), logits_.data());
        else
            head8_(n_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *ln1w = nullptr, *ln1b = nullptr, *ln2w = nullptr, *ln2b = nullptr;
        const float *gnw = nullptr, *gnb = nullptr, *fb = nullptr;
        nn::FrozenBitLinear Wf, Wv, Wo, Wproj, up, down;
        float lb = 0;
        std::vector<float> s1, s2;        // σ(mix1), σ(mix2)
        std::vector<float> prev1, prev2;  // the previous position's ln1 / ln2 outputs
        std::vector<float> h;             // recurrent state
    };
    Quant q_;
    ThunderboltConfig c_;
    const float *emb_ = nullptr, *ln_out_w_ = nullptr, *ln_out_b_ = nullptr;
    std::vector<Block> blocks_;
    nn::FrozenHeadInt8 head8_;
    std::vector<float> x_, n_, u_, t_, zf_, v_, zo_, y_, g_, a_, logits_;
    std::vector<int8_t> xq_;
};

template <class T>
std::unique_ptr<Generator> Thunderbolt<T>::make_generator(Quant q) const {
    // Upstream's GroupNorm takes statistics over the whole window, which a streaming state cannot know:
    // that mode generates by recomputing the window (the upstream loop).
    if constexpr (std::is_same_v<T, float>) {
        if (cfg_.upstream_compat) return nullptr;
        return std::make_unique<ThunderboltGenerator>(*this, q);
    } else {
        return nullptr;
    }
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_THUNDERBOLT for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_THUNDERBOLT
extern template class Thunderbolt<float>;
#endif

}  // namespace flashlm::examples
