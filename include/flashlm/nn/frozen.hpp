#pragma once
// Inference forms of the layers: weights frozen (ternary ones quantised and packed once), per-token
// functions over caller-owned buffers. Used by the cached generators.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/tensor.hpp"
#include "flashlm/kernels/dense.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_pack.hpp"
#include "flashlm/kernels/ternary_tiles.hpp"
#include "flashlm/train/generator.hpp"

namespace flashlm::nn {

// BitLinear (Q1) frozen: packed 2-bit weights, one scale per tensor.
class FrozenBitLinear {
public:
    FrozenBitLinear() = default;
    explicit FrozenBitLinear(const Tensor<float>& w) : FrozenBitLinear(kernels::pack_ternary(w.data, w.dim(0), w.dim(1))) {}
    // Already packed (another quantizer's codes and scale, e.g. Q1' of FlashLM v5).
    explicit FrozenBitLinear(kernels::PackedTernary p) : w_(std::move(p)) {
        if (w_.cols % 4 == 0) tiles_ = kernels::pack_ternary_tiles(w_);  // the int8 matvec's layout (see int8())
    }
    int64_t in() const { return w_.cols; }
    int64_t out() const { return w_.rows; }
    // y = W̃ x. For int8, xq/xs are scratch for the quantised input (size in()).
    void operator()(const float* x, float* y, Quant q, int8_t* xq) const {
        if (q == Quant::exact) {
            kernels::ternary_matvec(w_, x, y);
        } else {
            float xs = 0;
            kernels::quantize_activations_int8(x, 1, w_.cols, xq, &xs);
            int8(xq, xs, y);
        }
    }
    // int8 with x already quantised (quantize(), the same numbers as the float overload): one
    // quantisation serves every matrix that reads the same x (GLU gate and up).
    void operator()(const int8_t* xq, float xs, float* y) const { int8(xq, xs, y); }
    float quantize(const float* x, int8_t* xq) const {
        float xs = 0;
        kernels::quantize_activations_int8(x, 1, w_.cols, xq, &xs);
        return xs;
    }
    const kernels::PackedTernary& packed() const { return w_; }

private:
    // The row-tile layout (kernels/ternary_tiles.hpp) where the CPU has its kernel: one row per int32
    // lane, no per-row reduction; the same numbers bit for bit as the row-major kernels.
    void int8(const int8_t* xq, float xs, float* y) const {
        if (!tiles_.planes.empty() && kernels::ternary_tiles_native())
            kernels::ternary_tiles_matvec_int8(tiles_, xq, xs, y);
        else
            kernels::ternary_matvec_int8(w_, xq, xs, y);
    }

    kernels::PackedTernary w_;
    kernels::PackedTernaryTiles tiles_;
};

// A float output head (e.g. tied to the embedding, [vocab, D]) frozen for the int8 path: weights
// quantised once per row (absmax int8, a float scale per row, VNNI tile layout), the input quantised per
// call (absmax), int32 dot products (kernels/dense.hpp). 4× fewer bytes per token than the float head.
class FrozenHeadInt8 {
public:
    FrozenHeadInt8() = default;
    FrozenHeadInt8(const float* w, int64_t rows, int64_t cols)
        : w_(kernels::pack_int8_rows(w, rows, cols)), xq_(size_t(w_.cols_padded), 0) {}
    int64_t in() const { return w_.cols; }
    int64_t out() const { return w_.rows; }
    // y[out] ≈ W x. Uses the object's own scratch: not for concurrent calls on one object. Alternate
    // calls sweep the rows in opposite directions (same numbers; more L2 hits, kernels::detail::for_chunks).
    void operator()(const float* x, float* y) {
        kernels::int8_rows_matvec(w_, x, y, xq_.data(), reverse_);
        reverse_ = !reverse_;
    }
    const kernels::PackedInt8Rows& packed() const { return w_; }

private:
    kernels::PackedInt8Rows w_;
    std::vector<int8_t> xq_;
    bool reverse_ = false;
};

inline void rmsnorm_vec(const float* x, const float* g, float* y, int64_t D, float eps) {
    float ss = 0;
    for (int64_t c = 0; c < D; ++c) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / float(D) + eps);
    for (int64_t c = 0; c < D; ++c) y[c] = x[c] * r * g[c];
}

// y ⊙= σ(g) and a = SiLU(a) ⊙ b, vectorised through Eigen's array exp.
inline void mul_sigmoid(float* y, const float* g, int64_t n) {
    Eigen::Map<Eigen::ArrayXf> ya(y, n);
    Eigen::Map<const Eigen::ArrayXf> ga(g, n);
    ya /= (1.0f + (-ga).exp());
}
inline void silu_mul(float* a, const float* b, int64_t n) {
    Eigen::Map<Eigen::ArrayXf> aa(a, n);
    Eigen::Map<const Eigen::ArrayXf> ba(b, n);
    aa = aa / (1.0f + (-aa).exp()) * ba;
}

// Causal depthwise conv, one step: a ring of the last K-1 inputs per channel.
class CausalConvState {
public:
    CausalConvState() = default;
    CausalConvState(const Tensor<float>& w) : C_(w.dim(0)), K_(w.dim(2)), wt_(size_t(C_ * K_)), ring_(size_t(C_ * (K_ - 1))) {
        for (int64_t c = 0; c < C_; ++c)
            for (int64_t j = 0; j < K_; ++j) wt_[size_t(j * C_ + c)] = w.data[c * K_ + j];
        reset();
    }
    void reset() {
        std::fill(ring_.begin(), ring_.end(), 0.0f);
        pos_ = 0;
    }
    // y[c] = Σ_j w[c, j] · v_{t-(K-1)+j}[c] with v_t = v.
    void step(const float* v, float* y) {
        const int64_t H = K_ - 1;
        for (int64_t c = 0; c < C_; ++c) y[c] = wt_[size_t(H * C_ + c)] * v[c];
        for (int64_t j = 0; j < H; ++j) {
            const float* past = ring_.data() + ((pos_ + j) % H) * C_;  // oldest first
            const float* wj = wt_.data() + j * C_;
            for (int64_t c = 0; c < C_; ++c) y[c] += wj[c] * past[c];
        }
        if (H > 0) {
            std::copy(v, v + C_, ring_.data() + pos_ * C_);
            pos_ = (pos_ + 1) % H;
        }
    }

private:
    int64_t C_ = 0, K_ = 1;
    std::vector<float> wt_, ring_;
    int64_t pos_ = 0;
};

}  // namespace flashlm::nn
