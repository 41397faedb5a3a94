#pragma once
// FlashLM v5.2 "Nova-Ignition" as announced (VARIANTS.md §7.1, upstream train_v52.py@ef9d7b8 … @17ecef3,
// causal mask from d2d1f9f): ternary (Q2) differential attention + soft Mixture-of-Depths + a shared/top-1
// routed MoE, untied ternary head. CLI name `nova-diff`.
//   h = embed[ids]·D^-½ (μP) → n_layers × block → ln_out → head (BitLinear-Q2, untied)
//   block l: x += m_l ⊙ attn(attn_norm(x));  x += ffn(ffn_norm(x))
//     m_l = σ(mod_router(x)) per token for l ≥ mod_start (2), else 1   (soft MoD; no token is skipped)
//   attn(u): q = q_norm(W_q u), k = k_norm(W_k u)  (LayerNorm over the whole 2·H·d width)
//            v = W_v u;  o = softmax(q₁k₁ᵀ/√d + causal) v − λ softmax(q₂k₂ᵀ/√d + causal) v;  W_o o
//            λ = clamp(exp(mean λ_q − mean λ_k), 0.1, 2.0), one scalar per layer (ops/differential_attention.hpp)
//   ffn(u):  h = norm(u) (a second LayerNorm: upstream normalises the FFN input twice)
//            shared_expert(h) + p_e · experts[e](h),  e = argmax softmax(router h), p_e its probability;
//            every expert is B2(SiLU(B1 h)) (D → expert_dim → D). Only the chosen expert runs per token:
//            the tokens of each expert are gathered, run as one block, and added back (ops/moe_routing.hpp).
// W_q, W_k, W_v, W_o, the experts and the head are BitLinear-Q2 (per-row absmean, identity STE); the two
// routers, λ and the LayerNorms are float. No position encoding: the causal mask is the only order signal.
// Parameter names are upstream's state-dict keys.
//
// Upstream defect (VARIANTS.md §7.1 "training mode only"): upstream applies the MoD weight only in
// train() mode, so its evaluation, sampling and any score of a saved checkpoint run a different model
// from the one trained. flashlm applies the weight always (training, evaluation, generation);
// "upstream_compat": true (--upstream-compat) applies it only in training (loss() with gradients recorded),
// reproducing upstream's eval-mode numbers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/bitlinear_rows.hpp>
#include <flashlm/nn/frozen.hpp>
#include <flashlm/nn/layernorm.hpp>
#include <flashlm/nn/linear.hpp>
#include <flashlm/ops/activation.hpp>
#include <flashlm/ops/differential_attention.hpp>
#include <flashlm/ops/moe_expert_silu.hpp>
#include <flashlm/ops/moe_routing.hpp>
#include <flashlm/ops/scale.hpp>

namespace flashlm::examples {

struct NovaDiffConfig {
    int64_t vocab_size = 5120, d_model = 288, n_layers = 12, n_heads = 6, d_head = 48, expert_dim = 576,
            n_experts = 6, mod_start = 2, seq_len = 256;
    // Upstream computes a top-k with this capacity but never uses its mask; kept for the config only.
    double mod_capacity = 0.7, lambda_min = 0.1, lambda_max = 2.0;
    bool upstream_compat = false;

