#pragma once
// FlashLM v6.1 "SUPERNOVA II", PyTorch version (VARIANTS.md §8.3, upstream train_v61.py@a5182d3).
// CLI name `supernova2`.
//   x = token_emb[ids] + pos_emb[t]            (learned absolute positions, max_seq_len rows)
//   n_layers × block:
//     x += temporal(norm1(x))                                  SimpleGatedMix
//     h  = norm2(x);  x += reasoning(h) + state_gate(h) + slot_mem(h)     (parallel, one residual)
//     x += ffn(norm3(x))                                       top-k mixture of ternary GLU experts
//   logits = lm_head(out_norm(x))              (untied float head)
// temporal(u):   m = mix1(shift₁ u) + mix2(shift₂ u);  g = σ(gate([u, m]));  out(g ⊙ m + (1 − g) ⊙ u)
// reasoning(h):  w = softmax(router(h)) (float, with bias);  out_proj(Σ_i w_i · projections.i(h))
// state_gate(h): gate(norm(σ(planner h) ⊙ tanh(executor h)))
// slot_mem(h):   out_proj(softmax(query_proj(h) slotsᵀ / √D) slots)
// ffn(u):        p = softmax(router u) (float, no bias); the top-k experts by p, renormalised; each expert
//                w_down(SiLU(w_gate u) ⊙ w_up u). Only the selected experts run on a token (ops/moe.hpp).
// Every projection except the routers and the head is BitLinear-Q3 (median threshold, ±1 unscaled, clipped
// STE; ops/bitlinear_median.hpp). RMSNorms eps 1e-6 with gain `scale`. Init: every weight N(0, 0.02),
// biases 0, norms 1, slots N(0, 0.02).
// Training objective: mean CE + Σ_layers 0.01·E·Σ_e P_e², P_e = batch mean of p_e (upstream's aux loss,
// f_e and P_e both soft). Evaluation (no gradient) reports the CE alone; upstream's validation loss
// includes the aux term (≥ 0.01 per layer).
// Parameter names are upstream's state-dict keys. config "dense_experts": true runs every expert on every
// token (same outputs, E/k times the expert work) for speed comparisons.
#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <flashlm/flashlm.hpp>
#include <flashlm/nn/bitlinear_median.hpp>
#include <flashlm/nn/slot_memory.hpp>
#include <flashlm/ops/concat.hpp>
#include <flashlm/ops/lerp.hpp>
#include <flashlm/ops/linear_bias.hpp>
#include <flashlm/ops/moe.hpp>
#include <flashlm/ops/moe_expert.hpp>
#include <flashlm/ops/parallel_branch_residual.hpp>
#include <flashlm/ops/recompute.hpp>
#include <flashlm/ops/residual_sum.hpp>
#include <flashlm/ops/scale.hpp>
#include <flashlm/ops/softmax.hpp>
#include <flashlm/ops/tanh.hpp>
#include <flashlm/ops/temporal_mix_residual.hpp>
#include <flashlm/ops/time_shift.hpp>

namespace flashlm::examples {

struct Supernova2Config {
    int64_t vocab_size = 4096, d_model = 384, n_layers = 8, d_ffn = 768, d_reason = 128, n_scales = 4, n_slots = 16,
            max_seq_len = 256, n_experts = 4, top_k_experts = 2;
    double lb_coeff = 0.01;
    bool dense_experts = false;

