#pragma once
// FlashLM v4 "Bolt" (VARIANTS.md §5): embedding → n_blocks × BoltBlock → RMSNorm → head tied to the
// embedding. BoltBlock: x += GatedConvMixer(RMSNorm(x)); x += TernaryGLU(RMSNorm(x)).
// The altpav fork (§11.1, "bolt-blockwise") is the same model with quantizer Q5 and an RMSNorm inside
// every BitLinear instead of the two block-level norms: x += GatedConvMixer(x); x += TernaryGLU(x).
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/frozen_ternary.hpp>
#include <flashlm/ops/prenorm_residual.hpp>

namespace flashlm::examples {

struct BoltConfig {
    int64_t vocab_size = 10000, dim = 192, n_blocks = 6, kernel_size = 8, glu_hidden = 512, seq_len = 256;
    // altpav (§11.1): Q5 blockwise quantizer, RMSNorm inside each BitLinear and no block-level norms.
    // Config keys "quantizer" ("absmean" | "blockwise") and "inner_norm"; written only when not v4's.
    nn::WeightQuant quantizer = nn::WeightQuant::absmean;
    bool inner_norm = false;

    static BoltConfig small() { return {}; }
    static BoltConfig large() { return {10000, 384, 8, 8, 1024, 512}; }
    static BoltConfig altpav_small() {
        BoltConfig c;
        c.quantizer = nn::WeightQuant::blockwise, c.inner_norm = true;
        c.seq_len = 512;  // upstream MAX_SEQ_LEN: the last curriculum stage and the generation crop
        return c;
    }
    nn::BitLinearOptions bitlinear() const { return {quantizer, inner_norm}; }
    nlohmann::json to_json() const {
        nlohmann::json j = {{"vocab_size", vocab_size}, {"dim", dim},           {"n_blocks", n_blocks},
                            {"kernel_size", kernel_size}, {"glu_hidden", glu_hidden}, {"seq_len", seq_len}};
        if (quantizer != nn::WeightQuant::absmean) j["quantizer"] = "blockwise";
        if (inner_norm) j["inner_norm"] = true;
        return j;
    }
    static BoltConfig from_json(const nlohmann::json& j, BoltConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.dim = j.value("dim", c.dim);
        c.n_blocks = j.value("n_blocks", c.n_blocks);
        c.kernel_size = j.value("kernel_size", c.kernel_size);
        c.glu_hidden = j.value("glu_hidden", c.glu_hidden);
        c.seq_len = j.value("seq_len", c.seq_len);
        if (j.contains("quantizer")) {
            const std::string q = j.at("quantizer").get<std::string>();
            if (q != "absmean" && q != "blockwise")
                throw std::invalid_argument("bolt: quantizer must be \"absmean\" or \"blockwise\", got \"" + q + "\"");
            c.quantizer = q == "blockwise" ? nn::WeightQuant::blockwise : nn::WeightQuant::absmean;
        }
        c.inner_norm = j.value("inner_norm", c.inner_norm);
        if (c.vocab_size < 2 || c.dim < 1 || c.n_blocks < 1 || c.kernel_size < 1 || c.glu_hidden < 1 || c.seq_len < 1)
            throw std::invalid_argument("bolt: config values must be positive");
        return c;
    }
};

template <class T>
struct BoltBlock {
    nn::RMSNorm<T> norm1, norm2;
    nn::GatedConvMixer<T> mixer;
    nn::TernaryGLU<T> ffn;
    bool block_norms = true;  // false with inner_norm: the BitLinears normalise their own inputs