    int64_t inner() const { return n_heads * d_head; }
    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size},   {"d_model", d_model},       {"n_layers", n_layers},
                {"n_heads", n_heads},         {"d_head", d_head},         {"expert_dim", expert_dim},
                {"n_experts", n_experts},     {"mod_start", mod_start},   {"seq_len", seq_len},
                {"mod_capacity", mod_capacity}, {"lambda_min", lambda_min}, {"lambda_max", lambda_max},
                {"upstream_compat", upstream_compat}, {"top_k_experts", 1}};  // top-1 routing (fixed)
    }
    void validate() const {
        if (vocab_size < 2 || d_model < 1 || n_layers < 1 || n_heads < 1 || d_head < 1 || expert_dim < 1 ||
            n_experts < 1 || seq_len < 1)
            throw std::invalid_argument("nova-diff: config values must be positive");
        if (mod_start < 0) throw std::invalid_argument("nova-diff: mod_start must be >= 0");
        if (!(lambda_min > 0 && lambda_min <= lambda_max))
            throw std::invalid_argument("nova-diff: need 0 < lambda_min <= lambda_max");
    }
    static NovaDiffConfig from_json(const nlohmann::json& j, NovaDiffConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.n_heads = j.value("n_heads", c.n_heads);
        c.d_head = j.value("d_head", c.d_head);
        c.expert_dim = j.value("expert_dim", c.expert_dim);
        c.n_experts = j.value("n_experts", c.n_experts);
        c.mod_start = j.value("mod_start", c.mod_start);
        c.seq_len = j.value("seq_len", c.seq_len);
        c.mod_capacity = j.value("mod_capacity", c.mod_capacity);
        c.lambda_min = j.value("lambda_min", c.lambda_min);
        c.lambda_max = j.value("lambda_max", c.lambda_max);
        c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
        if (j.value("top_k_experts", int64_t(1)) != 1)
            throw std::invalid_argument("nova-diff: each token goes to one routed expert (top_k_experts must be 1)");
        c.validate();
        return c;
    }
};

// Upstream's BitLinear init: kaiming-normal, fan-out, linear gain → N(0, 1/out).
template <class T>
void init_bitlinear_linear_gain(const nn::BitLinearRows<T>& l, Rng& rng) {
    Tensor<T> w = l.w();
    nn::init_normal(w, rng, 1.0 / std::sqrt(double(w.dim(0))));
}

// B2(SiLU(B1 h)), upstream nn.Sequential(BitLinear, SiLU, BitLinear): names `0.weight`, `2.weight`.
template <class T>
struct NovaDiffExpert {
    nn::BitLinearRows<T> up, down;
    void declare(ParamStore<T>& p, const std::string& pre, int64_t D, int64_t F) {
        up.declare(p, nn::join(pre, "0"), D, F);
        down.declare(p, nn::join(pre, "2"), F, D);
    }
    void init(Rng& rng) {
        init_bitlinear_linear_gain(up, rng);
        init_bitlinear_linear_gain(down, rng);
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& h) const { return down(tape, ops::silu(tape, up(tape, h))); }
};

template <class T>
struct NovaDiffAttention {
    nn::BitLinearRows<T> W_q, W_k, W_v, W_o;
    std::size_t lambda_q = 0, lambda_k = 0;
    nn::LayerNorm<T> q_norm, k_norm;
    ParamStore<T>* ps = nullptr;
    int64_t H = 0, dh = 0;
    double lo = 0.1, hi = 2.0;

    void declare(ParamStore<T>& p, const std::string& pre, const NovaDiffConfig& c) {
        ps = &p, H = c.n_heads, dh = c.d_head, lo = c.lambda_min, hi = c.lambda_max;
        const int64_t D = c.d_model, W = c.inner();
        W_q.declare(p, nn::join(pre, "W_q"), D, 2 * W);
        W_k.declare(p, nn::join(pre, "W_k"), D, 2 * W);
        W_v.declare(p, nn::join(pre, "W_v"), D, W);
        W_o.declare(p, nn::join(pre, "W_o"), W, D);
        lambda_q = p.add(nn::join(pre, "lambda_q"), Shape{c.n_heads, c.d_head});
        lambda_k = p.add(nn::join(pre, "lambda_k"), Shape{c.n_heads, c.d_head});
        q_norm.declare(p, nn::join(pre, "q_norm"), 2 * W);
        k_norm.declare(p, nn::join(pre, "k_norm"), 2 * W);
    }
    void init(Rng& rng) {
        for (auto* l : {&W_q, &W_k, &W_v, &W_o}) init_bitlinear_linear_gain(*l, rng);
        nn::init_normal(ps->get(lambda_q), rng, 0.1);
        nn::init_normal(ps->get(lambda_k), rng, 0.1);
        q_norm.init(rng);
        k_norm.init(rng);
    }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& u) const {
        Tensor<T> q = q_norm(tape, W_q(tape, u));
        Tensor<T> k = k_norm(tape, W_k(tape, u));
        Tensor<T> v = W_v(tape, u);
        Tensor<T> lam = ops::diff_lambda(tape, ps->get(lambda_q), ps->get(lambda_k), lo, hi);
        const double scale = 1.0 / std::sqrt(double(dh));
        return W_o(tape, unfused ? ops::differential_attention_chain(tape, q, k, v, lam, H, scale)
                                 : ops::differential_attention(tape, q, k, v, lam, H, scale));
    }
    bool unfused = false;  // tests and bench --unfused: the op-by-op chain (q and k halves copied out)
};