    nlohmann::json to_json() const {
        return {{"vocab_size", vocab_size},   {"d_model", d_model},   {"n_layers", n_layers},
                {"d_ffn", d_ffn},             {"d_reason", d_reason}, {"n_scales", n_scales},
                {"n_slots", n_slots},         {"max_seq_len", max_seq_len}, {"use_moe", true},
                {"n_experts", n_experts},     {"top_k_experts", top_k_experts}, {"lb_coeff", lb_coeff},
                {"dense_experts", dense_experts}};
    }
    void validate() const {
        if (vocab_size < 2 || d_model < 1 || n_layers < 1 || d_ffn < 1 || d_reason < 1 || n_scales < 1 || n_slots < 1 ||
            max_seq_len < 1)
            throw std::invalid_argument("supernova2: config values must be positive");
        if (n_experts < 1 || n_experts > 64 || top_k_experts < 1 || top_k_experts > n_experts)
            throw std::invalid_argument("supernova2: need 1 <= top_k_experts <= n_experts <= 64");
        if (!(lb_coeff >= 0)) throw std::invalid_argument("supernova2: lb_coeff must be >= 0");
    }
    static Supernova2Config from_json(const nlohmann::json& j, Supernova2Config c) {
        try {
            if (!j.value("use_moe", true))
                throw std::invalid_argument("supernova2: only the MoE configuration (use_moe true) is implemented");
            c.vocab_size = j.value("vocab_size", c.vocab_size);
            c.d_model = j.value("d_model", c.d_model);
            c.n_layers = j.value("n_layers", c.n_layers);
            c.d_ffn = j.value("d_ffn", c.d_ffn);
            c.d_reason = j.value("d_reason", c.d_reason);
            c.n_scales = j.value("n_scales", c.n_scales);
            c.n_slots = j.value("n_slots", c.n_slots);
            c.max_seq_len = j.value("max_seq_len", c.max_seq_len);
            c.n_experts = j.value("n_experts", c.n_experts);
            c.top_k_experts = j.value("top_k_experts", c.top_k_experts);
            c.lb_coeff = j.value("lb_coeff", c.lb_coeff);
            c.dense_experts = j.value("dense_experts", c.dense_experts);
        } catch (const nlohmann::json::exception& e) {
            throw std::invalid_argument(std::string("supernova2: config value of the wrong type: ") + e.what());
        }
        c.validate();
        return c;
    }
};

// v6.1 recipe (VARIANTS.md §8.3): AdamW 5e-4, betas (0.9, 0.95), wd 0.01 (not on biases, norms, slots,
// embeddings, routers: the model declares those without decay), 300 warm-up steps, cosine to 1e-5,
// clip 1.0, batch 64, seq 256, vocab 4096.
inline Recipe supernova2_recipe() {
    Recipe rc;
    rc.lr = 5e-4, rc.min_lr = 1e-5, rc.weight_decay = 0.01, rc.beta1 = 0.9, rc.beta2 = 0.95, rc.clip = 1.0;
    rc.warmup = 300, rc.batch = 64, rc.accum = 1, rc.seq = 256, rc.vocab = 4096;
    return rc;
}

// Upstream's no-decay rule: a parameter whose name contains bias, norm, scale, alpha, slots, emb, pos or
// router gets weight decay 0.
inline bool supernova2_decays(const std::string& name) {
    for (const char* s : {"bias", "norm", "scale", "alpha", "slots", "emb", "pos", "router"})
        if (name.find(s) != std::string::npos) return false;
    return true;
}

template <class T>
struct Supernova2Block {
    using BL = nn::BitLinearMedian<T>;
    nn::RMSNorm<T> norm1, norm2, norm3, sg_norm;
    BL mix1, mix2, mgate, mout;                 // temporal
    std::vector<BL> proj;                       // reasoning.projections
    BL r_out;                                   // reasoning.out_proj
    BL planner, executor, sg_gate;              // state_gate
    nn::SlotMemory<T> slots;
    BL q_proj, s_out;                           // slot_mem
    std::vector<std::array<BL, 3>> experts;     // ffn.experts.e: w_gate, w_up, w_down
    ParamStore<T>* ps = nullptr;
    std::size_t r_router_w = 0, r_router_b = 0, f_router = 0;
    bool unfused = false;  // tests and benches: the temporal mixer and the parallel sub-layer as op-by-op chains

