#pragma once
// FlashLM v5.2 "Nova-Ignition" as shipped (VARIANTS.md §7.3, upstream train_v52.py@03ccd85): a float
// pre-norm transformer with RoPE and a GeGLU FFN, head tied to the embedding.
//   h = dropout(embed[ids]) → n_layers × block → ln_out → h·embedᵀ
//   block: x += attn(norm1(x)); x += dropout(ffn(norm2(x)))
//   attn:  [q, k, v] = qkv(x), heads of d_head, RoPE on q and k, causal softmax(q kᵀ/√d_head),
//          dropout on the probabilities, out(·)
//   ffn:   down(gelu(h₁) ⊙ h₂), [h₁, h₂] = up(x)
// Parameter names are the upstream state-dict keys (embed, blocks.{i}.norm1, attn.qkv, attn.out, norm2,
// ffn.up, ffn.down, ln_out; head.weight is an alias of embed.weight). Upstream's RoPE buffer
// blocks.{i}.attn.rotary.inv_freq is not a parameter: flashlm computes it, and `flashlm export` writes
// it (examples/upstream_buffers.hpp).
//
// Dropout (p = config "dropout", upstream 0.1) is applied only in training (loss() with gradients
// recorded), never in evaluation, logits() or generation, like torch's train()/eval() split. Its masks
// are a hash of the batch's token ids, so a resumed run draws the same masks as an uninterrupted one.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/attention.hpp>
#include <flashlm/nn/geglu_ffn.hpp>
#include <flashlm/nn/layernorm.hpp>
#include <flashlm/ops/dropout.hpp>

namespace flashlm::examples {

struct NovaConfig {
    int64_t vocab_size = 4096, d_model = 256, n_layers = 6, n_heads = 4, d_head = 64, d_ffn = 512, seq_len = 128;
    double dropout = 0.1;

    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size}, {"d_model", d_model}, {"n_layers", n_layers}, {"n_heads", n_heads},
                {"d_head", d_head},         {"d_ffn", d_ffn},     {"seq_len", seq_len},   {"dropout", dropout}};
    }
    static NovaConfig from_json(const nlohmann::json& j, NovaConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.n_heads = j.value("n_heads", c.n_heads);
        c.d_head = j.value("d_head", c.d_head);
        c.d_ffn = j.value("d_ffn", c.d_ffn);
        c.seq_len = j.value("seq_len", c.seq_len);
        c.dropout = j.value("dropout", c.dropout);
        if (c.vocab_size < 2 || c.d_model < 1 || c.n_layers < 1 || c.n_heads < 1 || c.d_ffn < 1 || c.seq_len < 1)
            throw std::invalid_argument("nova: config values must be positive");
        if (c.d_head < 2 || c.d_head % 2 != 0) throw std::invalid_argument("nova: d_head must be even (RoPE pairs)");
        if (!(c.dropout >= 0 && c.dropout < 1)) throw std::invalid_argument("nova: dropout must be in [0, 1)");
        return c;
    }
};

template <class T>
struct NovaBlock {
    nn::LayerNorm<T> norm1, norm2;
    nn::CausalSelfAttention<T> attn;
    nn::GeGLUFFN<T> ffn;

    void declare(ParamStore<T>& p, const std::string& pre, const NovaConfig& c) {
        norm1.declare(p, nn::join(pre, "norm1"), c.d_model);
        attn.declare(p, nn::join(pre, "attn"), c.d_model, c.n_heads, c.d_head, c.seq_len);
        norm2.declare(p, nn::join(pre, "norm2"), c.d_model);
        ffn.declare(p, nn::join(pre, "ffn"), c.d_model, c.d_ffn);
    }
    void init(Rng& rng) {
        norm1.init(rng);
        attn.init_normal_std(rng, 0.02);
        norm2.init(rng);
        ffn.init_normal_std(rng, 0.02);
    }
    // p: dropout probability (0 outside training); seed: this block's mask stream.
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, double p, uint64_t seed) const {
        x = ops::add(tape, x, attn(tape, norm1(tape, x), p, ops::mix64(seed + 1)));
        return ops::add(tape, x, ops::dropout(tape, ffn(tape, norm2(tape, x)), p, ops::mix64(seed + 2)));
    }
};

