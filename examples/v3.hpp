#pragma once
// FlashLM v3 (VARIANTS.md §4, FlashLMv3.ipynb@635ce9c): embedding → one RecursiveBlock applied
// n_recursions (2) times with the same weights → RMSNorm → head tied to the embedding.
//   RecursiveBlock: x += ConvMixer(RMSNorm(x)); x += TernaryGLU(RMSNorm(x)); (router: parameters only)
//   ConvMixer(u): y = u; for d in [1, 4, 64]: y = y + σ(conv_gate_d(RMSNorm_d(y))) ⊙ conv_value_d(RMSNorm_d(y));
//                 out_proj(y)    — convs: float Conv1d(D, D, 4, groups 16, dilation d), causal
//   TernaryGLU(h): down_proj(relu(gate_proj(h))² ⊙ up_proj(h))
// Every BitLinear uses Q0 (unscaled ±1 at threshold mean|W|); every RMSNorm has eps 1e-8. As upstream,
// 1-D parameters (norm gains, the router bias) get no weight decay.
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/frozen_ternary.hpp>
#include <flashlm/nn/grouped_causal_conv.hpp>
#include <flashlm/ops/relu2_glu.hpp>
#include <flashlm/ops/rows.hpp>

namespace flashlm::examples {

struct V3Config {
    // glu_inner_dim = int(d_model · 2.67) = 683 upstream; seq_len = the last training phase (512).
    int64_t vocab_size = 50257, d_model = 256, n_recursions = 2, glu_inner_dim = 683, seq_len = 512;
    static constexpr int64_t kernel_size = 4, groups = 16;
    static constexpr std::array<int64_t, 3> dilations = {1, 4, 64};
    static constexpr double eps = 1e-8;

    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"d_model", d_model}, {"n_recursions", n_recursions},
                {"glu_inner_dim", glu_inner_dim}, {"seq_len", seq_len}};
    }
    static V3Config from_json(const nlohmann::json& j, V3Config c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_recursions = j.value("n_recursions", c.n_recursions);
        c.glu_inner_dim = j.value("glu_inner_dim", c.glu_inner_dim);
        c.seq_len = j.value("seq_len", c.seq_len);
        if (c.vocab_size < 2 || c.d_model < 1 || c.n_recursions < 1 || c.glu_inner_dim < 1 || c.seq_len < 1)
            throw std::invalid_argument("v3: config values must be positive");
        if (c.d_model % groups != 0) throw std::invalid_argument("v3: d_model must be a multiple of 16 (conv groups)");
        return c;
    }
};

template <class T>
struct V3ConvMixer {
    std::array<nn::GroupedCausalConv1d<T>, 3> conv_gate, conv_value;
    std::array<nn::RMSNorm<T>, 3> norms;
    nn::BitLinear<T> out_proj;

    void declare(ParamStore<T>& p, const std::string& prefix, const V3Config& c) {
        const nn::BitLinearOptions q0{nn::WeightQuant::threshold, false};
        for (size_t i = 0; i < 3; ++i) {
            const std::string l = nn::join(prefix, "layers." + std::to_string(i));
            conv_gate[i].declare(p, l + ".conv_gate.conv", c.d_model, c.kernel_size, c.dilations[i], c.groups);
            conv_value[i].declare(p, l + ".conv_value.conv", c.d_model, c.kernel_size, c.dilations[i], c.groups);
        }
        for (size_t i = 0; i < 3; ++i)
            norms[i].declare(p, nn::join(prefix, "norms." + std::to_string(i)), c.d_model, c.eps, "scale", false);
        out_proj.declare(p, nn::join(prefix, "out_proj"), c.d_model, c.d_model, q0);
    }
    void init(Rng& rng) {
        for (size_t i = 0; i < 3; ++i) {
            conv_gate[i].init(rng);
            conv_value[i].init(rng);
            norms[i].init(rng);
        }
        nn::init_normal(out_proj.w(), rng, 0.01);
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> y) const {
        for (size_t i = 0; i < 3; ++i) {
            const Tensor<T> v = norms[i](tape, y);
            y = ops::add(tape, y, ops::mul(tape, ops::sigmoid(tape, conv_gate[i](tape, v)), conv_value[i](tape, v)));
        }
        return out_proj(tape, y);
    }
};