    void declare(ParamStore<T>& p, const std::string& pre, const Supernova2Config& c) {
        ps = &p;
        const int64_t D = c.d_model, R = c.d_reason;
        auto J = [&](const std::string& s) { return nn::join(pre, s); };
        norm1.declare(p, J("norm1"), D, 1e-6, "scale", false);
        norm2.declare(p, J("norm2"), D, 1e-6, "scale", false);
        norm3.declare(p, J("norm3"), D, 1e-6, "scale", false);
        mix1.declare(p, J("temporal.mix1"), D, D);
        mix2.declare(p, J("temporal.mix2"), D, D);
        mgate.declare(p, J("temporal.gate"), 2 * D, D);
        mout.declare(p, J("temporal.out"), D, D);
        proj.resize(size_t(c.n_scales));
        for (int64_t i = 0; i < c.n_scales; ++i) proj[size_t(i)].declare(p, J("reasoning.projections." + std::to_string(i)), D, R);
        r_router_w = p.add(J("reasoning.router.weight"), Shape{c.n_scales, D}, false);
        r_router_b = p.add(J("reasoning.router.bias"), Shape{c.n_scales}, false);
        r_out.declare(p, J("reasoning.out_proj"), R, D);
        planner.declare(p, J("state_gate.planner"), D, R);
        executor.declare(p, J("state_gate.executor"), D, R);
        sg_gate.declare(p, J("state_gate.gate"), R, D);
        sg_norm.declare(p, J("state_gate.norm"), R, 1e-6, "scale", false);
        slots.declare(p, J("slot_mem"), c.n_slots, D, false);
        q_proj.declare(p, J("slot_mem.query_proj"), D, D);
        s_out.declare(p, J("slot_mem.out_proj"), D, D);
        f_router = p.add(J("ffn.router.weight"), Shape{c.n_experts, D}, false);
        experts.resize(size_t(c.n_experts));
        for (int64_t e = 0; e < c.n_experts; ++e) {
            const std::string q = J("ffn.experts." + std::to_string(e));
            experts[size_t(e)][0].declare(p, q + ".w_gate", D, c.d_ffn);
            experts[size_t(e)][1].declare(p, q + ".w_up", D, c.d_ffn);
            experts[size_t(e)][2].declare(p, q + ".w_down", c.d_ffn, D);
        }
    }
    void init(Rng& rng) {
        for (auto* n : {&norm1, &norm2, &norm3, &sg_norm}) n->init(rng);
        for (auto* l : {&mix1, &mix2, &mgate, &mout}) l->init(rng);
        for (auto& l : proj) l.init(rng);
        nn::init_normal(ps->get(r_router_w), rng, 0.02);
        nn::init_constant(ps->get(r_router_b), T(0));
        r_out.init(rng);
        for (auto* l : {&planner, &executor, &sg_gate}) l->init(rng);
        slots.init(rng, 0.02);
        q_proj.init(rng), s_out.init(rng);
        nn::init_normal(ps->get(f_router), rng, 0.02);
        for (auto& e : experts)
            for (auto& l : e) l.init(rng);
    }

