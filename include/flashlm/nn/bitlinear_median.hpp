#pragma once
// Q3 BitLinear layer (v6.1 "SUPERNOVA II", ops/bitlinear_median.hpp) and its frozen inference form:
// codes sign(W)·[|W| > median|W|] packed with scale 1, rows zero-padded to whole 64-weight blocks so a
// ragged width runs from the layer's own padded input buffer (no per-call copy or allocation).
#include <algorithm>
#include <vector>

#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_pack.hpp"
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/bitlinear_median.hpp"
#include "flashlm/train/generator.hpp"

namespace flashlm::nn {

// Ternary linear layer with the Q3 quantizer and its clipped STE; weight [out, in] named `weight`, no bias.
template <class T>
struct BitLinearMedian {
    ParamStore<T>* ps = nullptr;
    std::size_t weight = 0;

    void declare(ParamStore<T>& p, const std::string& prefix, int64_t in, int64_t out) {
        ps = &p;
        weight = p.add(join(prefix, "weight"), Shape{out, in});
    }
    void init(Rng& rng, double std = 0.02) { init_normal(ps->get(weight), rng, std); }
    Tensor<T> w() const { return ps->get(weight); }
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x) const { return ops::bitlinear_median(tape, x, w()); }
};

// Not for concurrent calls on one object (it owns its padded input buffers).
class FrozenMedianLinear {
public:
    FrozenMedianLinear() = default;
    explicit FrozenMedianLinear(const Tensor<float>& w) : rows_(w.dim(0)), cols_(w.dim(1)) {
        const int64_t n = rows_ * cols_, padded = (cols_ + kernels::k_block - 1) / kernels::k_block * kernels::k_block;
        std::vector<float> wq(static_cast<size_t>(n));
        ops::quantize_median(w.data, wq.data(), n);
        std::vector<int8_t> codes(static_cast<size_t>(rows_ * padded), 0);
        for (int64_t r = 0; r < rows_; ++r)
            for (int64_t k = 0; k < cols_; ++k) codes[size_t(r * padded + k)] = int8_t(wq[size_t(r * cols_ + k)]);
        w_ = kernels::pack_ternary_codes(codes.data(), rows_, padded, 1.0f);
        xpad_.assign(size_t(padded), 0.0f);
        xqpad_.assign(size_t(padded), 0);
    }
    int64_t in() const { return cols_; }
    int64_t out() const { return rows_; }
    // y = W̃ x (W̃ in {-1, 0, 1}); int8: x quantised per call (absmax).
    void operator()(const float* x, float* y, Quant q) {
        std::copy(x, x + cols_, xpad_.begin());  // the tail stays zero
        if (q == Quant::exact) {
            kernels::ternary_matvec(w_, xpad_.data(), y);
        } else {
            float xs = 0;
            kernels::quantize_activations_int8(xpad_.data(), 1, w_.cols, xqpad_.data(), &xs);
            kernels::ternary_matvec_int8(w_, xqpad_.data(), xs, y);
        }
    }

private:
    int64_t rows_ = 0, cols_ = 0;
    kernels::PackedTernary w_;
    std::vector<float> xpad_;
    std::vector<int8_t> xqpad_;
};

}  // namespace flashlm::nn
