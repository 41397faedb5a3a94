#pragma once
// FlashLM v4 "Bolt" (VARIANTS.md §5): embedding → n_blocks × BoltBlock → RMSNorm → head tied to the
// embedding. BoltBlock: x += GatedConvMixer(RMSNorm(x)); x += TernaryGLU(RMSNorm(x)).
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>

namespace flashlm::examples {

struct BoltConfig {
    int64_t vocab_size = 10000, dim = 192, n_blocks = 6, kernel_size = 8, glu_hidden = 512, seq_len = 256;

    static BoltConfig small() { return {}; }
    static BoltConfig large() { return {10000, 384, 8, 8, 1024, 512}; }
    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"dim", dim},           {"n_blocks", n_blocks},
                {"kernel_size", kernel_size}, {"glu_hidden", glu_hidden}, {"seq_len", seq_len}};
    }
    static BoltConfig from_json(const nlohmann::json& j, BoltConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.dim = j.value("dim", c.dim);
        c.n_blocks = j.value("n_blocks", c.n_blocks);
        c.kernel_size = j.value("kernel_size", c.kernel_size);
        c.glu_hidden = j.value("glu_hidden", c.glu_hidden);
        c.seq_len = j.value("seq_len", c.seq_len);
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

    void declare(ParamStore<T>& p, const std::string& prefix, const BoltConfig& c) {
        norm1.declare(p, nn::join(prefix, "norm1"), c.dim);
        mixer.declare(p, nn::join(prefix, "mixer"), c.dim, c.kernel_size);
        norm2.declare(p, nn::join(prefix, "norm2"), c.dim);
        ffn.declare(p, nn::join(prefix, "ffn"), c.dim, c.glu_hidden);
    }
    void init(Rng& rng) {
        norm1.init(rng);
        mixer.init(rng);
        norm2.init(rng);
        ffn.init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x) const {
        x = ops::add(tape, x, mixer(tape, norm1(tape, x)));
        return ops::add(tape, x, ffn(tape, norm2(tape, x)));
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
        for (auto& b : blocks_) x = b(tape, x);
        return final_norm_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L), embedding_.w(), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embedding_.w());
    }

private:
    std::string name_;
    BoltConfig cfg_;
    nn::Embedding<T> embedding_;
    std::vector<BoltBlock<T>> blocks_;
    nn::RMSNorm<T> final_norm_;
};

}  // namespace flashlm::examples