    // x: [B, L, D]. Adds the layer's aux loss term to *aux (a scalar tensor, or undefined) when wanted.
    // work: ops::expert_glu_work_size(B·L, D, d_ffn) elements shared by the experts of every layer.
    Tensor<T> operator()(Tape<T>& tape, Tensor<T> x, ops::Routing& route, const Supernova2Config& c, Tensor<T>* aux,
                         T* work) const {
        return moe(tape, mix(tape, x), route, c, aux, work);
    }
    // The temporal mixer and the parallel reasoning / state-gate / slot-memory branch: a function of x and
    // the parameters alone, so --recompute can rerun it in the backward (ops/recompute.hpp).
    Tensor<T> mix(Tape<T>& tape, Tensor<T> x) const {
        if (!unfused) {  // two nodes (ops/temporal_mix_residual.hpp, ops/parallel_branch_residual.hpp)
            x = ops::temporal_mix_residual(tape, x, ps->get(norm1.scale), mix1.w(), mix2.w(), mgate.w(), mout.w(), norm1.eps);
            return ops::parallel_branch_residual(tape, x, branch());
        }
        // temporal
        Tensor<T> u = norm1(tape, x);
        Tensor<T> m = ops::add(tape, mix1(tape, ops::time_shift(tape, u, 1)), mix2(tape, ops::time_shift(tape, u, 2)));
        Tensor<T> g = ops::sigmoid(tape, mgate(tape, ops::concat_cols(tape, u, m)));
        x = ops::add(tape, x, mout(tape, ops::lerp(tape, u, m, g)));
        // reasoning + state gate + slot memory, one residual
        Tensor<T> h = norm2(tape, x);
        Tensor<T> w = ops::softmax(tape, ops::linear_bias(tape, h, ps->get(r_router_w), ps->get(r_router_b)));
        Tensor<T> mixed = ops::mul_col(tape, proj[0](tape, h), w, 0);
        for (size_t i = 1; i < proj.size(); ++i) mixed = ops::add(tape, mixed, ops::mul_col(tape, proj[i](tape, h), w, int64_t(i)));
        Tensor<T> br = r_out(tape, mixed);
        Tensor<T> sg = sg_gate(tape, sg_norm(tape, ops::mul(tape, ops::sigmoid(tape, planner(tape, h)),
                                                                 ops::tanh(tape, executor(tape, h)))));
        Tensor<T> sm = s_out(tape, slots(tape, q_proj(tape, h)));
        return ops::residual_add3(tape, x, br, sg, sm);  // x + ((br + sg) + sm) as one node
    }
    // The parallel sub-layer's parameters for the fused node.
    ops::ParallelBranch<T> branch() const {
        ops::ParallelBranch<T> b;
        FLASHLM_CHECK(proj.size() <= size_t(ops::ParallelBranch<T>::k_max_scales), "supernova2: at most 16 reasoning scales");
        b.norm = ps->get(norm2.scale), b.eps = norm2.eps;
        b.router_w = ps->get(r_router_w), b.router_b = ps->get(r_router_b);
        for (size_t i = 0; i < proj.size(); ++i) b.proj[i] = proj[i].w();
        b.scales = int64_t(proj.size());
        b.out_proj = r_out.w();
        b.planner = planner.w(), b.executor = executor.w(), b.sg_gate = sg_gate.w();
        b.sg_norm = ps->get(sg_norm.scale), b.sg_eps = sg_norm.eps;
        b.slots = slots.s(), b.slot_scale = slots.scale;
        b.query = q_proj.w(), b.slot_out = s_out.w();
        return b;
    }
    // x + the top-k mixture of experts of norm3(x); the routing (and, with aux, the balance loss) as side
    // outputs, so this part stays on the main tape under --recompute.
    Tensor<T> moe(Tape<T>& tape, Tensor<T> x, ops::Routing& route, const Supernova2Config& c, Tensor<T>* aux, T* work) const {
        const int64_t B = x.dim(0), L = x.dim(1), D = c.d_model, M = B * L;
        Tensor<T> z = norm3(tape, x).reshape(Shape{M, D});
        Tensor<T> logits = ops::linear(tape, z, ps->get(f_router));
        route.k = c.top_k_experts;
        Tensor<T> gates = ops::route_topk(tape, logits, route);
        ops::build_expert_lists(route, c.dense_experts);
        if (aux) {
            Tensor<T> a = ops::balance_loss(tape, logits, c.lb_coeff);
            *aux = aux->defined() ? ops::add(tape, *aux, a) : a;
        }
        Tensor<T> acc = ops::moe_accumulator(tape, M, D, tape.recording({z}));
        for (int64_t e = 0; e < c.n_experts; ++e) {
            const int64_t n = route.served(e);
            if (n == 0) continue;
            const auto& ex = experts[size_t(e)];
            // the rows expert e serves, through w_down(SiLU(w_gate x) ⊙ w_up x) as one node (ops/moe_expert.hpp)
            Tensor<T> ye = ops::expert_glu_median(tape, z, route.tokens_of(e), n, ex[0].w(), ex[1].w(), ex[2].w(), work);
            acc = ops::scatter_rows_weighted(tape, acc, ye, gates, route.assign_of(e));
        }
        return ops::add(tape, x, acc.reshape(Shape{B, L, D}));
    }
};

template <class T>
class Supernova2 : public LanguageModel<T> {
public:
    Supernova2(std::string name, Supernova2Config c) : name_(std::move(name)), cfg_(std::move(c)) {
        cfg_.validate();
        auto& p = this->params_;
        tok_ = p.add("token_emb.weight", Shape{cfg_.vocab_size, cfg_.d_model}, false);
        pos_ = p.add("pos_emb.weight", Shape{cfg_.max_seq_len, cfg_.d_model}, false);
        blocks_.resize(size_t(cfg_.n_layers));
        for (int64_t i = 0; i < cfg_.n_layers; ++i) blocks_[size_t(i)].declare(p, "layers." + std::to_string(i), cfg_);
        out_norm_.declare(p, "out_norm", cfg_.d_model, 1e-6, "scale", false);
        head_ = p.add("lm_head.weight", Shape{cfg_.vocab_size, cfg_.d_model}, true);
        p.allocate();
        routes_.resize(blocks_.size());
        load_.assign(size_t(cfg_.n_experts), 0);
    }
    std::string name() const override { return name_; }
    nlohmann::json config() const override { return cfg_.to_json(); }
    int64_t vocab_size() const override { return cfg_.vocab_size; }
    int64_t max_seq_len() const override { return cfg_.max_seq_len; }
    const Supernova2Config& cfg() const { return cfg_; }
    Supernova2Config& mutable_cfg() { return cfg_; }  // benches flip dense_experts

