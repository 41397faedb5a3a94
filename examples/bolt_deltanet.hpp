#pragma once
// altpav fork "TeenyLM Delta" (VARIANTS.md §11.2, A:trainv4_gdn.py@8456f4d): v4 Bolt with the gated
// causal conv replaced by a naive ternary Gated DeltaNet. CLI names `bolt-deltanet` (small) and
// `bolt-deltanet-large`.
//   embedding → n_blocks × block → RMSNorm → head tied to the embedding
//   block:  x += mixer(norm1(x));  x += ffn(norm2(x))          (ffn = v4 TernaryGLU)
//   mixer(u): q = L2_head(SiLU(q_conv(q_proj u))), k = L2_head(SiLU(k_conv(k_proj u))),
//             v = SiLU(v_conv(v_proj u)), a = exp(logσ(gk_proj u)/16), β = σ(beta_proj u),
//             o = gated_delta_rule(q, k, v, a, β) per head,  out = o_proj(o ⊙ σ(g_proj u))
// Every *_proj is BitLinear-Q1 (per-tensor absmean, identity STE, kaiming fan-out init); the convs are
// causal depthwise, kernel conv_size, no bias, N(0, 0.02) init (upstream's _init_weights skips them).
// key_dim = int(expand_k·dim), value_dim = int(expand_v·dim), split into num_heads heads.
// Parameter names are upstream's state-dict keys; head.weight is an alias of embedding.weight.
//
// Upstream deviation fixed by default (VARIANTS.md §16 Q14), reproduced with "upstream_compat": true:
// the fork predicts v_t from the undecayed state (p = S_{t−1}ᵀk); flashlm uses the published gated delta
// rule p = a_t S_{t−1}ᵀk (ops/gated_delta_rule.hpp). Both modes have cached generation.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/ops/gated_delta_rule.hpp>
#include <flashlm/ops/l2_normalize.hpp>
#include <flashlm/ops/log_sigmoid.hpp>

namespace flashlm::examples {

struct BoltDeltaNetConfig {
    int64_t vocab_size = 10000, dim = 192, n_blocks = 6, num_heads = 4, glu_hidden = 512, conv_size = 4, seq_len = 512;
    double expand_k = 0.75, expand_v = 1.5;
    bool upstream_compat = false;
    // Gated-delta-rule algorithm in training and full forwards: "chunked" (chunkwise WY/UT form) or
    // "sequential" (the per-token reference). Same function up to float rounding; cached generation is
    // always per token.
    std::string delta_form = "chunked";

    static BoltDeltaNetConfig small() { return {}; }
    static BoltDeltaNetConfig large() {
        BoltDeltaNetConfig c;
        c.dim = 384, c.n_blocks = 8, c.num_heads = 6, c.glu_hidden = 1024, c.seq_len = 1024;
        return c;
    }
    // Python's int(dim * expand) truncates toward zero.
    int64_t key_dim() const { return int64_t(double(dim) * expand_k); }
    int64_t value_dim() const { return int64_t(double(dim) * expand_v); }
    int64_t head_k() const { return key_dim() / num_heads; }
    int64_t head_v() const { return value_dim() / num_heads; }

    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"dim", dim},           {"n_blocks", n_blocks},
                {"num_heads", num_heads},   {"glu_hidden", glu_hidden}, {"expand_k", expand_k},
                {"expand_v", expand_v},     {"conv_size", conv_size}, {"seq_len", seq_len},
                {"upstream_compat", upstream_compat}, {"delta_form", delta_form}};
    }
    // Also run by the model's constructor, so a config built in code is checked too.
    void validate() const {
        if (vocab_size < 2 || dim < 1 || n_blocks < 1 || num_heads < 1 || glu_hidden < 1 || conv_size < 1 || seq_len < 1)
            throw std::invalid_argument("bolt-deltanet: config values must be positive");
        if (!(expand_k > 0) || !(expand_v > 0) || key_dim() < 1 || value_dim() < 1)
            throw std::invalid_argument("bolt-deltanet: expand_k and expand_v must give positive key/value widths");
        if (key_dim() % num_heads != 0 || value_dim() % num_heads != 0)
            throw std::invalid_argument("bolt-deltanet: key_dim " + std::to_string(key_dim()) + " and value_dim " +
                                        std::to_string(value_dim()) + " must be divisible by num_heads " +
                                        std::to_string(num_heads));
        if (delta_form != "chunked" && delta_form != "sequential")
            throw std::invalid_argument("bolt-deltanet: delta_form must be \"chunked\" or \"sequential\", got \"" +
                                        delta_form + "\"");
    }
    ops::DeltaForm form() const { return delta_form == "sequential" ? ops::DeltaForm::sequential : ops::DeltaForm::chunked; }
    static BoltDeltaNetConfig from_json(const nlohmann::json& j, BoltDeltaNetConfig c) {
        try {
            c.vocab_size = j.value("vocab_size", c.vocab_size);
            c.dim = j.value("dim", c.dim);
            c.n_blocks = j.value("n_blocks", c.n_blocks);
            c.num_heads = j.value("num_heads", c.num_heads);
            c.glu_hidden = j.value("glu_hidden", c.glu_hidden);
            c.expand_k = j.value("expand_k", c.expand_k);
            c.expand_v = j.value("expand_v", c.expand_v);
            c.conv_size = j.value("conv_size", c.conv_size);
            c.seq_len = j.value("seq_len", c.seq_len);
            c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
            c.delta_form = j.value("delta_form", c.delta_form);
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument(std::string("bolt-deltanet: config value of the wrong type: ") + e.what());
        }
        c.validate();
        return c;
    }
};