template <class T>
class Nova : public LanguageModel<T> {
public:
    Nova(std::string name, NovaConfig c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        embed_.declare(p, "embed", c.vocab_size, c.d_model);
        blocks_.resize(size_t(c.n_layers));
        for (int64_t i = 0; i < c.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), c);
        ln_out_.declare(p, "ln_out", c.d_model);
        p.alias("head.weight", "embed.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const NovaConfig& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embed_.init(rng, 0.02);
        for (auto& b : blocks_) b.init(rng);
        ln_out_.init(rng);
    }
    // p > 0 only in training; seed picks the dropout masks.
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L, double p = 0, uint64_t seed = 0) const {
        FLASHLM_CHECK(L <= cfg_.seq_len, "nova: sequence longer than seq_len (the RoPE table)");
        Tensor<T> x = embed_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model});
        x = ops::dropout(tape, x, p, ops::mix64(seed));
        for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i](tape, x, p, ops::mix64(seed + 16 * (i + 1)));
        return ln_out_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        const bool train = tape.grad_enabled() && cfg_.dropout > 0;
        uint64_t seed = 0;
        if (train)
            for (int64_t i = 0; i < B * L; ++i) seed = ops::mix64(seed ^ uint64_t(uint32_t(ids[i])));
        return ops::tied_head_cross_entropy(tape, hidden(tape, ids, B, L, train ? cfg_.dropout : 0.0, seed), embed_.w(),
                                            targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embed_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    NovaConfig cfg_;
    nn::Embedding<T> embed_;
    std::vector<NovaBlock<T>> blocks_;
    nn::LayerNorm<T> ln_out_;
};