    void init(Rng& rng) override {
        auto& p = this->params_;
        nn::init_normal(p.get(tok_), rng, 0.02);
        nn::init_normal(p.get(pos_), rng, 0.02);
        for (auto& b : blocks_) b.init(rng);
        out_norm_.init(rng);
        nn::init_normal(p.get(head_), rng, 0.02);
    }

    // Residual stream after the blocks, [B, L, D]; aux (if given) receives the summed balance loss.
    Tensor<T> forward(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L, Tensor<T>* aux) {
        FLASHLM_CHECK(L >= 1 && L <= cfg_.max_seq_len,
                      "supernova2: sequence length " + std::to_string(L) + " outside 1.." + std::to_string(cfg_.max_seq_len) +
                          " (max_seq_len, the position table)");
        auto& p = this->params_;
        const int64_t M = B * L, D = cfg_.d_model;
        pos_ids_.resize(size_t(M));
        for (int64_t r = 0; r < M; ++r) pos_ids_[size_t(r)] = int32_t(r % L);
        Tensor<T> x = ops::add(tape, ops::embedding(tape, p.get(tok_), ids, M), ops::embedding(tape, p.get(pos_), pos_ids_.data(), M))
                          .reshape(Shape{B, L, D});
        T* work = tape.scratch(ops::expert_glu_work_size(M, D, cfg_.d_ffn));
        for (size_t i = 0; i < blocks_.size(); ++i) {
            x = segments_.empty() ? blocks_[i](tape, x, routes_[i], cfg_, aux, work)
                                  : blocks_[i].moe(tape, ops::recompute(tape, segments_[i], x), routes_[i], cfg_, aux, work);
            const ops::Routing& r = routes_[i];
            if (tape.grad_enabled())  // training steps only: the progress line's expert load
                for (int64_t a = 0; a < r.M * r.k; ++a) ++load_[size_t(r.topk[size_t(a)])];
        }
        return x;
    }

    Tensor<T> loss(Tape<T>& tape, const int32_t* ids, const int32_t* targets, int64_t B, int64_t L) override {
        const bool train = tape.grad_enabled();
        Tensor<T> aux;
        Tensor<T> x = forward(tape, ids, B, L, train ? &aux : nullptr);
        Tensor<T> logits = ops::linear(tape, out_norm_(tape, x).reshape(Shape{B * L, cfg_.d_model}), this->params_.get(head_));
        Tensor<T> ce = ops::cross_entropy(tape, logits, targets);
        return train ? ops::add(tape, ce, aux) : ce;
    }

    Tensor<T> logits(Tape<T>& tape, const int32_t* ids, int64_t B, int64_t L) override {
        Tensor<T> x = forward(tape, ids, B, L, nullptr);
        return ops::linear(tape, out_norm_(tape, x), this->params_.get(head_));
    }

    // Expert load since the last call (share of token→expert assignments over all layers), for the
    // training progress line.
    std::string train_stats() override {
        int64_t total = 0;
        for (int64_t v : load_) total += v;
        if (total == 0) return "";
        std::string s = "experts ";
        for (size_t e = 0; e < load_.size(); ++e)
            s += fmt::format("{}{:.0f}", e ? "/" : "", 100.0 * double(load_[e]) / double(total));
        std::fill(load_.begin(), load_.end(), 0);
        return s + "%";
    }
    const std::vector<int64_t>& expert_load() const { return load_; }

