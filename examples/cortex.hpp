#pragma once
// FlashLM v7.1 "CORTEX-III" and v7.2 "CORTEX-VI" (VARIANTS.md §10.1, §10.2), float weights:
//   h = RMSNorm_in(embed[ids]) → n_layers × block → RMSNorm_out → head tied to the embedding.
// CORTEX-III block:  x += mixer_down( conv_15(v) ⊙ σ(g) ),  [g, v] = split(mixer_up(ln1(x)))
//                    x += Wo( SiLU(Wg u) ⊙ Wu u ),          u = ln2(x)
// CORTEX-VI adds, between the two, the decayed "Hebbian" memory (d_mem = 64, decay 0.99):
//                    u = ln_mem(x); x += mem_out( decayed_memory(key_proj u, val_proj u, query_proj u) )
// Parameter names are the upstream state-dict keys (embed, ln_in, blocks.{i}.ln1, mixer_up, conv.conv,
// mixer_down, ln_mem, key_proj, val_proj, query_proj, mem_out, ln2, Wg, Wu, Wo, ln_out; head.weight is
// an alias of embed.weight). Upstream's buffer blocks.{i}.decay_mask is not a parameter: flashlm computes it,
// and `flashlm export` writes it (examples/upstream_buffers.hpp).
//
// Two upstream defects are fixed by default (VARIANTS.md §16 Q1, Q11) and reproduced with
// "upstream_compat": true:
//  - loss: next-token targets; upstream compares logits[:, :-1] with targets[:, 1:] (predicts t+2);
//  - memory read scale: 1/(√d_mem·√seq_len), a constant, so a position's output does not depend on the
//    length of the window it is computed in; upstream divides by √T of the current window.
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/linear.hpp>
#include <flashlm/ops/decayed_memory.hpp>
#include <flashlm/ops/prenorm_memory_residual.hpp>
#include <flashlm/ops/prenorm_residual.hpp>

namespace flashlm::examples {

struct CortexConfig {
    int64_t vocab_size = 4096, d_model = 256, n_layers = 6, d_ff = 512, kernel_size = 15, seq_len = 256;
    int64_t d_mem = 0;  // 0: CORTEX-III (no memory); 64: CORTEX-VI
    double decay = 0.99;
    bool upstream_compat = false;

    static CortexConfig cortex3() { return {}; }
    static CortexConfig cortex6() {
        CortexConfig c;
        c.d_mem = 64;
        return c;
    }
    bool memory() const { return d_mem > 0; }
    // The memory read scale for a window of L tokens.
    double mem_scale(int64_t L) const {
        return 1.0 / (std::sqrt(double(d_mem)) * std::sqrt(double(upstream_compat ? L : seq_len)));
    }
    nlohmann::json to_json() const {
        nlohmann::json j = {{"vocab_size", vocab_size}, {"d_model", d_model},         {"n_layers", n_layers},
                            {"d_ff", d_ff},             {"kernel_size", kernel_size}, {"seq_len", seq_len},
                            {"upstream_compat", upstream_compat}};
        if (memory()) j["d_mem"] = d_mem, j["decay"] = decay;
        return j;
    }
    static CortexConfig from_json(const nlohmann::json& j, CortexConfig c) {
        c.vocab_size = j.value("vocab_size", c.vocab_size);
        c.d_model = j.value("d_model", c.d_model);
        c.n_layers = j.value("n_layers", c.n_layers);
        c.d_ff = j.value("d_ff", c.d_ff);
        c.kernel_size = j.value("kernel_size", c.kernel_size);
        c.seq_len = j.value("seq_len", c.seq_len);
        c.upstream_compat = j.value("upstream_compat", c.upstream_compat);
        if (c.memory()) {
            c.d_mem = j.value("d_mem", c.d_mem);
            c.decay = j.value("decay", c.decay);
            if (c.d_mem < 1 || !(c.decay > 0 && c.decay <= 1))
                throw std::invalid_argument("cortex: d_mem must be positive and decay in (0, 1]");
        }
        if (c.vocab_size < 2 || c.d_model < 1 || c.n_layers < 1 || c.d_ff < 1 || c.kernel_size < 1 || c.seq_len < 1)
            throw std::invalid_argument("cortex: config values must be positive");
        return c;
    }
};

template <class T>
struct CortexBlock {
    nn::RMSNorm<T> ln1, ln_mem, ln2;
    nn::Linear<T> mixer_up, mixer_down, key_proj, val_proj, query_proj, mem_out, Wg, Wu, Wo;
    nn::CausalDepthwiseConv1d<T> conv;
    bool memory = false;

