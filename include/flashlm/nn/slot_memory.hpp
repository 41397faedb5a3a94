#pragma once
// Learned slot memory read shared by FlashLM v6 (SUPERNOVA) and v6.1 (SUPERNOVA II): slots S [n, d] and
//   a = softmax(q Sᵀ · scale),  out = a S,   scale = 1/√d unless given.
// Only the read: the projections around it (v6: q = B_q r, r + B_mix([r, out]); v6.1: q = B_q x,
// B_o(out)) differ between the variants and stay in the variant.
#include <cmath>
#include <string>

#include "flashlm/nn/module.hpp"
#include "flashlm/ops/slot_attention.hpp"

namespace flashlm::nn {

template <class T>
struct SlotMemory {
    ParamStore<T>* ps = nullptr;
    std::size_t slots = 0;
    int64_t n_slots = 0, dim = 0;
    double scale = 0;

    // Registers `<prefix>.<name>` [n_slots, dim]; decay = false keeps it out of weight decay (v6.1's
    // "slots" group). scale ≤ 0 means 1/√dim (both upstream scripts).
    void declare(ParamStore<T>& p, const std::string& prefix, int64_t n, int64_t d, bool decay = true,
                 double s = 0, const std::string& name = "slots") {
        ps = &p, n_slots = n, dim = d;
        scale = s > 0 ? s : 1.0 / std::sqrt(double(d));
        slots = p.add(join(prefix, name), Shape{n, d}, decay);
    }
    // Upstream: torch.randn(n, d) · std (v6 0.01, v6.1 0.02).
    void init(Rng& rng, double std) { init_normal(ps->get(slots), rng, std); }
    Tensor<T> s() const { return ps->get(slots); }
    // q: [..., dim] -> [..., dim]
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& q) const { return ops::slot_attention(tape, q, s(), scale); }
};

// One query row for generation: out = softmax(scale · S q) S; a is scratch of n_slots floats.
inline void slot_memory_read(const float* q, const float* S, int64_t n_slots, int64_t dim, float scale, float* a,
                             float* out) {
    ops::slot_attention_row(q, S, n_slots, dim, scale, a, out);
}

}  // namespace flashlm::nn
