#pragma once
// Frozen form of nn::BitLinear with any of its options (bitlinear.hpp): the Q1 path is FrozenBitLinear
// unchanged; the Q5 path packs per-256-block scales (kernels/ternary_blockwise.hpp); Q0 packs its ±1
// codes with scale 1, its rows zero-padded to whole 64-weight blocks so that a ragged width (v3's 683)
// runs from the layer's own padded input buffer instead of a per-call copy; with an inner norm the layer
// first normalises its input into its own buffer. Not for concurrent calls on one object.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "flashlm/kernels/ternary_blockwise.hpp"
#include "flashlm/nn/bitlinear.hpp"
#include "flashlm/nn/frozen.hpp"

namespace flashlm::nn {

class FrozenTernaryLinear {
public:
    FrozenTernaryLinear() = default;
    // norm_scale: the inner RMSNorm gain (in() floats), required iff opt.inner_norm.
    FrozenTernaryLinear(const Tensor<float>& w, BitLinearOptions opt, const float* norm_scale = nullptr, float eps = 1e-6f)
        : opt_(opt), rows_(w.dim(0)), cols_(w.dim(1)), norm_(norm_scale), eps_(eps) {
        if (opt.inner_norm && !norm_scale) throw std::invalid_argument("FrozenTernaryLinear: inner norm without its gain");
        if (opt.quant == WeightQuant::absmean) q1_ = FrozenBitLinear(w);
        else if (opt.quant == WeightQuant::blockwise) q5_ = kernels::pack_ternary_blockwise(w.data, rows_, cols_);
        else pack_threshold(w);
        if (opt.inner_norm) h_.resize(size_t(cols_));
        if (opt.quant == WeightQuant::blockwise) tmp_.resize(size_t(rows_));
    }
    int64_t in() const { return cols_; }
    int64_t out() const { return rows_; }
    // True when the layer is a plain Q1 FrozenBitLinear (no inner norm): callers may then share one int8
    // quantisation of x between layers that read the same x (plain()).
    bool is_plain() const { return opt_.quant == WeightQuant::absmean && !opt_.inner_norm; }
    const FrozenBitLinear& plain() const { return q1_; }

    // y = W̃ · (inner_norm ? RMSNorm(x) : x). xq: int8 scratch of in() (only read for Quant::int8).
    void operator()(const float* x, float* y, Quant q, int8_t* xq) {
        if (opt_.inner_norm) {
            rmsnorm_vec(x, norm_, h_.data(), cols_, eps_);
            x = h_.data();
        }
        if (opt_.quant == WeightQuant::absmean) {
            q1_(x, y, q, xq);
        } else if (opt_.quant == WeightQuant::threshold) {
            std::copy(x, x + cols_, xpad_.begin());  // the tail stays zero
            if (q == Quant::exact) {
                kernels::ternary_matvec(q0_, xpad_.data(), y);
            } else {
                float xs = 0;
                kernels::quantize_activations_int8(xpad_.data(), 1, q0_.cols, xqpad_.data(), &xs);
                kernels::ternary_matvec_int8(q0_, xqpad_.data(), xs, y);
            }
        } else if (q == Quant::exact) {
            kernels::ternary_blockwise_matvec(q5_, x, y, tmp_.data());
        } else {
            float xs = 0;
            kernels::quantize_activations_int8(x, 1, cols_, xq, &xs);
            kernels::ternary_blockwise_matvec_int8(q5_, xq, xs, y, tmp_.data());
        }
    }
    const kernels::PackedTernaryBlockwise& blockwise() const { return q5_; }

private:
    void pack_threshold(const Tensor<float>& w) {
        const int64_t n = rows_ * cols_, padded = (cols_ + kernels::k_block - 1) / kernels::k_block * kernels::k_block;
        std::vector<float> wq(static_cast<size_t>(n));
        ops::quantize_threshold(w.data, wq.data(), n);
        std::vector<int8_t> codes(static_cast<size_t>(rows_ * padded), 0);
        for (int64_t r = 0; r < rows_; ++r)
            for (int64_t k = 0; k < cols_; ++k) codes[size_t(r * padded + k)] = int8_t(wq[size_t(r * cols_ + k)]);
        q0_ = kernels::pack_ternary_codes(codes.data(), rows_, padded, 1.0f);
        xpad_.assign(size_t(padded), 0.0f);
        xqpad_.assign(size_t(padded), 0);
    }

    BitLinearOptions opt_;
    int64_t rows_ = 0, cols_ = 0;
    const float* norm_ = nullptr;
    float eps_ = 1e-6f;
    FrozenBitLinear q1_;
    kernels::PackedTernaryBlockwise q5_;
    kernels::PackedTernary q0_;  // Q0: codes with scale 1, cols padded to a multiple of 64
    std::vector<float> h_, tmp_, xpad_;
    std::vector<int8_t> xqpad_;
};

}  // namespace flashlm::nn