template <class T>
struct V3Block {
    nn::RMSNorm<T> norm1, norm2;
    V3ConvMixer<T> token_mixer;
    nn::BitLinear<T> gate_proj, up_proj, down_proj;
    ParamStore<T>* ps = nullptr;
    std::size_t router_w = 0, router_b = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, const V3Config& c) {
        const nn::BitLinearOptions q0{nn::WeightQuant::threshold, false};
        ps = &p;
        norm1.declare(p, nn::join(prefix, "norm1"), c.d_model, c.eps, "scale", false);
        token_mixer.declare(p, nn::join(prefix, "token_mixer"), c);
        norm2.declare(p, nn::join(prefix, "norm2"), c.d_model, c.eps, "scale", false);
        gate_proj.declare(p, nn::join(prefix, "glu.gate_proj"), c.d_model, c.glu_inner_dim, q0);
        up_proj.declare(p, nn::join(prefix, "glu.up_proj"), c.d_model, c.glu_inner_dim, q0);
        down_proj.declare(p, nn::join(prefix, "glu.down_proj"), c.glu_inner_dim, c.d_model, q0);
        // Router (Linear D→1, σ): upstream collects its scores and never uses them; kept for the state dict.
        router_w = p.add(nn::join(prefix, "router.linear.weight"), Shape{1, c.d_model});
        router_b = p.add(nn::join(prefix, "router.linear.bias"), Shape{1}, false);
    }
    void init(Rng& rng) {
        norm1.init(rng);
        token_mixer.init(rng);
        norm2.init(rng);
        // kaiming_normal_(nonlinearity='linear'): std 1/√in; down_proj re-initialised N(0, 0.01).
        nn::init_normal(gate_proj.w(), rng, 1.0 / std::sqrt(double(gate_proj.w().dim(1))));
        nn::init_normal(up_proj.w(), rng, 1.0 / std::sqrt(double(up_proj.w().dim(1))));
        nn::init_normal(down_proj.w(), rng, 0.01);
        nn::init_constant(ps->get(router_w), T(0));
        nn::init_constant(ps->get(router_b), T(1));
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x) const {
        x = ops::add(tape, x, token_mixer(tape, norm1(tape, x)));
        const Tensor<T> h = norm2(tape, x);
        return ops::add(tape, x, down_proj(tape, ops::relu2_glu(tape, gate_proj(tape, h), up_proj(tape, h))));
    }
};