    void declare(ParamStore<T>& p, const std::string& pre, const CortexConfig& c) {
        const int64_t D = c.d_model;
        memory = c.memory();
        ln1.declare(p, nn::join(pre, "ln1"), D, 1e-6, "weight");
        mixer_up.declare(p, nn::join(pre, "mixer_up"), D, 2 * D);
        conv.declare(p, nn::join(pre, "conv.conv"), D, c.kernel_size);
        mixer_down.declare(p, nn::join(pre, "mixer_down"), D, D);
        if (memory) {
            ln_mem.declare(p, nn::join(pre, "ln_mem"), D, 1e-6, "weight");
            key_proj.declare(p, nn::join(pre, "key_proj"), D, c.d_mem);
            val_proj.declare(p, nn::join(pre, "val_proj"), D, c.d_mem);
            query_proj.declare(p, nn::join(pre, "query_proj"), D, c.d_mem);
            mem_out.declare(p, nn::join(pre, "mem_out"), c.d_mem, D);
        }
        ln2.declare(p, nn::join(pre, "ln2"), D, 1e-6, "weight");
        Wg.declare(p, nn::join(pre, "Wg"), D, c.d_ff);
        Wu.declare(p, nn::join(pre, "Wu"), D, c.d_ff);
        Wo.declare(p, nn::join(pre, "Wo"), c.d_ff, D);
    }
    void init(Rng& rng) {
        ln1.init(rng);
        mixer_up.init(rng);
        conv.init(rng);
        mixer_down.init(rng);
        if (memory) {
            ln_mem.init(rng);
            key_proj.init(rng);
            val_proj.init(rng);
            query_proj.init(rng);
            mem_out.init_normal_std(rng, 0.01);
        }
        ln2.init(rng);
        Wg.init(rng);
        Wu.init(rng);
        Wo.init(rng);
    }
    bool unfused = false;  // tests: the op-by-op chain the fused sublayers must match

    // The key, value and query weights as one [3 d_mem, D] matrix: declared one after the other, they lie
    // back to back in the parameter buffer (values and gradients). Empty if they do not.
    Tensor<T> kvq_weight() const {
        const Tensor<T> k = key_proj.w(), v = val_proj.w(), q = query_proj.w();
        const int64_t n = k.numel();
        if (v.data != k.data + n || q.data != v.data + n || v.grad != k.grad + n || q.grad != v.grad + n) return {};
        return Tensor<T>(k.data, k.grad, Shape{3 * k.dim(0), k.dim(1)});
    }