template <class T>
struct IgnitionMoE {
    NovaDiffExpert<T> shared_expert;
    std::vector<NovaDiffExpert<T>> experts;
    nn::Linear<T> router;
    nn::LayerNorm<T> norm;

    void declare(ParamStore<T>& p, const std::string& pre, const NovaDiffConfig& c) {
        shared_expert.declare(p, nn::join(pre, "shared_expert"), c.d_model, c.expert_dim);
        experts.resize(size_t(c.n_experts));
        for (int64_t e = 0; e < c.n_experts; ++e)
            experts[size_t(e)].declare(p, nn::join(pre, "experts." + std::to_string(e)), c.d_model, c.expert_dim);
        router.declare(p, nn::join(pre, "router"), c.d_model, c.n_experts);
        norm.declare(p, nn::join(pre, "norm"), c.d_model);
    }
    void init(Rng& rng) {
        shared_expert.init(rng);
        for (auto& e : experts) e.init(rng);
        router.init_normal_std(rng, 0.01);
        norm.init(rng);
    }
    bool unfused = false;  // tests and bench --unfused: the op-by-op chain the expert nodes must match

    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& u) const {
        const Shape shape = u.shape;
        const int64_t D = u.cols(), N = u.rows(), E = int64_t(experts.size());
        Tensor<T> h = norm(tape, u).reshape(Shape{N, D});
        const auto& sh = shared_expert;
        Tensor<T> out = unfused ? sh(tape, h) : ops::expert_silu(tape, h, sh.up.w(), sh.down.w());
        // The ops copy the row lists they keep into the tape; these buffers only live through the forward
        // (kept as members so that steady-state steps allocate nothing).
        choice_.resize(size_t(N)), order_.resize(size_t(N)), offset_.resize(size_t(E + 1));
        Tensor<T> gate = ops::top1_softmax_gate(tape, router(tape, h), choice_.data());
        ops::group_by_choice(choice_.data(), N, E, order_.data(), offset_.data());
        bool first = true;
        for (int64_t e = 0; e < E; ++e) {
            const int64_t M = offset_[size_t(e + 1)] - offset_[size_t(e)];
            if (M == 0) continue;  // upstream skips an expert no token chose
            const int32_t* rows = order_.data() + offset_[size_t(e)];
            if (!unfused) {  // one node per expert (ops/moe_expert_silu.hpp), adding into the shared output
                const auto& ex = experts[size_t(e)];
                out = ops::routed_expert_silu_into(tape, out, h, gate, rows, M, ex.up.w(), ex.down.w());
                continue;
            }
            Tensor<T> y = experts[size_t(e)](tape, ops::gather_rows(tape, h, rows, M));
            y = ops::scale_rows(tape, y, ops::gather_rows(tape, gate, rows, M));
            // one [N, D] sum for all experts: the first copies the shared expert's output, the rest add in place
            out = first ? ops::scatter_add_rows(tape, out, y, rows) : ops::scatter_add_rows_into(tape, out, y, rows);
            first = false;
        }
        return out.reshape(shape);
    }

private:
    mutable std::vector<int32_t> choice_, order_;
    mutable std::vector<int64_t> offset_;
};

template <class T>
struct NovaDiffBlock {
    bool use_mod = false;
    nn::Linear<T> mod_router;  // mod_router.router.weight [1, D]
    NovaDiffAttention<T> attn;
    nn::LayerNorm<T> attn_norm, ffn_norm;
    IgnitionMoE<T> ffn;