// Fork recipe (VARIANTS.md §11.2 / §5.3): AdamW betas (0.9, 0.95), wd 0.01, clip 1.0, 500 warm-up
// steps, cosine to 1e-5, vocab 10,000. Small: LR 4e-3, batch max(2, min(8, cores)), seq 512; large:
// LR 3e-3, batch max(4, min(64, 2·cores)) × accum 2, seq 1024.
inline Recipe bolt_deltanet_recipe(int cores, bool large) {
    Recipe rc;
    rc.lr = large ? 3e-3 : 4e-3, rc.min_lr = 1e-5, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95;
    rc.clip = 1.0, rc.warmup = 500, rc.vocab = 10000;
    rc.batch = large ? std::max(4, std::min(64, 2 * cores)) : std::max(2, std::min(8, cores));
    rc.accum = large ? 2 : 1;
    rc.seq = large ? 1024 : 512;
    return rc;
}

// The fork's GatedDeltaNet module (upstream names q_proj … o_proj, q_conv/k_conv/v_conv).
template <class T>
struct DeltaNetMixer {
    nn::BitLinear<T> q_proj, k_proj, v_proj, g_proj, gk_proj, beta_proj, o_proj;
    nn::CausalDepthwiseConv1d<T> q_conv, k_conv, v_conv;
    int64_t heads = 1, dk = 1, dv = 1;
    ops::DeltaForm form = ops::DeltaForm::chunked;

    void declare(ParamStore<T>& p, const std::string& pre, const BoltDeltaNetConfig& c) {
        const int64_t D = c.dim, K = c.key_dim(), Vd = c.value_dim(), H = c.num_heads;
        heads = H, dk = c.head_k(), dv = c.head_v(), form = c.form();
        q_proj.declare(p, nn::join(pre, "q_proj"), D, K);
        k_proj.declare(p, nn::join(pre, "k_proj"), D, K);
        v_proj.declare(p, nn::join(pre, "v_proj"), D, Vd);
        g_proj.declare(p, nn::join(pre, "g_proj"), D, Vd);
        q_conv.declare(p, nn::join(pre, "q_conv"), K, c.conv_size);
        k_conv.declare(p, nn::join(pre, "k_conv"), K, c.conv_size);
        v_conv.declare(p, nn::join(pre, "v_conv"), Vd, c.conv_size);
        gk_proj.declare(p, nn::join(pre, "gk_proj"), D, H);
        beta_proj.declare(p, nn::join(pre, "beta_proj"), D, H);
        o_proj.declare(p, nn::join(pre, "o_proj"), Vd, D);
    }
    void init(Rng& rng) {
        for (auto* l : {&q_proj, &k_proj, &v_proj, &g_proj}) l->init(rng);
        for (auto* cv : {&q_conv, &k_conv, &v_conv}) nn::init_normal(cv->w(), rng, 0.02);
        for (auto* l : {&gk_proj, &beta_proj, &o_proj}) l->init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& u, bool compat) const {
        Tensor<T> q = ops::l2_normalize(tape, ops::silu(tape, q_conv(tape, q_proj(tape, u))), dk);
        Tensor<T> k = ops::l2_normalize(tape, ops::silu(tape, k_conv(tape, k_proj(tape, u))), dk);
        Tensor<T> v = ops::silu(tape, v_conv(tape, v_proj(tape, u)));
        Tensor<T> g = ops::log_sigmoid(tape, gk_proj(tape, u), 1.0 / 16);
        Tensor<T> beta = ops::sigmoid(tape, beta_proj(tape, u));
        Tensor<T> o = ops::gated_delta_rule(tape, q, k, v, g, beta, heads, compat, 64, form);
        return o_proj(tape, ops::mul(tape, o, ops::sigmoid(tape, g_proj(tape, u))));
    }
};

