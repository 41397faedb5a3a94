#pragma once
// BitLinear with the Q2 per-row quantizer (ops/bitlinear_rows.hpp) and its frozen inference form.
#include <algorithm>
#include <vector>

#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_pack.hpp"
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/bitlinear_rows.hpp"
#include "flashlm/train/generator.hpp"

namespace flashlm::nn {

// Ternary linear layer (Q2, identity STE), weight [out, in] named `weight`, no bias; kaiming-normal
// fan-out init (the v7 BitLinear constructor).
template <class T>
struct BitLinearRows {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
    }
    void init(Rng& rng) { init_kaiming_fan_out(ps->get(weight), rng); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return ops::bitlinear_rows(tape, x, w()); }
};

// Q2 BitLinear frozen: the codes packed once with scale 1 (the packed kernels take one scale per
// matrix), each output then multiplied by its row's α_r. The codes and α_r come from
// ops::quantize_absmean_rows, so the weights are exactly those training saw.
class FrozenBitLinearRows {
public:
    FrozenBitLinearRows() = default;
    explicit FrozenBitLinearRows(const Tensor<float>& w) : alpha_(size_t(w.dim(0))) {
        const int64_t N = w.dim(0), K = w.dim(1);
        std::vector<float> wq(size_t(N * K));
        ops::quantize_absmean_rows(w.data, wq.data(), N, K, alpha_.data());
        std::vector<int8_t> q(wq.size());
        for (int64_t r = 0; r < N; ++r)
            for (int64_t k = 0; k < K; ++k) {
                const float v = wq[size_t(r * K + k)];
                q[size_t(r * K + k)] = int8_t(v > 0 ? 1 : (v < 0 ? -1 : 0));
            }
        w_ = kernels::pack_ternary_codes(q.data(), N, K, 1.0f);
    }
    int64_t in() const { return w_.cols; }
    int64_t out() const { return w_.rows; }
    // y = W̃ x. For int8, xq is scratch for the quantised input (size in()).
    void operator()(const float* x, float* y, Quant q, int8_t* xq) const {
        if (q == Quant::exact) {
            kernels::ternary_matvec(w_, x, y);
        } else {
            float xs = 0;
            kernels::quantize_activations_int8(x, 1, w_.cols, xq, &xs);
            kernels::ternary_matvec_int8(w_, xq, xs, y);
        }
        for (int64_t r = 0; r < w_.rows; ++r) y[r] *= alpha_[size_t(r)];
    }
    // Inputs not a whole number of 64-weight blocks make the entry points above copy x into a fresh
    // padded buffer per call. in_padded() floats of x (zeros past in()) and an xq of in_padded() bytes
    // avoid that: no copy, no allocation (cached generation).
    int64_t in_padded() const { return w_.cols_padded; }
    void apply_padded(const float* x_padded, float* y, Quant q, int8_t* xq) const {
        if (q == Quant::exact) {
            kernels::detail::F32Job job{};
            job.planes = w_.planes.data();
            job.blocks = w_.blocks();
            job.M = 1;
            job.ldx = w_.cols_padded;
            job.ldy = w_.rows;
            job.x = x_padded;
            job.scale = w_.scale;
            job.y = y;
            kernels::detail::run(job, w_.rows, w_.cols);
        } else {
            float xs = 0;
            kernels::quantize_activations_int8(x_padded, 1, w_.cols, xq, &xs);
            std::fill(xq + w_.cols, xq + w_.cols_padded, int8_t(0));
            kernels::detail::run_int8(w_, xq, &xs, 1, y);
        }
        for (int64_t r = 0; r < w_.rows; ++r) y[r] *= alpha_[size_t(r)];
    }

private:
    kernels::PackedTernary w_;
    std::vector<float> alpha_;
};

}  // namespace flashlm::nn