    // x: [B, L, D]. The mixer and FFN sublayers are Bolt's fused pre-norm residual nodes with float
    // weights (ops/prenorm_residual.hpp): they keep the up projection and the gate/up pre-activations
    // and share the residual's gradient, where the chain kept ~10 [M, D]-sized buffers and their
    // gradients per sublayer — at b64×256 that is DRAM traffic both cores wait on. The memory sublayer
    // is one node too (ops/prenorm_memory_residual.hpp), its three projections one product.
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, const CortexConfig& c) const {
        if (unfused)
            x = ops::add(tape, x, mixer_down(tape, ops::gated_causal_conv(tape, mixer_up(tape, ln1(tape, x)), conv.w())));
        else
            x = ops::prenorm_gated_conv_residual(tape, x, ln1.ps->get(ln1.scale), mixer_up.w(), conv.w(), mixer_down.w(),
                                                 ln1.eps, ops::BranchWeights::dense);
        if (memory) {
            const Tensor<T> kvq = unfused ? Tensor<T>() : kvq_weight();
            if (kvq.data) {
                x = ops::prenorm_memory_residual(tape, x, ln_mem.ps->get(ln_mem.scale), kvq, mem_out.w(), c.decay,
                                                 c.mem_scale(x.dim(1)), ln_mem.eps);
            } else {
                Tensor<T> u = ln_mem(tape, x);
                Tensor<T> r = ops::decayed_memory(tape, key_proj(tape, u), val_proj(tape, u), query_proj(tape, u), c.decay,
                                                  c.mem_scale(x.dim(1)));
                x = ops::add(tape, x, mem_out(tape, r));
            }
        }
        if (!unfused)
            return ops::prenorm_ternary_glu_residual(tape, x, ln2.ps->get(ln2.scale), Wg.w(), Wu.w(), Wo.w(), ln2.eps,
                                                     ops::BranchWeights::dense);
        Tensor<T> u = ln2(tape, x);
        return ops::add(tape, x, Wo(tape, ops::swiglu(tape, Wg(tape, u), Wu(tape, u))));
    }
};

template <class T>
class Cortex : public LanguageModel<T> {
public:
    Cortex(std::string name, CortexConfig c) : name_(std::move(name)), cfg_(c) {
        auto& p = this->params_;
        embed_.declare(p, "embed", c.vocab_size, c.d_model);
        ln_in_.declare(p, "ln_in", c.d_model, 1e-6, "weight");
        blocks_.resize(size_t(c.n_layers));
        for (int64_t i = 0; i < c.n_layers; ++i) blocks_[size_t(i)].declare(p, "blocks." + std::to_string(i), c);
        ln_out_.declare(p, "ln_out", c.d_model, 1e-6, "weight");
        p.alias("head.weight", "embed.weight");
        p.allocate();
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.seq_len; }
    const CortexConfig& cfg() const { return cfg_; }

    void init(Rng& rng) override {
        embed_.init(rng, 0.02);
        ln_in_.init(rng);
        for (auto& b : blocks_) b.init(rng);
        ln_out_.init(rng);
    }
    Tensor<T> hidden(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) {
        Tensor<T> x = ln_in_(tape, embed_(tape, ids, B * L).reshape(Shape{B, L, cfg_.d_model}));
        for (auto& b : blocks_) x = b(tape, x, cfg_);
        return ln_out_(tape, x);
    }
    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        Tensor<T> h = hidden(tape, ids, B, L);
        if (!cfg_.upstream_compat) return ops::tied_head_cross_entropy(tape, h, embed_.w(), targets);
        // Upstream v7 objective: logits[:, :-1] against targets[:, 1:] (targets are already shifted once).
        FLASHLM_CHECK(L >= 2, "cortex upstream_compat loss needs sequences of at least 2 tokens");
        const int64_t M = B * (L - 1);
        rows_.resize(size_t(M));
        shifted_.resize(size_t(M));
        for (int64_t b = 0, r = 0; b < B; ++b)
            for (int64_t t = 0; t + 1 < L; ++t, ++r) {
                rows_[size_t(r)] = int32_t(b * L + t);
                shifted_[size_t(r)] = targets[b * L + t + 1];
            }
        Tensor<T> hs = ops::embedding(tape, h.reshape(Shape{B * L, cfg_.d_model}), rows_.data(), M);  // row gather
        return ops::tied_head_cross_entropy(tape, hs, embed_.w(), shifted_.data());
    }
    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        return ops::linear(tape, hidden(tape, ids, B, L), embed_.w());
    }
    std::unique_ptr<Generator> make_generator(Quant q) const override;
    // Tests: run the blocks as the unfused op chain.
    void set_unfused(bool on) {
        for (auto& b : blocks_) b.unfused = on;
    }

private:
    std::string name_;
    CortexConfig cfg_;
    nn::Embedding<T> embed_;
    nn::RMSNorm<T> ln_in_, ln_out_;
    std::vector<CortexBlock<T>> blocks_;
    std::vector<int32_t> rows_, shifted_;  // upstream_compat loss: gathered rows and their targets
};