template <class T>
struct BoltDeltaNetBlock {
    nn::RMSNorm<T> norm1, norm2;
    DeltaNetMixer<T> mixer;
    nn::TernaryGLU<T> ffn;

    void declare(ParamStore<T>& p, const std::string& prefix, const BoltDeltaNetConfig& c) {
        norm1.declare(p, nn::join(prefix, "norm1"), c.dim);
        mixer.declare(p, nn::join(prefix, "mixer"), c);
        norm2.declare(p, nn::join(prefix, "norm2"), c.dim);
        ffn.declare(p, nn::join(prefix, "ffn"), c.dim, c.glu_hidden);
    }
    void init(Rng& rng) {
        norm1.init(rng);
        mixer.init(rng);
        norm2.init(rng);
        ffn.init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, bool compat) const {
        x = ops::add(tape, x, mixer(tape, norm1(tape, x), compat));
        return ops::add(tape, x, ffn(tape, norm2(tape, x)));
    }
};

template <class T>
class BoltDeltaNet : public LanguageModel<T> {
public:
    BoltDeltaNet(std::string name, BoltDeltaNetConfig c) : name_(std::move(name)), cfg_(c) {
        cfg_.validate();
        auto& p = this->params_;
        embedding_.declare(p, "embedding", c.vocab_size, c.dim);
        blocks_.resize(size_t(c.n_blocks));
        for (int64_t i = 0; i < c.n_blocks; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), c);
        final_norm_.declare(p, "final_norm", c.dim);
        p.alias("head.weight", "embedding.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const BoltDeltaNetConfig& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embedding_.init(rng, 0.02);
        for (auto& b : blocks_) b.init(rng);
        final_norm_.init(rng);
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = embedding_(tape, ids, B * L).reshape(Shape{B, L, cfg_.dim});
        for (auto& b : blocks_) x = b(tape, x, cfg_.upstream_compat);
        return final_norm_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L), embedding_.w(), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embedding_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    BoltDeltaNetConfig cfg_;
    nn::Embedding<T> embedding_;
    std::vector<BoltDeltaNetBlock<T>> blocks_;
    nn::RMSNorm<T> final_norm_;
};

namespace detail {
// o_proj reads value_dim = 288 inputs, not a whole number of packed blocks, and the kernels' ragged-input
// entry points copy such an input into a fresh zero-padded buffer on every call. The generator keeps
// that input zero-padded itself and calls the padded-input kernels, so a step allocates nothing.
inline void ternary_matvec_padded(const kernels::PackedTernary& W, const float* x_padded, float* y) {
    kernels::detail::F32Job job{};
    job.planes = W.planes.data();
    job.blocks = W.blocks();
    job.M = 1;
    job.ldx = W.cols_padded;
    job.ldy = W.rows;
    job.x = x_padded;
    job.scale = W.scale;
    job.y = y;
    kernels::detail::run(job, W.rows, W.cols);
}
inline void ternary_matvec_int8_padded(const kernels::PackedTernary& W, const int8_t* xq_padded, float xs, float* y) {
    kernels::detail::run_int8(W, xq_padded, &xs, 1, y);
}
}  // namespace detail

