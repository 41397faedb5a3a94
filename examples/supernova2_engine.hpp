#pragma once
// FlashLM v6.1 "SUPERNOVA II", C-engine version (VARIANTS.md §8.4, kernels §14): a per-token FFN stack
// with ternary weights AND ternary activations (Q4) and no token mixing at all:
//   x = E[tok]
//   n_layers ×:  u = RMSNorm(x; gamma_l, eps 1e-6)
//                h = SiLU(Q4(u, W_up_l))          # d_model → d_ffn
//                x = x + Q4(h, W_down_l)         # d_ffn → d_model
//   logits = x Eᵀ                                # tied head, no final norm
// Q4 = ops::q4_linear (popcount GEMM on packed bit planes). Tensor names are the upstream checkpoint's
// npz keys: embed, gamma_<l>, W_up_<l>, W_down_<l> (weights [out, in]).
//
// Differences from upstream (docs/variants/supernova2-engine.md): the activation dequantisation scale is
// per row (per token) instead of the mean over the whole batch tensor, so a position's logits do not
// depend on what else is in the batch, and the weight gradients carry that scale (upstream omits it).
// upstream_compat restores both.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/io/state_dict.hpp>
#include <flashlm/kernels/popcount_gemm.hpp>
#include <flashlm/ops/ternary_q4.hpp>

namespace flashlm::examples {

struct Supernova2EngineConfig {
    int64_t vocab_size = 1024, d_model = 192, d_ffn = 384, n_layers = 6, seq_len = 256;
    bool upstream_compat = false;

    ops::Q4Options q4() const { return {upstream_compat, upstream_compat}; }
    nlohmann::json to_json() const {
        nlohmann::json j = {{"vocab_size", vocab_size}, {"d_model", d_model}, {"d_ffn", d_ffn},
                            {"n_layers", n_layers},     {"seq_len", seq_len}};
        if (upstream_compat) j["upstream_compat"] = true;
        return j;
    }
    static Supernova2EngineConfig from_json(const nlohmann::json& j, Supernova2EngineConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.d_ffn = j.value("d_ffn", c.d_ffn);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.seq_len = j.value("seq_len", c.seq_len);
        c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
        if (c.vocab_size < 2 || c.d_model < 1 || c.d_ffn < 1 || c.n_layers < 1 || c.seq_len < 1)
            throw std::invalid_argument("supernova2-engine: config values must be positive");
        if (std::max(c.d_model, c.d_ffn) > 64 * kernels::k_popcount_max_words)
            throw std::invalid_argument("supernova2-engine: d_model and d_ffn must be at most " +
                                        std::to_string(64 * kernels::k_popcount_max_words));
        return c;
    }
    // embed + per layer gamma, W_up, W_down (1,082,496 at the defaults).
    int64_t param_count() const { return vocab_size * d_model + n_layers * (d_model + 2 * d_model * d_ffn); }
};

template <class T>
class Supernova2Engine : public LanguageModel<T> {
public:
    Supernova2Engine(std::string name, Supernova2EngineConfig c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        p.add("embed", Shape{c.vocab_size, c.d_model}, false);
        for (int64_t l = 0; l < c.n_layers; ++l) {
            const std::string s = std::to_string(l);
            p.add("gamma_" + s, Shape{c.d_model}, false);
            p.add("W_up_" + s, Shape{c.d_ffn, c.d_model});
            p.add("W_down_" + s, Shape{c.d_model, c.d_ffn});
        }
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const Supernova2EngineConfig& cfg() const { return cfg_; }

    // Upstream: E ~ N(0, 0.02), W_up ~ N(0, 1)/√d_model, W_down ~ N(0, 1)/√d_ffn, gamma = 1.
    void init(Rng& rng) override {
        auto& p = this->params_;
        auto fill = [&](const std::string& n, double std) {
            Tensor<T> t = p.get(n);
            for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = T(rng.normal(0, std));
        };
        fill("embed", 0.02);
        for (int64_t l = 0; l < cfg_.n_layers; ++l) {
            const std::string s = std::to_string(l);
            Tensor<T> g = p.get("gamma_" + s);
            std::fill(g.data, g.data + g.numel(), T(1));
            fill("W_up_" + s, 1.0 / std::sqrt(double(cfg_.d_model)));
            fill("W_down_" + s, 1.0 / std::sqrt(double(cfg_.d_ffn)));
        }
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        auto& p = this->params_;
        Tensor<T> x = ops::embedding(tape, p.get("embed"), ids, B * L).reshape(Shape{B, L, cfg_.d_model});
        const ops::Q4Options q4 = cfg_.q4();
        for (int64_t l = 0; l < cfg_.n_layers; ++l) {
            const std::string s = std::to_string(l);
            Tensor<T> u = ops::rmsnorm(tape, x, p.get("gamma_" + s), 1e-6);
            Tensor<T> h = ops::silu(tape, ops::q4_linear(tape, u, p.get("W_up_" + s), q4));
            x = ops::add(tape, x, ops::q4_linear(tape, h, p.get("W_down_" + s), q4));
        }
        return x;
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L), this->params_.get("embed"), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), this->params_.get("embed"));
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    Supernova2EngineConfig cfg_;
};