    void declare(ParamStore<T>& p, const std::string& pre, const NovaDiffConfig& c, int64_t layer) {
        use_mod = layer >= c.mod_start;
        if (use_mod) mod_router.declare(p, nn::join(pre, "mod_router.router"), c.d_model, 1);
        attn.declare(p, nn::join(pre, "attn"), c);
        attn_norm.declare(p, nn::join(pre, "attn_norm"), c.d_model);
        ffn.declare(p, nn::join(pre, "ffn"), c);
        ffn_norm.declare(p, nn::join(pre, "ffn_norm"), c.d_model);
    }
    void init(Rng& rng) {
        if (use_mod) mod_router.init_normal_std(rng, 0.01);
        attn.init(rng);
        attn_norm.init(rng);
        ffn.init(rng);
        ffn_norm.init(rng);
    }
    // mod: whether the soft MoD weight applies in this pass.
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, bool mod) const {
        Tensor<T> a = attn(tape, attn_norm(tape, x));
        if (use_mod && mod) a = ops::scale_rows(tape, a, ops::sigmoid(tape, mod_router(tape, x)));
        x = ops::add(tape, x, a);
        return ops::add(tape, x, ffn(tape, ffn_norm(tape, x)));
    }
};

template <class T>
class NovaDiff : public LanguageModel<T> {
public:
    NovaDiff(std::string name, NovaDiffConfig c) : name_(std::move(name)), cfg_(c) {
        cfg_.validate();
        auto& p = this->params_;
        embed_.declare(p, "embed", c.vocab_size, c.d_model);
        blocks_.resize(size_t(c.n_layers));
        for (int64_t i = 0; i < c.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), c, i);
        ln_out_.declare(p, "ln_out", c.d_model);
        head_.declare(p, "head", c.d_model, c.vocab_size);
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const NovaDiffConfig& cfg() const { return cfg_; }
    // Tests and bench --unfused: run the attention and the experts as the op-by-op chains.
    void set_unfused(bool on) {
        for (auto& b : blocks_) b.ffn.unfused = b.attn.unfused = on;
    }

    void init(Rng& rng) override {
        embed_.init(rng, 1.0 / std::sqrt(double(cfg_.d_model)));
        for (auto& b : blocks_) b.init(rng);
        ln_out_.init(rng);
        init_bitlinear_linear_gain(head_, rng);
    }
    // mod: apply the soft MoD weights (always, unless upstream_compat outside training).
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L, bool mod) const {
        FLASHLM_CHECK(L <= cfg_.seq_len, "nova-diff: sequence longer than seq_len");
        Tensor<T> x = ops::mul_const(tape, embed_(tape, ids, B * L), 1.0 / std::sqrt(double(cfg_.d_model)))
                          .reshape(Shape{B, L, cfg_.d_model});
        for (auto& b : blocks_) x = b(tape, x, mod);
        return ln_out_(tape, x);
    }
    bool mod_active(const Tape<T>& tape) const { return !cfg_.upstream_compat || tape.grad_enabled(); }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        return ops::cross_entropy(tape, head_(tape, hidden(tape, ids, B, L, mod_active(tape))), targets);
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return head_(tape, hidden(tape, ids, B, L, !cfg_.upstream_compat));
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;

private:
    std::string name_;
    NovaDiffConfig cfg_;
    nn::Embedding<T> embed_;
    std::vector<NovaDiffBlock<T>> blocks_;
    nn::LayerNorm<T> ln_out_;
    nn::BitLinearRows<T> head_;
};