// Cached generation, one token at a time: per block the three conv rings (last conv_size−1 inputs) and
// the matrix state S [heads, dk, dv], advanced by the training op's own step (ops::gdn::step). The
// state is never cropped: step t's logits equal a full forward over every token since reset(). Ternary
// weights packed once; with Quant::int8 the six projections that read norm1's output share one
// quantisation of it. Nothing is allocated after construction.
class BoltDeltaNetGenerator : public Generator {
public:
    BoltDeltaNetGenerator(const BoltDeltaNet<float>& m, Quant q) : quant_(q), c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        emb_ = ps.get("embedding.weight").data;
        final_norm_ = ps.get("final_norm.scale").data;
        const int64_t D = c_.dim, K = c_.key_dim(), Vd = c_.value_dim(), H = c_.num_heads, F = c_.glu_hidden;
        for (int64_t i = 0; i < c_.n_blocks; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            auto frozen = [&](const std::string& n) { return nn::FrozenBitLinear(ps.get(p + n + ".weight")); };
            Block b;
            b.norm1 = ps.get(p + "norm1.scale").data;
            b.norm2 = ps.get(p + "norm2.scale").data;
            b.qp = frozen("mixer.q_proj"), b.kp = frozen("mixer.k_proj"), b.vp = frozen("mixer.v_proj");
            b.gp = frozen("mixer.g_proj"), b.gkp = frozen("mixer.gk_proj"), b.bp = frozen("mixer.beta_proj");
            b.op = frozen("mixer.o_proj");
            b.gate = frozen("ffn.W_gate"), b.up = frozen("ffn.W_up"), b.down = frozen("ffn.W_down");
            b.qc = nn::CausalConvState(ps.get(p + "mixer.q_conv.weight"));
            b.kc = nn::CausalConvState(ps.get(p + "mixer.k_conv.weight"));
            b.vc = nn::CausalConvState(ps.get(p + "mixer.v_conv.weight"));
            b.S.assign(size_t(H * c_.head_k() * c_.head_v()), 0.0f);
            blocks_.push_back(std::move(b));
        }
        x_.resize(size_t(D)), h_.resize(size_t(D)), t_.resize(size_t(D));
        raw_.resize(size_t(std::max(K, Vd))), q_.resize(size_t(K)), k_.resize(size_t(K)), v_.resize(size_t(Vd));
        // o_ and oq_ are o_proj's inputs, zero-padded to its packed width (the tails stay zero).
        const int64_t Vp = blocks_.empty() ? Vd : blocks_[0].op.packed().cols_padded;
        gate_.resize(size_t(Vd)), o_.assign(size_t(Vp), 0.0f), oq_.assign(size_t(Vp), 0), delta_.resize(size_t(c_.head_v()));
        gk_.resize(size_t(H)), beta_.resize(size_t(H));
        a_.resize(size_t(F)), b_.resize(size_t(F)), logits_.resize(size_t(c_.vocab_size));
        xq_.resize(size_t(std::max({D, Vd, F}))), hq_.resize(size_t(D));
        if (quant_ == Quant::int8) head8_ = nn::FrozenHeadInt8(emb_, c_.vocab_size, D);
    }
    void reset() override {
        for (auto& b : blocks_) {
            b.qc.reset(), b.kc.reset(), b.vc.reset();
            std::fill(b.S.begin(), b.S.end(), 0.0f);
        }
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.dim, K = c_.key_dim(), Vd = c_.value_dim(), H = c_.num_heads, F = c_.glu_hidden;
        const int64_t dk = c_.head_k(), dv = c_.head_v();
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        std::copy(emb_ + token * D, emb_ + (token + 1) * D, x_.begin());
        for (auto& b : blocks_) {
            nn::rmsnorm_vec(x_.data(), b.norm1, h_.data(), D, 1e-6f);
            xs_valid_ = false;
            project(b.qp, raw_.data());
            b.qc.step(raw_.data(), q_.data());
            project(b.kp, raw_.data());
            b.kc.step(raw_.data(), k_.data());
            project(b.vp, raw_.data());
            b.vc.step(raw_.data(), v_.data());
            silu(q_.data(), K), silu(k_.data(), K), silu(v_.data(), Vd);
            l2_normalize(q_.data(), H, dk), l2_normalize(k_.data(), H, dk);
            project(b.gkp, gk_.data());
            project(b.bp, beta_.data());
            project(b.gp, gate_.data());
            for (int64_t h = 0; h < H; ++h) {
                const float a = std::exp(ops::log_sigmoid_scalar(gk_[size_t(h)]) * (1.0f / 16));
                const float beta = ops::sigmoid_scalar(beta_[size_t(h)]);
                ops::gdn::step(b.S.data() + h * dk * dv, q_.data() + h * dk, k_.data() + h * dk, v_.data() + h * dv, a,
                               beta, dk, dv, c_.upstream_compat, delta_.data(), o_.data() + h * dv);
            }
            for (int64_t j = 0; j < Vd; ++j) o_[size_t(j)] *= ops::sigmoid_scalar(gate_[size_t(j)]);
            const kernels::PackedTernary& op = b.op.packed();
            if (quant_ == Quant::exact) {
                detail::ternary_matvec_padded(op, o_.data(), t_.data());
            } else {
                float xs = 0;
                kernels::quantize_activations_int8(o_.data(), 1, Vd, oq_.data(), &xs);
                detail::ternary_matvec_int8_padded(op, oq_.data(), xs, t_.data());
            }
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            nn::rmsnorm_vec(x_.data(), b.norm2, h_.data(), D, 1e-6f);
            xs_valid_ = false;
            project(b.gate, a_.data());
            project(b.up, b_.data());
            nn::silu_mul(a_.data(), b_.data(), F);
            b.down(a_.data(), t_.data(), quant_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
        }
        nn::rmsnorm_vec(x_.data(), final_norm_, h_.data(), D, 1e-6f);
        if (quant_ == Quant::exact)
            kernels::dense_f32_matvec(emb_, c_.vocab_size, D, h_.data(), logits_.data());
        else
            head8_(h_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *norm1 = nullptr, *norm2 = nullptr;
        nn::FrozenBitLinear qp, kp, vp, gp, gkp, bp, op, gate, up, down;
        nn::CausalConvState qc, kc, vc;
        std::vector<float> S;  // [heads, dk, dv]
    };
    // y = W̃ h_. int8: h_ is quantised once per norm output (the caller clears xs_valid_ on a new h_).
    void project(const nn::FrozenBitLinear& w, float* y) {
        if (quant_ == Quant::exact) {
            w(h_.data(), y, quant_, xq_.data());
            return;
        }
        if (!xs_valid_) {
            hs_ = w.quantize(h_.data(), hq_.data());
            xs_valid_ = true;
        }
        w(hq_.data(), hs_, y);
    }
    static void silu(float* x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] * ops::sigmoid_scalar(x[i]);
    }
    // F.normalize per head: x / max(‖x‖, 1e-12), as ops::l2_normalize.
    static void l2_normalize(float* x, int64_t heads, int64_t d) {
        for (int64_t h = 0; h < heads; ++h) {
            float* xh = x + h * d;
            float ss = 0;
            for (int64_t i = 0; i < d; ++i) ss += xh[i] * xh[i];
            const float inv = 1.0f / std::max(std::sqrt(ss), 1e-12f);
            for (int64_t i = 0; i < d; ++i) xh[i] *= inv;
        }
    }
    Quant quant_;
    BoltDeltaNetConfig c_;
    const float* emb_ = nullptr;
    const float* final_norm_ = nullptr;
    std::vector<Block> blocks_;
    nn::FrozenHeadInt8 head8_;
    std::vector<float> x_, h_, t_, raw_, q_, k_, v_, gate_, o_, delta_, gk_, beta_, a_, b_, logits_;
    std::vector<int8_t> xq_, hq_, oq_;
    float hs_ = 0;
    bool xs_valid_ = false;
};

template <class T>
std::unique_ptr<Generator> BoltDeltaNet<T>::make_generator(Quant q) const {
    if constexpr (std::is_same_v<T, float>) return std::make_unique<BoltDeltaNetGenerator>(*this, q);
    else return nullptr;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_BOLT_DELTANET for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_BOLT_DELTANET
extern template class BoltDeltaNet<float>;
#endif

}  // namespace flashlm::examples