// Cached CORTEX generation, one token at a time, float weights (Quant has nothing to quantise). Per block
// a ring of the last k−1 conv inputs, and for CORTEX-VI the d_mem × d_mem memory
// M_t = γ·M_{t−1} + K_t Vm_tᵀ with the read R_t = s·M_t Q_t (the recurrent form of ops::decayed_memory).
// The state is never cropped: step t's logits equal a full forward over all t+1 tokens seen since reset()
// (CORTEX-III's receptive field is n_layers·(k−1)+1 = 85 tokens, so for it any window that long agrees).
// Nothing is allocated after construction.
class CortexGenerator : public Generator {
public:
    explicit CortexGenerator(const Cortex<float>& m) : c_(m.cfg()) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto W = [&](const std::string& n) { return ps.get(n).data; };
        emb_ = W("embed.weight");
        ln_in_ = W("ln_in.weight");
        ln_out_ = W("ln_out.weight");
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            Block b;
            b.ln1 = W(p + "ln1.weight"), b.ln2 = W(p + "ln2.weight");
            b.up = W(p + "mixer_up.weight"), b.down = W(p + "mixer_down.weight");
            b.Wg = W(p + "Wg.weight"), b.Wu = W(p + "Wu.weight"), b.Wo = W(p + "Wo.weight");
            b.conv = nn::CausalConvState(ps.get(p + "conv.conv.weight"));
            if (c_.memory()) {
                b.ln_mem = W(p + "ln_mem.weight");
                b.Wk = W(p + "key_proj.weight"), b.Wv = W(p + "val_proj.weight"), b.Wq = W(p + "query_proj.weight");
                b.Wmo = W(p + "mem_out.weight");
                b.M.assign(size_t(c_.d_mem * c_.d_mem), 0.0f);
            }
            blocks_.push_back(std::move(b));
        }
        const size_t D = size_t(c_.d_model), F = size_t(c_.d_ff), dm = size_t(std::max<int64_t>(c_.d_mem, 1));
        x_.resize(D), h_.resize(D), gv_.resize(2 * D), y_.resize(D), t_.resize(D);
        a_.resize(F), b_.resize(F), k_.resize(dm), v_.resize(dm), q_.resize(dm), r_.resize(dm);
        logits_.resize(size_t(c_.vocab_size));
        scale_ = c_.memory() ? float(c_.mem_scale(c_.seq_len)) : 0.0f;
    }
    void reset() override {
        for (auto& b : blocks_) {
            b.conv.reset();
            std::fill(b.M.begin(), b.M.end(), 0.0f);
        }
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        const int64_t D = c_.d_model, F = c_.d_ff, dm = c_.d_mem;
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        nn::rmsnorm_vec(emb_ + int64_t(token) * D, ln_in_, x_.data(), D, 1e-6f);
        for (auto& b : blocks_) {
            nn::rmsnorm_vec(x_.data(), b.ln1, h_.data(), D, 1e-6f);
            kernels::dense_f32_matvec(b.up, 2 * D, D, h_.data(), gv_.data());
            b.conv.step(gv_.data() + D, y_.data());
            for (int64_t c = 0; c < D; ++c) y_[size_t(c)] *= 1.0f / (1.0f + std::exp(-gv_[size_t(c)]));
            kernels::dense_f32_matvec(b.down, D, D, y_.data(), t_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            if (c_.memory()) {
                nn::rmsnorm_vec(x_.data(), b.ln_mem, h_.data(), D, 1e-6f);
                kernels::dense_f32_matvec(b.Wk, dm, D, h_.data(), k_.data());
                kernels::dense_f32_matvec(b.Wv, dm, D, h_.data(), v_.data());
                kernels::dense_f32_matvec(b.Wq, dm, D, h_.data(), q_.data());
                const float g = float(c_.decay);
                for (int64_t i = 0; i < dm; ++i) {
                    float* Mi = b.M.data() + i * dm;
                    const float ki = k_[size_t(i)];
                    float acc = 0;
                    for (int64_t j = 0; j < dm; ++j) {
                        Mi[j] = g * Mi[j] + ki * v_[size_t(j)];
                        acc += Mi[j] * q_[size_t(j)];
                    }
                    r_[size_t(i)] = scale_ * acc;
                }
                kernels::dense_f32_matvec(b.Wmo, D, dm, r_.data(), t_.data());
                for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
            }
            nn::rmsnorm_vec(x_.data(), b.ln2, h_.data(), D, 1e-6f);
            kernels::dense_f32_matvec(b.Wg, F, D, h_.data(), a_.data());
            kernels::dense_f32_matvec(b.Wu, F, D, h_.data(), b_.data());
            for (int64_t k = 0; k < F; ++k) {
                const float z = a_[size_t(k)];
                a_[size_t(k)] = z / (1.0f + std::exp(-z)) * b_[size_t(k)];
            }
            kernels::dense_f32_matvec(b.Wo, D, F, a_.data(), t_.data());
            for (int64_t c = 0; c < D; ++c) x_[size_t(c)] += t_[size_t(c)];
        }
        nn::rmsnorm_vec(x_.data(), ln_out_, h_.data(), D, 1e-6f);
        kernels::dense_f32_matvec(emb_, c_.vocab_size, D, h_.data(), logits_.data());
        return logits_.data();
    }

private:
    struct Block {
        const float *ln1 = nullptr, *ln2 = nullptr, *ln_mem = nullptr;
        const float *up = nullptr, *down = nullptr, *Wg = nullptr, *Wu = nullptr, *Wo = nullptr;
        const float *Wk = nullptr, *Wv = nullptr, *Wq = nullptr, *Wmo = nullptr;
        nn::CausalConvState conv;
        std::vector<float> M;  // d_mem × d_mem, row-major: M[i][j] = Σ γ^(t−s) K_s[i] Vm_s[j]
    };
    CortexConfig c_;
    const float *emb_ = nullptr, *ln_in_ = nullptr, *ln_out_ = nullptr;
    std::vector<Block> blocks_;
    std::vector<float> x_, h_, gv_, y_, t_, a_, b_, k_, v_, q_, r_, logits_;
    float scale_ = 0;
};