// Cached generation: per layer a KV cache of the branch-1 keys with the values and one of the branch-2
// keys (both preallocated for seq_len rows); ternary weights packed (Q2 codes + per-row α), the routers,
// λ and the norms float. A token costs O(context) and allocates nothing. The model has no position
// encoding, but it was trained on windows of seq_len tokens: when the cache is full the generator keeps
// the last ⌈seq_len/2⌉ tokens, rebuilds the caches from them (one pass per kept token) and goes on, so
// every step's logits equal a full forward over the last context_length() tokens (between seq_len/2 + 1
// and seq_len; --no-cache recomputes the last seq_len, the two agree until the first refill).
class NovaDiffGenerator : public Generator {
public:
    NovaDiffGenerator(const NovaDiff<float>& m, Quant q)
        : c_(m.cfg()), q_(q), W_(c_.inner()), scale_(1.0f / std::sqrt(float(c_.d_head))) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto P = [&](const std::string& n) { return ps.get(n).data; };
        auto B = [&](const std::string& n) { return nn::FrozenBitLinearRows(ps.get(n)); };
        emb_ = P("embed.weight");
        lnw_ = P("ln_out.weight"), lnb_ = P("ln_out.bias");
        head_ = B("head.weight");
        const bool mod = !c_.upstream_compat;
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Layer l;
            if (mod && i >= c_.mod_start) l.mod = P(p + "mod_router.router.weight");
            l.anw = P(p + "attn_norm.weight"), l.anb = P(p + "attn_norm.bias");
            l.fnw = P(p + "ffn_norm.weight"), l.fnb = P(p + "ffn_norm.bias");
            l.qnw = P(p + "attn.q_norm.weight"), l.qnb = P(p + "attn.q_norm.bias");
            l.knw = P(p + "attn.k_norm.weight"), l.knb = P(p + "attn.k_norm.bias");
            l.mnw = P(p + "ffn.norm.weight"), l.mnb = P(p + "ffn.norm.bias");
            l.router = P(p + "ffn.router.weight");
            l.Wq = B(p + "attn.W_q.weight"), l.Wk = B(p + "attn.W_k.weight");
            l.Wv = B(p + "attn.W_v.weight"), l.Wo = B(p + "attn.W_o.weight");
            l.s1 = B(p + "ffn.shared_expert.0.weight"), l.s2 = B(p + "ffn.shared_expert.2.weight");
            for (int64_t e = 0; e < c_.n_experts; ++e) {
                const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
                l.e1.push_back(B(x + "0.weight"));
                l.e2.push_back(B(x + "2.weight"));
            }
            // λ as the training forward computes it (float32 through a [1] tensor).
            Tape<float> tape;
            NoGradGuard<float> guard(tape);
            l.lambda = ops::diff_lambda(tape, ps.get(p + "attn.lambda_q"), ps.get(p + "attn.lambda_k"), c_.lambda_min,
                                        c_.lambda_max)
                           .data[0];
            l.c1 = nn::KVCache(c_.seq_len, W_, W_);
            l.c2 = nn::KVCache(c_.seq_len, W_, 0);
            layers_.push_back(std::move(l));
        }
        const size_t D = size_t(c_.d_model), F = size_t(c_.expert_dim), W = size_t(W_);
        // The ternary inputs (h_, att_, a_) stay zero past their width: the padded kernels read whole blocks.
        const auto pad = [](size_t n) { return (n + size_t(kernels::k_block) - 1) / size_t(kernels::k_block) * size_t(kernels::k_block); };
        x_.resize(D), h_.resize(pad(D)), t_.resize(D), y_.resize(D), q_buf_.resize(2 * W), k_buf_.resize(2 * W);
        att_.resize(pad(W)), att2_.resize(W), a_.resize(pad(F)), z_.resize(size_t(c_.n_experts));
        xq_.resize(pad(std::max({D, F, W})));
        s_.resize(size_t(c_.seq_len)), hist_.resize(size_t(c_.seq_len)), logits_.resize(size_t(c_.vocab_size));
    }
    void reset() override {
        for (auto& l : layers_) l.c1.reset(), l.c2.reset();
        len_ = 0;
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
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
        const float *mod = nullptr, *anw = nullptr, *anb = nullptr, *fnw = nullptr, *fnb = nullptr;
        const float *qnw = nullptr, *qnb = nullptr, *knw = nullptr, *knb = nullptr, *mnw = nullptr, *mnb = nullptr;
        const float* router = nullptr;
        nn::FrozenBitLinearRows Wq, Wk, Wv, Wo, s1, s2;
        std::vector<nn::FrozenBitLinearRows> e1, e2;
        float lambda = 1;
        nn::KVCache c1, c2;  // c1: branch-1 keys + values; c2: branch-2 keys
    };

    void refill() {
        const int64_t keep = (c_.seq_len + 1) / 2;
        if (keep == c_.seq_len) {  // seq_len 1: nothing to keep
            reset();
            return;
        }
        std::memmove(hist_.data(), hist_.data() + (c_.seq_len - keep), size_t(keep) * sizeof(int32_t));
        reset();
        for (int64_t i = 0; i < keep; ++i) forward(hist_[size_t(i)], false);
    }

    // B2(SiLU(B1 h)) into out.
    void expert(const nn::FrozenBitLinearRows& b1, const nn::FrozenBitLinearRows& b2, const float* h, float* out) {
        b1.apply_padded(h, a_.data(), q_, xq_.data());
        Eigen::Map<Eigen::ArrayXf> a(a_.data(), Eigen::Index(c_.expert_dim));
        a = a / (1.0f + (-a).exp());
        b2.apply_padded(a_.data(), out, q_, xq_.data());
    }

    void forward(int32_t token, bool head) {
        const int64_t D = c_.d_model, W = W_, E = c_.n_experts;
        const float es = 1.0f / std::sqrt(float(D));
        for (int64_t c = 0; c < D; ++c) x_[size_t(c)] = emb_[int64_t(token) * D + c] * es;
        for (auto& l : layers_) {
            ops::layernorm_vec(x_.data(), l.anw, l.anb, h_.data(), D, 1e-5f);
            l.Wq.apply_padded(h_.data(), q_buf_.data(), q_, xq_.data());
            ops::layernorm_vec(q_buf_.data(), l.qnw, l.qnb, q_buf_.data(), 2 * W, 1e-5f);
            l.Wk.apply_padded(h_.data(), k_buf_.data(), q_, xq_.data());
            ops::layernorm_vec(k_buf_.data(), l.knw, l.knb, k_buf_.data(), 2 * W, 1e-5f);
            std::copy(k_buf_.begin(), k_buf_.begin() + W, l.c1.next_k());
            std::copy(k_buf_.begin() + W, k_buf_.end(), l.c2.next_k());
            l.Wv.apply_padded(h_.data(), l.c1.next_v(), q_, xq_.data());
            l.c1.commit(), l.c2.commit();
            ops::attend_cached_differential(q_buf_.data(), l.c1.k.data(), l.c2.k.data(), l.c1.v.data(), l.c1.len,
                                            c_.n_heads, c_.d_head, c_.d_head, scale_, l.lambda, s_.data(), att2_.data(),
                                            att_.data());
            l.Wo.apply_padded(att_.data(), t_.data(), q_, xq_.data());
            float m = 1;
            if (l.mod) {
                float z = 0;
                for (int64_t c = 0; c < D; ++c) z += l.mod[c] * x_[size_t(c)];
                m = 1.0f / (1.0f + std::exp(-z));
            }
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += m * t_[size_t(c)];
            // FFN input: ffn_norm, then the MoE's own norm.
            ops::layernorm_vec(x_.data(), l.fnw, l.fnb, h_.data(), D, 1e-5f);
            ops::layernorm_vec(h_.data(), l.mnw, l.mnb, h_.data(), D, 1e-5f);
            kernels::dense_f32_matvec(l.router, E, D, h_.data(), z_.data());
            int64_t best = 0;
            for (int64_t e = 1; e < E; ++e)
                if (z_[size_t(e)] > z_[size_t(best)]) best = e;
            float sum = 0;
            for (int64_t e = 0; e < E; ++e) sum += std::exp(z_[size_t(e)] - z_[size_t(best)]);
            const float p = 1.0f / sum;
            expert(l.s1, l.s2, h_.data(), t_.data());
            expert(l.e1[size_t(best)], l.e2[size_t(best)], h_.data(), y_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)] + p * y_[size_t(c)];
        }
        ++len_;
        if (!head) return;
        ops::layernorm_vec(x_.data(), lnw_, lnb_, h_.data(), D, 1e-5f);
        head_.apply_padded(h_.data(), logits_.data(), q_, xq_.data());
    }

    NovaDiffConfig c_;
    Quant q_;
    int64_t W_ = 0, len_ = 0;
    float scale_ = 0;
    const float *emb_ = nullptr, *lnw_ = nullptr, *lnb_ = nullptr;
    nn::FrozenBitLinearRows head_;
    std::vector<Layer> layers_;
    std::vector<float> x_, h_, t_, y_, q_buf_, k_buf_, att_, att2_, a_, z_, s_, logits_;
    std::vector<int8_t> xq_;
    std::vector<int32_t> hist_;  // token at each cached position
};

template <class T>
std::unique_ptr<Generator> NovaDiff<T>::make_generator(Quant q) const {
    if constexpr (std::is_same_v<T, float>) {
        return std::make_unique<NovaDiffGenerator>(*this, q);
    } else {
        return nullptr;
    }
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_NOVA_DIFF for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_NOVA_DIFF
extern template class NovaDiff<float>;
#endif

}  // namespace flashlm::examples