template <class T>
class V3 : public LanguageModel<T> {
public:
    V3(std::string name, V3Config c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        embedding_.declare(p, "embedding", c.vocab_size, c.d_model);
        block_.declare(p, "block", c);
        final_norm_.declare(p, "final_norm", c.d_model, c.eps, "scale", false);
        p.alias("lm_head.weight", "embedding.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const V3Config& cfg() const { return cfg_; }

    // Upstream initialises the embedding from GPT-2's SVD-projected wte (not available offline) and, without
    // that file, nn.Embedding's N(0, 1); flashlm draws N(0, 0.02) (see docs/variants/v3.md).
    void init(Rng& rng) override {
        embedding_.init(rng, 0.02);
        block_.init(rng);
        final_norm_.init(rng);
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = embedding_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model});
        for (int64_t r = 0; r < cfg_.n_recursions; ++r) x = block_(tape, x);
        return final_norm_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        const Tensor<T> h = hidden(tape, ids, B, L);
        if (next_rows_.empty()) return ops::tied_head_cross_entropy(tape, h, embedding_.w(), targets);
        // Upstream's train-time subsampling: the head sees only the sampled rows of h (gather_rows scatters
        // their gradient back), so its three products shrink with the sample.
        rows_.assign(next_rows_.begin(), next_rows_.end());  // copies, not moves: both vectors keep their
        next_rows_.clear();                                  // capacity, so later steps allocate nothing
        row_targets_.resize(rows_.size());
        for (size_t i = 0; i < rows_.size(); ++i) row_targets_[i] = targets[rows_[i]];
        const Tensor<T> hs = ops::gather_rows(tape, h, rows_.data(), int64_t(rows_.size()));
        return ops::tied_head_cross_entropy(tape, hs, embedding_.w(), row_targets_.data());
    }
    bool set_loss_positions(const std::vector<int32_t>& rows) override {
        next_rows_.assign(rows.begin(), rows.end());
        return true;
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embedding_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    V3Config cfg_;
    nn::Embedding<T> embedding_;
    V3Block<T> block_;
    nn::RMSNorm<T> final_norm_;
    std::vector<int32_t> next_rows_;           // set_loss_positions' sample for the next loss()
    std::vector<int32_t> rows_, row_targets_;  // the last loss()'s sample and its targets
};

// Cached v3: per recursion pass and conv layer a ring of the last 3·d+1 normalised mixer inputs (the gate
// and value convs read the same one); Q0 weights packed once. The receptive field is 2·207+1 = 415
// tokens, so this equals a full forward over any window at least that long.
class V3Generator : public Generator {
public:
    V3Generator(const V3<float>& m, Quant q) : q_(q), c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        const nn::BitLinearOptions q0{nn::WeightQuant::threshold, false};
        const std::string b = "block.", mx = "block.token_mixer.";
        emb_ = ps.get("embedding.weight").data;
        final_norm_ = ps.get("final_norm.scale").data;
        norm1_ = ps.get(b + "norm1.scale").data;
        norm2_ = ps.get(b + "norm2.scale").data;
        for (size_t i = 0; i < 3; ++i) {
            const std::string l = mx + "layers." + std::to_string(i);
            wg_[i] = ps.get(l + ".conv_gate.conv.weight").data;
            wv_[i] = ps.get(l + ".conv_value.conv.weight").data;
            norms_[i] = ps.get(mx + "norms." + std::to_string(i) + ".scale").data;
        }
        out_proj_ = nn::FrozenTernaryLinear(ps.get(mx + "out_proj.weight"), q0);
        gate_ = nn::FrozenTernaryLinear(ps.get(b + "glu.gate_proj.weight"), q0);
        up_ = nn::FrozenTernaryLinear(ps.get(b + "glu.up_proj.weight"), q0);
        down_ = nn::FrozenTernaryLinear(ps.get(b + "glu.down_proj.weight"), q0);
        const int64_t D = c_.d_model, H = c_.glu_inner_dim;
        for (int64_t r = 0; r < c_.n_recursions; ++r)
            for (size_t i = 0; i < 3; ++i) hist_.emplace_back(D, c_.kernel_size, c_.dilations[i]);
        x_.resize(size_t(D)), u_.resize(size_t(D)), v_.resize(size_t(D)), g_.resize(size_t(D)), val_.resize(size_t(D));
        t_.resize(size_t(D)), a_.resize(size_t(H)), b_.resize(size_t(H)), logits_.resize(size_t(c_.vocab_size));
        xq_.resize(size_t(std::max(D, H)));
        if (q_ == Quant::int8) head8_ = nn::FrozenHeadInt8(emb_, c_.vocab_size, D);
    }
    void reset() override {
        for (auto& h : hist_) h.reset();
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, H = c_.glu_inner_dim, Cg = D / c_.groups;
        const float eps = float(c_.eps);
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        std::copy(emb_ + token * D, emb_ + (token + 1) * D, x_.begin());
        for (int64_t r = 0; r < c_.n_recursions; ++r) {
            nn::rmsnorm_vec(x_.data(), norm1_, u_.data(), D, eps);  // the mixer's stream starts from RMSNorm(x)
            for (size_t i = 0; i < 3; ++i) {
                nn::ConvHistory& h = hist_[size_t(r) * 3 + i];
                nn::rmsnorm_vec(u_.data(), norms_[i], v_.data(), D, eps);
                h.push(v_.data());
                nn::grouped_conv_step(wg_[i], D, Cg, h, g_.data());
                nn::grouped_conv_step(wv_[i], D, Cg, h, val_.data());
                nn::mul_sigmoid(val_.data(), g_.data(), D);
                for (int64_t c = 0; c < D; ++c) u_[size_t(c)] += val_[size_t(c)];
            }
            out_proj_(u_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            nn::rmsnorm_vec(x_.data(), norm2_, u_.data(), D, eps);
            gate_(u_.data(), a_.data(), q_, xq_.data());
            up_(u_.data(), b_.data(), q_, xq_.data());
            for (int64_t k = 0; k < H; ++k) {
                const float p = a_[size_t(k)] > 0 ? a_[size_t(k)] : 0.0f;
                a_[size_t(k)] = p * p * b_[size_t(k)];
            }
            down_(a_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
        }
        nn::rmsnorm_vec(x_.data(), final_norm_, u_.data(), D, eps);
        if (q_ == Quant::exact)
            kernels::dense_f32_matvec(emb_, c_.vocab_size, D, u_.data(), logits_.data());
        else
            head8_(u_.data(), logits_.data());
        return logits_.data();
    }

private:
    Quant q_;
    V3Config c_;
    const float *emb_ = nullptr, *final_norm_ = nullptr, *norm1_ = nullptr, *norm2_ = nullptr;
    std::array<const float*, 3> wg_{}, wv_{}, norms_{};
    nn::FrozenTernaryLinear out_proj_, gate_, up_, down_;
    std::vector<nn::ConvHistory> hist_;  // [pass][layer]
    nn::FrozenHeadInt8 head8_;
    std::vector<float> x_, u_, v_, g_, val_, t_, a_, b_, logits_;
    std::vector<int8_t> xq_;
};

template <class T>
std::unique_ptr<Generator> V3<T>::make_generator(Quant q) const {
    if constexpr (std::is_same_v<T, float>) return std::make_unique<V3Generator>(*this, q);
    else return nullptr;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_V3 for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_V3
extern template class V3<float>;
#endif

}  // namespace flashlm::examples
