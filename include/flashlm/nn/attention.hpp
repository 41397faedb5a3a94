#pragma once
// Causal multi-head self-attention with RoPE (v5.2 "Nova-Ignition" as shipped, VARIANTS.md §7.3):
//   [q, k, v] = split₃(qkv(x)); q, k rotated per head (RoPE, rotate-half); o = softmax(q kᵀ·scale + causal) v;
//   out(o). Parameter names: qkv.weight [3·H·d, D], out.weight [D, H·d] (no biases).
// The pieces a differential-attention layer reuses: ops::rope on any column range of a projection,
// ops::causal_attention once per branch, and KVCache + ops::attend_cached for cached generation.
#include <cmath>
#include <vector>

#include "flashlm/nn/linear.hpp"
#include "flashlm/nn/module.hpp"
#include "flashlm/ops/attention.hpp"
#include "flashlm/ops/rope.hpp"
#include "flashlm/ops/split.hpp"

namespace flashlm::nn {

template <class T>
struct CausalSelfAttention {
    Linear<T> qkv, out;
    ops::RopeTable<T> rope;
    int64_t n_heads = 0, head_dim = 0;

    // max_len: the longest sequence the RoPE table covers.
    void declare(ParamStore<T>& p, const std::string& prefix, int64_t d_model, int64_t heads, int64_t d_head,
                 int64_t max_len, double rope_base = 10000.0) {
        n_heads = heads, head_dim = d_head;
        qkv.declare(p, join(prefix, "qkv"), d_model, 3 * heads * d_head);
        out.declare(p, join(prefix, "out"), heads * d_head, d_model);
        rope = ops::RopeTable<T>(d_head, max_len, rope_base);
    }
    void init_normal_std(Rng& rng, double std) {
        qkv.init_normal_std(rng, std);
        out.init_normal_std(rng, std);
    }
    // x [B, L, D]; dropout p on the attention probabilities (training only; 0 = off).
    Tensor<T> operator()(Tape<T>& tape, const Tensor<T>& x, double dropout = 0.0, uint64_t seed = 0) const {
        const int64_t W = n_heads * head_dim;
        Tensor<T> h = qkv(tape, x);
        Tensor<T> q = ops::rope(tape, h, 0, W, rope);
        Tensor<T> k = ops::rope(tape, h, W, 2 * W, rope);
        Tensor<T> v = ops::slice_cols(tape, h, 2 * W, 3 * W);
        return out(tape, ops::causal_attention(tape, q, k, v, n_heads, 1.0 / std::sqrt(double(head_dim)), dropout, seed));
    }
};

// Preallocated key/value rows of one attention layer for cached generation: [max_len, k_width] and
// [max_len, v_width]; append() never allocates.
struct KVCache {
    int64_t max_len = 0, k_width = 0, v_width = 0, len = 0;
    std::vector<float> k, v;
    KVCache() = default;
    KVCache(int64_t max_len_, int64_t kw, int64_t vw)
        : max_len(max_len_), k_width(kw), v_width(vw), k(size_t(max_len_ * kw)), v(size_t(max_len_ * vw)) {}
    bool full() const { return len >= max_len; }
    void reset() { len = 0; }
    // Slot for the next row (the caller writes k and v there, then calls commit()).
    float* next_k() { return k.data() + len * k_width; }
    float* next_v() { return v.data() + len * v_width; }
    void commit() { ++len; }
};

}  // namespace flashlm::nn