// Every position is independent, so the "cache" is empty: a step is one token through the stack, with
// the weights quantised and laid out as popcount panels once. The arithmetic is the training forward's
// (same quantizers, same integer products; activations are ternary in both Quant modes, which only the
// float models distinguish). Upstream's generation ran a float path without activation quantization,
// which does not match its training forward (VARIANTS.md §8.4); this one does.
class Supernova2EngineGenerator : public Generator {
public:
    explicit Supernova2EngineGenerator(const Supernova2Engine<float>& m) : c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        emb_ = ps.get("embed").data;
        const int64_t D = c_.d_model, F = c_.d_ffn;
        auto frozen = [&](const std::string& name, int64_t N, int64_t K) {
            Frozen f;
            const int64_t KB = kernels::bitplane_bytes(K);
            std::vector<uint8_t> v(size_t(N * KB)), s(v.size());
            f.scale = kernels::quantize_weight_planes(ps.get(name).data, N, K, v.data(), s.data());
            f.panel = kernels::OwnedPopcountPanel(v.data(), s.data(), N, KB);
            return f;
        };
        for (int64_t l = 0; l < c_.n_layers; ++l) {
            const std::string s = std::to_string(l);
            Layer L;
            L.gamma = ps.get("gamma_" + s).data;
            L.up = frozen("W_up_" + s, F, D);
            L.down = frozen("W_down_" + s, D, F);
            layers_.push_back(std::move(L));
        }
        x_.resize(size_t(D)), u_.resize(size_t(D)), h_.resize(size_t(F)), logits_.resize(size_t(c_.vocab_size));
        c32_.resize(size_t(std::max(D, F)));
        qv_.resize(size_t(kernels::bitplane_bytes(std::max(D, F)))), qs_.resize(qv_.size());
    }
    void reset() override {}
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, F = c_.d_ffn;
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        std::copy(emb_ + token * D, emb_ + (token + 1) * D, x_.begin());
        for (const auto& L : layers_) {
            nn::rmsnorm_vec(x_.data(), L.gamma, u_.data(), D, 1e-6f);
            q4(u_.data(), D, L.up, h_.data());
            for (int64_t j = 0; j < F; ++j) h_[size_t(j)] *= ops::sigmoid_scalar(h_[size_t(j)]);
            q4(h_.data(), F, L.down, u_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += u_[size_t(c)];
        }
        kernels::dense_f32_matvec(emb_, c_.vocab_size, D, x_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Frozen {
        float scale = 0;
        kernels::OwnedPopcountPanel panel;
    };
    struct Layer {
        const float* gamma = nullptr;
        Frozen up, down;
    };
    // y[N] = int32_dot(t(x), t(W)) · (mean|x| + 1e-8) · s_W, as ops::q4_linear for one row.
    void q4(const float* x, int64_t K, const Frozen& W, float* y) {
        float mean = 0;
        kernels::requantize_rows(x, 1, K, qv_.data(), qs_.data(), &mean);
        kernels::popcount_gemm(qv_.data(), qs_.data(), 1, W.panel.view, c32_.data(), W.panel.view.n);
        const float s = (mean + 1e-8f) * W.scale;
        for (int64_t j = 0; j < W.panel.view.n; ++j) y[j] = float(c32_[size_t(j)]) * s;
    }
    Supernova2EngineConfig c_;
    const float* emb_ = nullptr;
    std::vector<Layer> layers_;
    std::vector<float> x_, u_, h_, logits_;
    std::vector<int32_t> c32_;
    std::vector<uint8_t> qv_, qs_;
};

template <class T>
std::unique_ptr<Generator> Supernova2Engine<T>::make_generator(Quant) const {
    if constexpr (std::is_same_v<T, float>) return std::make_unique<Supernova2EngineGenerator>(*this);
    else return nullptr;
}

// `flashlm import` of a bare state dict: vocabulary and width from embed, d_ffn from W_up_0, depth from
// the layer suffixes. Upstream's npz keys put the index last (gamma_3, W_up_3), which io::count_indexed's
// "<prefix><i>." pattern does not match; the largest index of any layer tensor counts, so a file missing
// one layer's tensors fails the import by name instead of loading fewer layers.
inline nlohmann::json infer_supernova2_engine_config(const io::TensorShapes& s) {
    nlohmann::json j = nlohmann::json::object();
    if (auto v = io::dim_of(s, "embed", 0)) j["vocab_size"] = *v;
    if (auto d = io::dim_of(s, "embed", 1)) j["d_model"] = *d;
    if (auto f = io::dim_of(s, "W_up_0", 0)) j["d_ffn"] = *f;
    int64_t layers = 0;
    for (const auto& [name, shape] : s)
        for (const std::string prefix : {"gamma_", "W_up_", "W_down_"}) {
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            const std::string digits = name.substr(prefix.size());
            if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
            layers = std::max<int64_t>(layers, std::stoll(digits) + 1);
        }
    if (layers > 0) j["n_layers"] = layers;
    return j;
}

// v6.1 C-engine recipe (§8.4): SGD momentum 0.9, no weight decay, lr 0.01 with 100 linear warm-up steps,
// cosine to 0.001, batch 256 × seq 256, vocab 1024. Upstream clips each layer's gradient norm at 500
// (in practice never reached); flashlm clips the global norm at 500.
inline Recipe supernova2_engine_recipe() {
    Recipe rc;
    rc.optimizer = "sgd", rc.momentum = 0.9;
    rc.lr = 0.01, rc.min_lr = 0.001, rc.weight_decay = 0, rc.clip = 500;
    rc.warmup = 100, rc.batch = 256, rc.accum = 1, rc.seq = 256, rc.vocab = 1024;
    return rc;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_SUPERNOVA2_ENGINE for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_SUPERNOVA2_ENGINE
extern template class Supernova2Engine<float>;
#endif

}  // namespace flashlm::examples