template <class T>
std::unique_ptr<Generator> Cortex<T>::make_generator(Quant) const {
    // Upstream's memory scale depends on the window length, which a streaming state cannot know: that
    // mode generates by recomputing the window (the upstream loop).
    if constexpr (std::is_same_v<T, float>) {
        if (cfg_.upstream_compat && cfg_.memory()) return nullptr;
        return std::make_unique<CortexGenerator>(*this);
    } else {
        return nullptr;
    }
}

// `flashlm import`: the config keys a CORTEX state dict's tensor shapes determine (d_mem from the memory
// projections, seq_len from upstream's decay_mask buffer when the file has it; decay and upstream_compat
// are not among them).
inline nlohmann::json infer_cortex_config(const io::TensorShapes& s) {
    nlohmann::json j = nlohmann::json::object();
    if (auto v = io::dim_of(s, "embed.weight", 0)) j["vocab_size"] = *v;
    if (auto d = io::dim_of(s, "embed.weight", 1)) j["d_model"] = *d;
    if (int64_t n = io::count_indexed(s, "blocks.")) j["n_layers"] = n;
    if (auto k = io::dim_of(s, "blocks.0.conv.conv.weight", 2)) j["kernel_size"] = *k;
    if (auto f = io::dim_of(s, "blocks.0.Wg.weight", 0)) j["d_ff"] = *f;
    if (auto m = io::dim_of(s, "blocks.0.key_proj.weight", 0)) j["d_mem"] = *m;
    if (auto t = io::dim_of(s, "blocks.0.decay_mask", 0)) j["seq_len"] = *t;
    return j;
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_CORTEX for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_CORTEX
extern template class Cortex<float>;
#endif

}  // namespace flashlm::examples