    std::unique_ptr<Generator> make_generator(Quant q) const override;
    // Tests and benches: run the temporal mixers and parallel sub-layers as op-by-op chains.
    void set_unfused(bool on) {
        for (auto& b : blocks_) b.unfused = on;
    }
    // Each block's temporal + reasoning part recomputed in the backward; the MoE part (its routing and aux
    // loss are outputs besides x) stays recorded. Same numbers; at b16×256 the arena holds
    // 1.29 GB instead of 1.76 (the mix parts being two fused nodes; as op chains it kept ~1/3 as much).
    bool set_recompute(bool on) override {
        segments_.clear();
        if (on)
            for (size_t i = 0; i < blocks_.size(); ++i)
                segments_.push_back({[this, i](Tape<T>& t, const Tensor<T>& x) { return blocks_[i].mix(t, x); }, &side_});
        return true;
    }

private:
    std::string name_;
    Supernova2Config cfg_;
    std::size_t tok_ = 0, pos_ = 0, head_ = 0;
    std::vector<Supernova2Block<T>> blocks_;
    nn::RMSNorm<T> out_norm_;
    std::vector<ops::Routing> routes_;  // per layer, alive until the backward
    std::vector<int32_t> pos_ids_;
    std::vector<int64_t> load_;
    std::vector<ops::RecomputeSegment<T>> segments_;  // non-empty: mix parts run through ops::recompute
    Tape<T> side_;
};

// Cached SUPERNOVA II generation, one token at a time. The only context a position reads is the previous
// two normalised inputs of each temporal mixer (kept per layer) and its absolute position. Past
// max_seq_len the recompute loop crops to the last max_seq_len tokens, so positions no longer advance:
// the last position of a window depends only on its last 2·n_layers + 1 tokens (each layer reaches two
// steps back), so the generator replays those (kept in a ring) at positions max_seq_len − 2·n_layers − 1 …
// max_seq_len − 1 from cleared mixer states — exactly the cropped window's logits, at 2·n_layers + 1 steps
// per token. Nothing is allocated after construction.
class Supernova2Generator : public Generator {
public:
    Supernova2Generator(const Supernova2<float>& m, Quant q) : c_(m.cfg()), q_(q) {
        auto& ps = const_cast<ParamStore<float>&>(m.params());
        auto W = [&](const std::string& n) { return ps.get(n).data; };
        auto F = [&](const std::string& n) { return nn::FrozenMedianLinear(ps.get(n + ".weight")); };
        tok_ = W("token_emb.weight"), pos_ = W("pos_emb.weight"), out_norm_ = W("out_norm.scale"), head_ = W("lm_head.weight");
        const int64_t D = c_.d_model, R = c_.d_reason;
        for (int64_t i = 0; i < c_.n_layers; ++i) {
            const std::string p = "layers." + std::to_string(i) + ".";
            Layer l;
            l.n1 = W(p + "norm1.scale"), l.n2 = W(p + "norm2.scale"), l.n3 = W(p + "norm3.scale");
            l.sgn = W(p + "state_gate.norm.scale");
            l.mix1 = F(p + "temporal.mix1"), l.mix2 = F(p + "temporal.mix2"), l.gate = F(p + "temporal.gate");
            l.out = F(p + "temporal.out");
            for (int64_t s = 0; s < c_.n_scales; ++s) l.proj.push_back(F(p + "reasoning.projections." + std::to_string(s)));
            l.rw = W(p + "reasoning.router.weight"), l.rb = W(p + "reasoning.router.bias");
            l.rout = F(p + "reasoning.out_proj");
            l.planner = F(p + "state_gate.planner"), l.executor = F(p + "state_gate.executor");
            l.sgate = F(p + "state_gate.gate");
            l.slots = W(p + "slot_mem.slots");
            l.qp = F(p + "slot_mem.query_proj"), l.sout = F(p + "slot_mem.out_proj");
            l.router = W(p + "ffn.router.weight");
            for (int64_t e = 0; e < c_.n_experts; ++e) {
                const std::string q2 = p + "ffn.experts." + std::to_string(e);
                l.experts.push_back({F(q2 + ".w_gate"), F(q2 + ".w_up"), F(q2 + ".w_down")});
            }
            l.prev.assign(size_t(2 * D), 0.0f);
            layers_.push_back(std::move(l));
        }
        const size_t Dz = size_t(D), Rz = size_t(R), Fz = size_t(c_.d_ffn);
        x_.resize(Dz), u_.resize(2 * Dz), m_.resize(Dz), t_.resize(Dz), g_.resize(Dz), acc_.resize(Dz);
        r_.resize(Rz), rs_.resize(Rz), a_.resize(Rz), b_.resize(Rz);
        f1_.resize(Fz), f2_.resize(Fz);
        w_.resize(size_t(std::max(c_.n_scales, c_.n_experts))), sa_.resize(size_t(c_.n_slots));
        idx_.resize(size_t(c_.top_k_experts)), gk_.resize(size_t(c_.top_k_experts));
        replay_ = std::min(c_.max_seq_len, 2 * c_.n_layers + 1);
        ring_.assign(size_t(replay_), 0);
        logits_.resize(size_t(c_.vocab_size));
        reset();
    }
    void reset() override {
        clear_states();
        pos_t_ = 0;
        ring_n_ = 0;
    }
    int64_t vocab_size() const override { return c_.vocab_size; }
    const float* step(int32_t token) override {
        if (token < 0 || token >= c_.vocab_size) throw std::out_of_range("token id outside the vocabulary");
        ring_[size_t(ring_n_ % replay_)] = token;
        ++ring_n_;
        if (pos_t_ < c_.max_seq_len) {
            run(token, pos_t_++, true);
            return logits_.data();
        }
        clear_states();
        const int64_t p0 = c_.max_seq_len - replay_;
        for (int64_t j = 0; j < replay_; ++j)
            run(ring_[size_t((ring_n_ - replay_ + j) % replay_)], p0 + j, j + 1 == replay_);
        return logits_.data();
    }

private:
    struct Layer {
        const float *n1 = nullptr, *n2 = nullptr, *n3 = nullptr, *sgn = nullptr, *rw = nullptr, *rb = nullptr,
                    *slots = nullptr, *router = nullptr;
        nn::FrozenMedianLinear mix1, mix2, gate, out, rout, planner, executor, sgate, qp, sout;
        std::vector<nn::FrozenMedianLinear> proj;
        std::vector<std::array<nn::FrozenMedianLinear, 3>> experts;
        std::vector<float> prev;  // normalised temporal inputs at t−1 (first D) and t−2 (next D)
    };
    void clear_states() {
        for (auto& l : layers_) std::fill(l.prev.begin(), l.prev.end(), 0.0f);
    }
    void add(float* y, const float* v, int64_t n) {
        for (int64_t i = 0; i < n; ++i) y[i] += v[i];
    }
    // One position through every layer; the head only when logits are wanted.
    void run(int32_t token, int64_t pos, bool want_logits) {
        const int64_t D = c_.d_model, R = c_.d_reason, E = c_.n_experts, S = c_.n_scales, K = c_.top_k_experts;
        float* x = x_.data();
        const float* te = tok_ + int64_t(token) * D;
        const float* pe = pos_ + pos * D;
        for (int64_t d = 0; d < D; ++d) x[d] = te[d] + pe[d];
        for (auto& l : layers_) {
            // temporal: u at t, prev[0..D) = u at t−1, prev[D..2D) = u at t−2 (zero before the start)
            float* u = u_.data();  // [u, m] side by side: the gate reads the concatenation
            nn::rmsnorm_vec(x, l.n1, u, D, 1e-6f);
            l.mix1(l.prev.data(), m_.data(), q_);
            l.mix2(l.prev.data() + D, t_.data(), q_);
            add(m_.data(), t_.data(), D);
            std::copy(m_.begin(), m_.end(), u_.begin() + D);
            l.gate(u, g_.data(), q_);
            for (int64_t d = 0; d < D; ++d) {
                const float gd = 1.0f / (1.0f + std::exp(-g_[size_t(d)]));
                t_[size_t(d)] = u[d] + gd * (m_[size_t(d)] - u[d]);
            }
            std::copy(l.prev.begin(), l.prev.begin() + D, l.prev.begin() + D);
            std::copy(u, u + D, l.prev.begin());
            l.out(t_.data(), m_.data(), q_);
            add(x, m_.data(), D);
            // reasoning + state gate + slot memory
            float* h = u;
            nn::rmsnorm_vec(x, l.n2, h, D, 1e-6f);
            kernels::dense_f32_matvec(l.rw, S, D, h, w_.data());
            for (int64_t s = 0; s < S; ++s) w_[size_t(s)] += l.rb[s];
            ops::softmax_row(w_.data(), w_.data(), S);
            std::fill(rs_.begin(), rs_.end(), 0.0f);
            for (int64_t s = 0; s < S; ++s) {
                l.proj[size_t(s)](h, r_.data(), q_);
                for (int64_t i = 0; i < R; ++i) rs_[size_t(i)] += w_[size_t(s)] * r_[size_t(i)];
            }
            l.rout(rs_.data(), acc_.data(), q_);
            l.planner(h, a_.data(), q_);
            l.executor(h, b_.data(), q_);
            for (int64_t i = 0; i < R; ++i) a_[size_t(i)] = std::tanh(b_[size_t(i)]) / (1.0f + std::exp(-a_[size_t(i)]));
            nn::rmsnorm_vec(a_.data(), l.sgn, r_.data(), R, 1e-6f);
            l.sgate(r_.data(), m_.data(), q_);
            add(acc_.data(), m_.data(), D);
            l.qp(h, t_.data(), q_);
            nn::slot_memory_read(t_.data(), l.slots, c_.n_slots, D, 1.0f / std::sqrt(float(D)), sa_.data(), g_.data());
            l.sout(g_.data(), m_.data(), q_);
            add(acc_.data(), m_.data(), D);
            add(x, acc_.data(), D);
            // mixture of experts: the top-k experts only
            nn::rmsnorm_vec(x, l.n3, h, D, 1e-6f);
            kernels::dense_f32_matvec(l.router, E, D, h, w_.data());
            ops::topk_indices(w_.data(), E, K, idx_.data());
            for (int64_t j = 0; j < K; ++j) gk_[size_t(j)] = w_[size_t(idx_[size_t(j)])];
            ops::softmax_row(gk_.data(), gk_.data(), K);
            for (int64_t j = 0; j < K; ++j) {
                auto& ex = l.experts[size_t(idx_[size_t(j)])];
                ex[0](h, f1_.data(), q_);
                ex[1](h, f2_.data(), q_);
                nn::silu_mul(f1_.data(), f2_.data(), c_.d_ffn);
                ex[2](f1_.data(), m_.data(), q_);
                for (int64_t d = 0; d < D; ++d) x[d] += gk_[size_t(j)] * m_[size_t(d)];
            }
        }
        if (!want_logits) return;
        nn::rmsnorm_vec(x, out_norm_, u_.data(), D, 1e-6f);
        kernels::dense_f32_matvec(head_, c_.vocab_size, D, u_.data(), logits_.data());
    }

    Supernova2Config c_;
    Quant q_;
    const float *tok_ = nullptr, *pos_ = nullptr, *out_norm_ = nullptr, *head_ = nullptr;
    std::vector<Layer> layers_;
    std::vector<float> x_, u_, m_, t_, g_, acc_, r_, rs_, a_, b_, f1_, f2_, w_, sa_, gk_, logits_;
    std::vector<int32_t> idx_, ring_;
    int64_t pos_t_ = 0, ring_n_ = 0, replay_ = 1;
};

template <class T>
std::unique_ptr<Generator> Supernova2<T>::make_generator(Quant q) const {
    if constexpr (std::is_same_v<T, float>) {
        return std::make_unique<Supernova2Generator>(*this, q);
    } else {
        return nullptr;
    }
}

// Binaries that link flashlm_models get the float model from examples/registry.cpp instead of compiling it
// again (the library's CMake target defines FLASHLM_EXTERN_SUPERNOVA2 for them when FLASHLM_MODELS lists it).
#ifdef FLASHLM_EXTERN_SUPERNOVA2
extern template class Supernova2<float>;
#endif

}  // namespace flashlm::examples