// Cached generation with a KV cache per layer, preallocated for seq_len positions: a token costs
// O(context) (one query against the cached keys/values) and allocates nothing.
// Past seq_len: RoPE positions and the trained context end at seq_len, so when the cache is full the
// generator keeps the last ⌈seq_len/2⌉ tokens, rebuilds the caches from them at positions 0… (one
// batched prefill) and goes on. Every step's logits therefore equal a full forward over the last
// context_length() tokens, which is between seq_len/2 + 1 and seq_len (upstream's loop, and --no-cache,
// always recompute the last seq_len tokens; the two agree exactly until the first refill). The refill
// costs O(seq_len²) once per seq_len/2 tokens, O(seq_len) per token amortised.
class NovaGenerator : public Generator {
public:
    explicit NovaGenerator(const Nova<float>& m)
        : c_(m.cfg()), rope_(c_.d_head, c_.seq_len), W_(c_.n_heads * c_.d_head), scale_(1.0f / std::sqrt(float(c_.d_head))) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto P = [&](const std::string& n) { return ps.get(n).data; };
        emb_ = P("embed.weight");
        lnw_ = P("ln_out.weight"), lnb_ = P("ln_out.bias");
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Layer l;
            l.n1w = P(p + "norm1.weight"), l.n1b = P(p + "norm1.bias");
            l.n2w = P(p + "norm2.weight"), l.n2b = P(p + "norm2.bias");
            l.qkv = P(p + "attn.qkv.weight"), l.out = P(p + "attn.out.weight");
            l.up = P(p + "ffn.up.weight"), l.down = P(p + "ffn.down.weight");
            l.cache = nn::KVCache(c_.seq_len, W_, W_);
            layers_.push_back(std::move(l));
        }
        const size_t D = size_t(c_.d_model), F = size_t(c_.d_ffn), W = size_t(W_);
        x_.resize(D), h_.resize(D), t_.resize(D), qkv_.resize(3 * W), att_.resize(W), u_.resize(2 * F);
        s_.resize(size_t(c_.seq_len)), hist_.resize(size_t(c_.seq_len)), logits_.resize(size_t(c_.vocab_size));
        const size_t S = size_t((c_.seq_len + 1) / 2);  // rows a refill prefills
        px_.resize(S * D), ph_.resize(S * D), pqkv_.resize(S * 3 * W), patt_.resize(S * W), pu_.resize(S * 2 * F);
    }
    void reset() override {
        for (auto& l : layers_) l.cache.reset();
        len_ = 0;
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    // Tokens the last logits were computed from (the current window).
    int64_t context_length() const { return len_; }
    const float* step(int32_t token) override {
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        if (len_ == c_.seq_len) refill();
        hist_[size_t(len_)] = token;
        forward(token, true);
        return logits_.data();
    }

private:
    struct Layer {
        const float *n1w = nullptr, *n1b = nullptr, *n2w = nullptr, *n2b = nullptr;
        const float *qkv = nullptr, *out = nullptr, *up = nullptr, *down = nullptr;
        nn::KVCache cache;
    };

    void refill() {
        const int64_t keep = (c_.seq_len + 1) / 2;
        if (keep == c_.seq_len) {  // seq_len 1: nothing to keep
            reset();
            return;
        }
        std::memmove(hist_.data(), hist_.data() + (c_.seq_len - keep), size_t(keep) * sizeof(int32_t));
        reset();
        prefill(keep);
    }

    // Rebuilds the caches from hist_[0, n) in one pass per layer: the projections of all n rows are
    // GEMMs (kernels/gemm.hpp) instead of n matvecs; row i attends over cached rows 0…i.
    void prefill(int64_t n) {
        const int64_t D = c_.d_model, F = c_.d_ffn, W = W_, dh = c_.d_head, hh = dh / 2;
        float *X = px_.data(), *H = ph_.data(), *QKV = pqkv_.data(), *A = patt_.data(), *U = pu_.data();
        for (int64_t i = 0; i < n; ++i)
            std::copy(emb_ + int64_t(hist_[size_t(i)]) * D, emb_ + int64_t(hist_[size_t(i)] + 1) * D, X + i * D);
        for (auto& l : layers_) {
            for (int64_t i = 0; i < n; ++i) ops::layernorm_vec(X + i * D, l.n1w, l.n1b, H + i * D, D, 1e-5f);
            kernels::gemm_nt(n, 3 * W, D, H, l.qkv, QKV, false);
            for (int64_t i = 0; i < n; ++i) {
                float* r = QKV + i * 3 * W;
                const float *cs = rope_.cos.data() + i * hh, *sn = rope_.sin.data() + i * hh;
                ops::rope_row(r, r, W, dh, cs, sn, 1.0f, false);
                ops::rope_row(r + W, l.cache.next_k(), W, dh, cs, sn, 1.0f, false);
                std::copy(r + 2 * W, r + 3 * W, l.cache.next_v());
                l.cache.commit();
            }
            for (int64_t i = 0; i < n; ++i)
                ops::attend_cached(QKV + i * 3 * W, l.cache.k.data(), l.cache.v.data(), i + 1, c_.n_heads, dh, dh, scale_,
                                   s_.data(), A + i * W);
            kernels::gemm_nt(n, D, W, A, l.out, X, true);  // residual: X += A·outᵀ
            for (int64_t i = 0; i < n; ++i) ops::layernorm_vec(X + i * D, l.n2w, l.n2b, H + i * D, D, 1e-5f);
            kernels::gemm_nt(n, 2 * F, D, H, l.up, U, false);
            // gelu(h₁) ⊙ h₂ packed in place to [n, F]: row i's output lands below row i's input.
            for (int64_t i = 0; i < n; ++i) {
                const float* u = U + i * 2 * F;
                float* g = U + i * F;
                for (int64_t c = 0; c < F; ++c) g[c] = ops::gelu_scalar(u[c]) * u[F + c];
            }
            kernels::gemm_nt(n, D, F, U, l.down, X, true);
        }
        len_ = n;
    }

    // Runs one token at position len_ through every layer (appending its keys/values) and, if asked,
    // the head.
    void forward(int32_t token, bool head) {
        const int64_t D = c_.d_model, F = c_.d_ffn, W = W_, dh = c_.d_head, hh = dh / 2, pos = len_;
        const float* cs = rope_.cos.data() + pos * hh;
        const float* sn = rope_.sin.data() + pos * hh;
        std::copy(emb_ + int64_t(token) * D, emb_ + int64_t(token + 1) * D, x_.begin());
        for (auto& l : layers_) {
            ops::layernorm_vec(x_.data(), l.n1w, l.n1b, h_.data(), D, 1e-5f);
            kernels::dense_f32_matvec(l.qkv, 3 * W, D, h_.data(), qkv_.data());
            ops::rope_row(qkv_.data(), qkv_.data(), W, dh, cs, sn, 1.0f, false);
            ops::rope_row(qkv_.data() + W, l.cache.next_k(), W, dh, cs, sn, 1.0f, false);
            std::copy(qkv_.begin() + 2 * W, qkv_.begin() + 3 * W, l.cache.next_v());
            l.cache.commit();
            ops::attend_cached(qkv_.data(), l.cache.k.data(), l.cache.v.data(), l.cache.len, c_.n_heads, dh, dh, scale_,
                               s_.data(), att_.data());
            kernels::dense_f32_matvec(l.out, D, W, att_.data(), t_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            ops::layernorm_vec(x_.data(), l.n2w, l.n2b, h_.data(), D, 1e-5f);
            kernels::dense_f32_matvec(l.up, 2 * F, D, h_.data(), u_.data());
            for (int64_t c = 0; c < F; ++c) u_[size_t(c)] = ops::gelu_scalar(u_[size_t(c)]) * u_[size_t(F + c)];
            kernels::dense_f32_matvec(l.down, D, F, u_.data(), t_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
        }
        ++len_;
        if (!head) return;
        ops::layernorm_vec(x_.data(), lnw_, lnb_, h_.data(), D, 1e-5f);
        kernels::dense_f32_matvec(emb_, c_.vocab_size, D, h_.data(), logits_.data());
    }

    NovaConfig c_;
    ops::RopeTable<float> rope_;
    int64_t W_ = 0, len_ = 0;
    float scale_ = 0;
    const float *emb_ = nullptr, *lnw_ = nullptr, *lnb_ = nullptr;
    std::vector<Layer> layers_;
    std::vector<float> x_, h_, t_, qkv_, att_, u_, s_, logits_;
    std::vector<float> px_, ph_, pqkv_, patt_, pu_;  // prefill rows [keep, ·]
    std::vector<int32_t> hist_;  // token at each cached position
};

template <class T>
std::unique_ptr<Generator> Nova<T>::make_generator(Quant) const {
    if constexpr (std::is_same_v<T, float>) {
        return std::make_unique<NovaGenerator>(*this);
    } else {
        return nullptr;
    }
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_NOVA for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_NOVA
extern template class Nova<float>;
#endif

}  // namespace flashlm::examples