    void declare(ParamStore<T>& p, const std::string& prefix, const BoltConfig& c) {
        block_norms = !c.inner_norm;
        if (block_norms) norm1.declare(p, nn::join(prefix, "norm1"), c.dim);
        mixer.declare(p, nn::join(prefix, "mixer"), c.dim, c.kernel_size, c.bitlinear());
        if (block_norms) norm2.declare(p, nn::join(prefix, "norm2"), c.dim);
        ffn.declare(p, nn::join(prefix, "ffn"), c.dim, c.glu_hidden, c.bitlinear());
    }
    void init(Rng& rng) {
        if (block_norms) norm1.init(rng);
        mixer.init(rng);
        if (block_norms) norm2.init(rng);
        ffn.init(rng);
    }
    bool unfused = false;  // tests: the op-by-op chain the fused sublayers must match bit for bit

    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x) const {
        // v4 (block norms, Q1 absmean): each sublayer is one node that keeps only what its backward
        // can't recompute cheaply and shares the residual's gradient (ops/prenorm_residual.hpp).
        if (block_norms && mixer.up.opt.quant == nn::WeightQuant::absmean && !unfused) {
            x = ops::prenorm_gated_conv_residual(tape, x, norm1.ps->get(norm1.scale), mixer.up.w(), mixer.conv.w(),
                                                 mixer.down.w(), norm1.eps);
            return ops::prenorm_ternary_glu_residual(tape, x, norm2.ps->get(norm2.scale), ffn.gate.w(), ffn.up.w(),
                                                     ffn.down.w(), norm2.eps);
        }
        x = ops::add(tape, x, mixer(tape, block_norms ? norm1(tape, x) : x));
        return ops::add(tape, x, ffn(tape, block_norms ? norm2(tape, x) : x));
    }
};

