#pragma once
// Grouped, dilated causal Conv1d (no bias), weight [C, C/groups, K] as in PyTorch, and its one-token
// inference form: a ring of the last (K-1)·dilation+1 inputs.
#include <algorithm>
#include <vector>

#include "flashlm/nn/module.hpp"
#include "flashlm/ops/conv1d.hpp"

namespace flashlm::nn {

template <class T>
struct GroupedCausalConv1d {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;
    int64_t dilation = 1, groups = 1;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t channels, int64_t kernel, int64_t dil, int64_t grp) {
        FLASHLM_CHECK(grp >= 1 && channels % grp == 0, "GroupedCausalConv1d: groups must divide the channels");
        ps = &p, dilation = dil, groups = grp;
        weight = p.add(join(prefix, "weight"), Shape{channels, channels / grp, kernel});
    }
    // torch.nn.init.kaiming_normal_(w, nonlinearity='linear'): std = 1/√fan_in, fan_in = C/groups · K.
    void init(Rng& rng) {
        Tensor<T> w = ps->get(weight);
        init_normal(w, rng, 1.0 / std::sqrt(double(w.dim(1) * w.dim(2))));
    }
    Tensor<T> w() const { return ps->get(weight); }
    // x: [B, T, C]
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const {
        return ops::causal_conv1d(tape, x, w(), dilation, groups);
    }
};

// The last (K-1)·d+1 inputs of a causal conv with dilation d, newest last; several convs that read the
// same input (v3's gate and value) share one ring.
class ConvHistory {
public:
    ConvHistory() = default;
    ConvHistory(int64_t channels, int64_t kernel, int64_t dilation)
        : C_(channels), K_(kernel), d_(dilation), R_((kernel - 1) * dilation + 1), buf_(size_t(C_ * R_), 0.0f) {}
    void reset() {
        std::fill(buf_.begin(), buf_.end(), 0.0f);
        pos_ = 0;
    }
    // Appends this step's input; zeros stand in for positions before the start (causal left padding).
    void push(const float* v) {
        std::copy(v, v + C_, buf_.data() + pos_ * C_);
        pos_ = (pos_ + 1) % R_;
    }
    // Input of tap j (0 = oldest, K-1 = the one just pushed): lag (K-1-j)·d.
    const float* tap(int64_t j) const {
        const int64_t newest = (pos_ + R_ - 1) % R_;
        return buf_.data() + ((newest - (K_ - 1 - j) * d_) % R_ + R_) % R_ * C_;
    }
    int64_t kernel() const { return K_; }

private:
    int64_t C_ = 0, K_ = 1, d_ = 1, R_ = 1;
    std::vector<float> buf_;
    int64_t pos_ = 0;
};

// One output step of a grouped causal conv: y[o] = Σ_j Σ_i w[o, i, j] · tap_j[g(o)·Cg + i].
inline void grouped_conv_step(const float* w, int64_t C, int64_t Cg, const ConvHistory& h, float* y) {
    const int64_t K = h.kernel();
    for (int64_t o = 0; o < C; ++o) {
        const int64_t g0 = o / Cg * Cg;
        const float* wo = w + o * Cg * K;
        float acc = 0;
        for (int64_t j = 0; j < K; ++j) {
            const float* x = h.tap(j) + g0;
            for (int64_t i = 0; i < Cg; ++i) acc += wo[i * K + j] * x[i];
        }
        y[o] = acc;
    }
}

}  // namespace flashlm::nn