template <class T>
class Bolt : public LanguageModel<T> {
public:
    Bolt(std::string name, BoltConfig c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        embedding_.declare(p, "embedding", c.vocab_size, c.dim);
        blocks_.resize(c.n_blocks);
        for (int64_t i = 0; i < c.n_blocks; ++i) blocks_[i].declare(p, "blocks." + std::to_string(i), c);
        final_norm_.declare(p, "final_norm", c.dim);
        p.alias("head.weight", "embedding.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const BoltConfig& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embedding_.init(rng, 0.02);
        for (auto& b : blocks_) b.init(rng);
        final_norm_.init(rng);
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = embedding_(tape, ids, B * L).reshape(Shape{B, L, cfg_.dim});
        if (segments_.empty())
            for (auto& b : blocks_) x = b(tape, x);
        else
            for (auto& s : segments_) x = ops::recompute(tape, s, x);
        return final_norm_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L), embedding_.w(), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embedding_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;
    // Tests: run the blocks as the unfused op chain.
    void set_unfused(bool on) {
        for (auto& b : blocks_) b.unfused = on;
    }
    bool set_recompute(bool on) override {
        segments_.clear();
        if (on)
            for (size_t i = 0; i < blocks_.size(); ++i)
                segments_.push_back({[this, i](Tape<T>& t, const Tensor<T>& x) { return blocks_[i](t, x); }, &side_});
        return true;
    }

private:
    std::string name_;
    BoltConfig cfg_;
    nn::Embedding<T> embedding_;
    std::vector<BoltBlock<T>> blocks_;
    nn::RMSNorm<T> final_norm_;
    std::vector<ops::RecomputeSegment<T>> segments_;  // non-empty: blocks run through ops::recompute
    Tape<T> side_;
};

// Cached Bolt: per block a ring of the last k-1 conv inputs; BitLinear weights packed once. A token's
// output depends only on the last n_blocks·(k-1)+1 tokens (43 for bolt), so this equals a full forward
// over any window at least that long; unlike the recompute loop it never crops the context.
class BoltGenerator : public Generator {
public:
    BoltGenerator(const Bolt<float>& m, Quant q) : q_(q), c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        emb_ = ps.get("embedding.weight").data;
        final_norm_ = ps.get("final_norm.scale").data;
        const nn::BitLinearOptions opt = c_.bitlinear();
        auto frozen = [&](const std::string& name) {
            return nn::FrozenTernaryLinear(ps.get(name + ".weight"), opt,
                                           opt.inner_norm ? ps.get(name + ".norm.scale").data : nullptr);
        };
        for (int64_t i = 0; i < c_.n_blocks; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Block b;
            if (!c_.inner_norm) {
                b.norm1 = ps.get(p + "norm1.scale").data;
                b.norm2 = ps.get(p + "norm2.scale").data;
            }
            b.up = frozen(p + "mixer.up");
            b.down = frozen(p + "mixer.down");
            b.gate = frozen(p + "ffn.W_gate");
            b.upf = frozen(p + "ffn.W_up");
            b.downf = frozen(p + "ffn.W_down");
            b.conv = nn::CausalConvState(ps.get(p + "mixer.conv.weight"));
            blocks_.push_back(std::move(b));
        }
        const int64_t D = c_.dim, H = c_.glu_hidden;
        x_.resize(D), h_.resize(D), gv_.resize(2 * D), y_.resize(D), t_.resize(D);
        a_.resize(H), b_.resize(H), logits_.resize(size_t(c_.vocab_size));
        xq_.resize(size_t(std::max(2 * D, H)));
        if (q_ == Quant::int8) head8_ = nn::FrozenHeadInt8(emb_, c_.vocab_size, D);
    }
    void reset() override {
        for (auto& b : blocks_) b.conv.reset();
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.dim, H = c_.glu_hidden;
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        std::copy(emb_ + token * D, emb_ + (token + 1) * D, x_.begin());
        for (auto& b : blocks_) {
            // Without block norms (inner_norm) the layers read x itself and normalise inside.
            const float* h = x_.data();
            if (b.norm1) {
                nn::rmsnorm_vec(x_.data(), b.norm1, h_.data(), D, 1e-6f);
                h = h_.data();
            }
            b.up(h, gv_.data(), q_, xq_.data());
            b.conv.step(gv_.data() + D, y_.data());
            nn::mul_sigmoid(y_.data(), gv_.data(), D);
            b.down(y_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[c] += t_[c];
            h = x_.data();
            if (b.norm2) {
                nn::rmsnorm_vec(x_.data(), b.norm2, h_.data(), D, 1e-6f);
                h = h_.data();
            }
            if (q_ == Quant::int8 && b.gate.is_plain()) {  // gate and up read the same x: quantise it once
                const float xs = b.gate.plain().quantize(h, xq_.data());
                b.gate.plain()(xq_.data(), xs, a_.data());
                b.upf.plain()(xq_.data(), xs, b_.data());
            } else {
                b.gate(h, a_.data(), q_, xq_.data());
                b.upf(h, b_.data(), q_, xq_.data());
            }
            nn::silu_mul(a_.data(), b_.data(), H);
            b.downf(a_.data(), t_.data(), q_, xq_.data());
            for (int64_t c = 0; c < D; ++c) x_[c] += t_[c];
        }
        nn::rmsnorm_vec(x_.data(), final_norm_, h_.data(), D, 1e-6f);
        if (q_ == Quant::exact) {
            // Alternate sweep directions: part of the 7.7 MB head is then still in L2 (same numbers).
            kernels::dense_f32_matvec(emb_, c_.vocab_size, D, h_.data(), logits_.data(), reverse_head_);
            reverse_head_ = !reverse_head_;
        } else
            head8_(h_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *norm1 = nullptr, *norm2 = nullptr;
        nn::FrozenTernaryLinear up, down, gate, upf, downf;
        nn::CausalConvState conv;
    };
    Quant q_;
    BoltConfig c_;
    const float* emb_ = nullptr;
    const float* final_norm_ = nullptr;
    std::vector<Block> blocks_;
    nn::FrozenHeadInt8 head8_;  // Quant::int8: the tied head quantised per row (int8 × int8 logits)
    std::vector<float> x_, h_, gv_, y_, t_, a_, b_, logits_;
    std::vector<int8_t> xq_;
    bool reverse_head_ = false;
};

template <class T>
std::unique_ptr<Generator> Bolt<T>::make_generator(Quant q) const {
    if constexpr (std::is_same_v<T, float>) return std::make_unique<BoltGenerator>(*this, q);
    else return nullptr;
}

// `flashlm import`: the config keys a Bolt state dict's tensor shapes determine (seq_len is not among
// them). Keys whose tensors are absent stay unset; the name check then reports those tensors.
inline nlohmann::json infer_bolt_config(const io::TensorShapes& s) {
    nlohmann::json j = nlohmann::json::object();
    if (auto v = io::dim_of(s, "embedding.weight", 0)) j["vocab_size"] = *v;
    if (auto d = io::dim_of(s, "embedding.weight", 1)) j["dim"] = *d;
    if (int64_t n = io::count_indexed(s, "blocks.")) j["n_blocks"] = n;
    if (auto k = io::dim_of(s, "blocks.0.mixer.conv.weight", 2)) j["kernel_size"] = *k;
    if (auto h = io::dim_of(s, "blocks.0.ffn.W_gate.weight", 0)) j["glu_hidden"] = *h;
    return j;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_BOLT for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_BOLT
extern template class Bolt<float>;
#endif

}  // namespace flashlm::examples
