// One table, every op: analytic backward vs central finite differences in double precision, and the
// float path vs the double path (ggml's test-backend-ops in spirit).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/ops/decayed_memory.hpp>
#include <flashlm/ops/prenorm_memory_residual.hpp>
#include <flashlm/ops/attention.hpp>
#include <flashlm/ops/dropout.hpp>
#include <flashlm/ops/gelu.hpp>
#include <flashlm/ops/layernorm.hpp>
#include <flashlm/ops/rope.hpp>
#include <flashlm/ops/bitlinear_rows.hpp>
#include <flashlm/ops/decayed_cumsum.hpp>
#include <flashlm/ops/early_exit.hpp>
#include <flashlm/ops/linear_bias.hpp>
#include <flashlm/ops/relu.hpp>
#include <flashlm/ops/bitlinear_q1p.hpp>
#include <flashlm/ops/gated_recurrence.hpp>
#include <flashlm/ops/group_norm.hpp>
#include <flashlm/ops/relu_squared.hpp>
#include <flashlm/ops/token_shift.hpp>
#include <flashlm/ops/bitlinear_threshold.hpp>
#include <flashlm/ops/relu2_glu.hpp>
#include <flashlm/ops/gated_delta_rule.hpp>
#include <flashlm/ops/l2_normalize.hpp>
#include <flashlm/ops/log_sigmoid.hpp>
#include <flashlm/ops/bitlinear_median.hpp>
#include <flashlm/ops/concat.hpp>
#include <flashlm/ops/lerp.hpp>
#include <flashlm/ops/moe.hpp>
#include <flashlm/ops/tanh.hpp>
#include <flashlm/ops/time_shift.hpp>
#include <flashlm/ops/softmax.hpp>
#include <flashlm/ops/slot_attention.hpp>
#include <flashlm/ops/time_shift.hpp>
#include <flashlm/ops/concat.hpp>
#include <flashlm/ops/scale.hpp>
#include <flashlm/ops/seq_mean.hpp>
#include <flashlm/ops/broadcast.hpp>
#include <flashlm/ops/ternary_q4.hpp>
#include <flashlm/ops/differential_attention.hpp>
#include <flashlm/ops/moe_routing.hpp>
#include <flashlm/ops/moe_expert.hpp>
#include <flashlm/ops/moe_expert_silu.hpp>
#include <flashlm/ops/residual_sum.hpp>
#include <flashlm/ops/prenorm_residual.hpp>
#include <flashlm/ops/parallel_branch_residual.hpp>
#include <flashlm/ops/temporal_mix_residual.hpp>
#include <flashlm/ops/shift_recurrence_residual.hpp>
#include <flashlm/ops/shift_relu2_residual.hpp>

using namespace flashlm;

namespace {

template <class T>
using Fwd = std::function<Tensor<T>(Tape<T>&, std::vector<Tensor<T>>&)>;

template <class T>
struct OpCase {
    const char* name;
    std::vector<Shape> shapes;
    Fwd<T> fwd;
    std::vector<int> fd_inputs;  // inputs whose gradient is checked by finite differences
    // Input 1 is a weight behind the identity straight-through estimator: its gradient is checked
    // against finite differences of x W̃ᵀ at W̃ (the function the STE differentiates), not of the
    // piecewise-constant quantizer.
    bool ste_weight = false;
    // The quantizer behind ste_weight when it is not Q1 (W̃ = ste_quant(W)).
    void (*ste_quant)(const double*, double*, int64_t) = nullptr;
    // STE on several inputs: replaces every input but k by its quantised value (in place), and input k is
    // then checked against finite differences of linear(in[0], in[1]) (q4_linear: x̃ W̃ᵀ).
    void (*ste_point)(std::vector<std::vector<double>>&, const std::vector<Shape>&, int k) = nullptr;
};

const std::vector<int32_t> k_ids = {3, 0, 7, 3, 5, 1, 6, 2, 0, 4, 7, 7};  // 12 ids in [0, 8)

template <class T>
std::vector<OpCase<T>> op_table() {
    using V = std::vector<Tensor<T>>;
    std::vector<OpCase<T>> t;
    t.push_back({"embedding", {Shape{8, 5}}, [](Tape<T>& tp, V& in) { return ops::embedding(tp, in[0], k_ids.data(), 12); }, {0}});
    t.push_back({"linear", {Shape{2, 3, 5}, Shape{4, 5}}, [](Tape<T>& tp, V& in) { return ops::linear(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"bitlinear",
                 {Shape{6, 5}, Shape{4, 5}},
                 [](Tape<T>& tp, V& in) { return ops::bitlinear(tp, in[0], in[1]); },
                 {0, 1},
                 true});
    t.push_back({"rmsnorm", {Shape{4, 6}, Shape{6}}, [](Tape<T>& tp, V& in) { return ops::rmsnorm(tp, in[0], in[1], 1e-6); }, {0, 1}});
    t.push_back({"causal_dwconv1d", {Shape{2, 7, 3}, Shape{3, 1, 4}}, [](Tape<T>& tp, V& in) { return ops::causal_dwconv1d(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"gated_causal_conv", {Shape{2, 7, 6}, Shape{3, 1, 4}}, [](Tape<T>& tp, V& in) { return ops::gated_causal_conv(tp, in[0], in[1]); }, {0, 1}});
    // 40 channels and 13 steps: the register-blocked loops of ops/conv1d.hpp (32-channel blocks of 4 rows,
    // the 8-channel tail, rows near either end of a sequence one at a time); above, only the row loops run.
    t.push_back({"causal_dwconv1d_blocked", {Shape{2, 13, 40}, Shape{40, 1, 5}}, [](Tape<T>& tp, V& in) { return ops::causal_dwconv1d(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"gated_causal_conv_blocked", {Shape{2, 13, 80}, Shape{40, 1, 5}}, [](Tape<T>& tp, V& in) { return ops::gated_causal_conv(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"swiglu", {Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::swiglu(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"sigmoid", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::sigmoid(tp, in[0]); }, {0}});
    t.push_back({"silu", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::silu(tp, in[0]); }, {0}});
    t.push_back({"add", {Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::add(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"mul", {Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::mul(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"split_first_half", {Shape{3, 8}}, [](Tape<T>& tp, V& in) { return ops::split2(tp, in[0]).first; }, {0}});
    t.push_back({"split_second_half", {Shape{3, 8}}, [](Tape<T>& tp, V& in) { return ops::split2(tp, in[0]).second; }, {0}});
    t.push_back({"cross_entropy", {Shape{12, 8}}, [](Tape<T>& tp, V& in) { return ops::cross_entropy(tp, in[0], k_ids.data()); }, {0}});
    t.push_back({"tied_head_cross_entropy",
                 {Shape{12, 5}, Shape{8, 5}},
                 [](Tape<T>& tp, V& in) { return ops::tied_head_cross_entropy(tp, in[0], in[1], k_ids.data(), 5); },
                 {0, 1}});
    t.push_back({"decayed_memory",
                 {Shape{2, 6, 4}, Shape{2, 6, 4}, Shape{2, 6, 4}},
                 [](Tape<T>& tp, V& in) { return ops::decayed_memory(tp, in[0], in[1], in[2], 0.9, 0.35); },
                 {0, 1, 2}});
    t.push_back({"layernorm", {Shape{4, 6}, Shape{6}, Shape{6}}, [](Tape<T>& tp, V& in) { return ops::layernorm(tp, in[0], in[1], in[2], 1e-5); }, {0, 1, 2}});
    t.push_back({"gelu", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::gelu(tp, in[0]); }, {0}});
    t.push_back({"geglu", {Shape{3, 10}}, [](Tape<T>& tp, V& in) { return ops::geglu(tp, in[0]); }, {0}});
    // wide enough for whole xsimd batches (16 floats, 8 doubles) and a ragged tail in each row
    t.push_back({"geglu_wide", {Shape{2, 42}}, [](Tape<T>& tp, V& in) { return ops::geglu(tp, in[0]); }, {0}});
    t.push_back({"gelu_wide", {Shape{2, 19}}, [](Tape<T>& tp, V& in) { return ops::gelu(tp, in[0]); }, {0}});
    t.push_back({"dropout", {Shape{4, 6}}, [](Tape<T>& tp, V& in) { return ops::dropout(tp, in[0], 0.3, 7); }, {0}});
    // columns [4, 12) of a [2, 5, 14] input: two heads of 4 rotated at positions 3..7
    t.push_back({"rope", {Shape{2, 5, 14}}, [](Tape<T>& tp, V& in) {
                     static const ops::RopeTable<T> table(4, 9);
                     return ops::rope(tp, in[0], 4, 12, table, 3);
                 }, {0}});
    // 2 heads, dk 3, dv 2, L 70 > k_attn_rows so two row blocks (the second reaches keys of the first)
    t.push_back({"causal_attention", {Shape{2, 70, 6}, Shape{2, 70, 6}, Shape{2, 70, 4}}, [](Tape<T>& tp, V& in) {
                     return ops::causal_attention(tp, in[0], in[1], in[2], 2, 0.6);
                 }, {0, 1, 2}});
    t.push_back({"causal_attention_dropout", {Shape{1, 9, 6}, Shape{1, 9, 6}, Shape{1, 9, 4}}, [](Tape<T>& tp, V& in) {
                     return ops::causal_attention(tp, in[0], in[1], in[2], 2, 0.6, 0.25, 11);
                 }, {0, 1, 2}});
    // v7 CORTEX. bitlinear_rows: x only (the weight's STE gradient is checked in tests/variants/cortex7.cpp).
    t.push_back({"bitlinear_rows", {Shape{6, 5}, Shape{4, 5}}, [](Tape<T>& tp, V& in) { return ops::bitlinear_rows(tp, in[0], in[1]); }, {0}});
    t.push_back({"decayed_cumsum",
                 {Shape{2, 7, 3}, Shape{3}},
                 [](Tape<T>& tp, V& in) { return ops::decayed_cumsum(tp, in[0], ops::sigmoid(tp, in[1])); },
                 {0, 1}});
    // Long enough that w^t falls below upstream's 1e-10 clamp for the smaller decays.
    t.push_back({"decayed_cumsum_upstream_clamp",
                 {Shape{2, 48, 4}, Shape{4}},
                 [](Tape<T>& tp, V& in) { return ops::decayed_cumsum(tp, in[0], ops::sigmoid(tp, in[1]), true); },
                 {0, 1}});
    t.push_back({"linear_bias", {Shape{2, 3, 5}, Shape{4, 5}, Shape{4}}, [](Tape<T>& tp, V& in) { return ops::linear_bias(tp, in[0], in[1], in[2]); }, {0, 1, 2}});
    t.push_back({"relu", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::relu(tp, in[0]); }, {0}});
    t.push_back({"exit_head_loss",
                 {Shape{12, 5}, Shape{8, 5}},
                 [](Tape<T>& tp, V& in) {
                     static const int32_t ref[12] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3};
                     static int32_t am[12];
                     return ops::exit_head_loss(tp, in[0], in[1], k_ids.data(), am, ref, 0.7, 0.9, 5);
                 },
                 {0, 1}});
    t.push_back({"binary_cross_entropy",
                 {Shape{12}},
                 [](Tape<T>& tp, V& in) {
                     static const int32_t y[12] = {0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0};
                     return ops::binary_cross_entropy(tp, ops::sigmoid(tp, in[0]), y);
                 },
                 {0}});
    t.push_back({"add_weighted", {Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::add_weighted(tp, in[0], in[1], 0.3); }, {0, 1}});
    t.push_back({"token_shift", {Shape{2, 5, 3}, Shape{3}}, [](Tape<T>& tp, V& in) { return ops::token_shift(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"gated_recurrence",
                 {Shape{2, 6, 3}, Shape{3}, Shape{2, 6, 3}},
                 [](Tape<T>& tp, V& in) { return ops::gated_recurrence(tp, in[0], in[1], in[2], 0.4); },
                 {0, 1, 2}});
    t.push_back({"group_norm_per_position",
                 {Shape{2, 4, 6}, Shape{6}, Shape{6}},
                 [](Tape<T>& tp, V& in) { return ops::group_norm(tp, in[0], in[1], in[2], 2, 1e-5); },
                 {0, 1, 2}});
    t.push_back({"group_norm_whole_sequence",
                 {Shape{2, 4, 6}, Shape{6}, Shape{6}},
                 [](Tape<T>& tp, V& in) { return ops::group_norm(tp, in[0], in[1], in[2], 3, 1e-5, true); },
                 {0, 1, 2}});
    t.push_back({"layer_norm", {Shape{4, 5}, Shape{5}, Shape{5}}, [](Tape<T>& tp, V& in) { return ops::group_norm(tp, in[0], in[1], in[2], 1, 1e-5); }, {0, 1, 2}});
    t.push_back({"relu_squared", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::relu_squared(tp, in[0]); }, {0}});
    t.push_back({"bitlinear_q1p",
                 {Shape{6, 5}, Shape{4, 5}},
                 [](Tape<T>& tp, V& in) { return ops::bitlinear_q1p(tp, in[0], in[1]); },
                 {0, 1},
                 true});
    // 9 × 40 = 360 weights: two Q5 blocks, the second padded, both straddling rows.
    t.push_back({"bitlinear_blockwise",
                 {Shape{3, 40}, Shape{9, 40}},
                 [](Tape<T>& tp, V& in) { return ops::bitlinear_blockwise(tp, in[0], in[1]); },
                 {0, 1},
                 true,
                 [](const double* w, double* out, int64_t n) { ops::quantize_blockwise(w, out, n); }});
    // Dilation 2 reaches 2·(3-1) = 4 steps back; the grouped case mixes 2 channels per group.
    t.push_back({"causal_conv1d_depthwise_dilated",
                 {Shape{2, 9, 3}, Shape{3, 1, 3}},
                 [](Tape<T>& tp, V& in) { return ops::causal_conv1d(tp, in[0], in[1], 2, 3); },
                 {0, 1}});
    t.push_back({"causal_conv1d_grouped_dilated",
                 {Shape{2, 9, 4}, Shape{4, 2, 3}},
                 [](Tape<T>& tp, V& in) { return ops::causal_conv1d(tp, in[0], in[1], 2, 2); },
                 {0, 1}});
    // 16 channels per group (v3's width) runs the register-blocked loops; 9 rows end mid-block.
    t.push_back({"causal_conv1d_grouped16_dilated",
                 {Shape{2, 9, 32}, Shape{32, 16, 3}},
                 [](Tape<T>& tp, V& in) { return ops::causal_conv1d(tp, in[0], in[1], 3, 2); },
                 {0, 1}});
    t.push_back({"relu2_glu", {Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::relu2_glu(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"bitlinear_threshold",
                 {Shape{6, 5}, Shape{4, 5}},
                 [](Tape<T>& tp, V& in) { return ops::bitlinear_threshold(tp, in[0], in[1]); },
                 {0, 1},
                 true,
                 [](const double* w, double* out, int64_t n) { ops::quantize_threshold(w, out, n); }});
    // Gated DeltaNet (bolt-deltanet): B 2, T 7, 2 heads of dk 3 / dv 4; chunk 3 makes the backward
    // recompute the states from checkpoints across chunk edges. Decay and β go through their ops.
    for (bool compat : {false, true})
        t.push_back({compat ? "gated_delta_rule_upstream_compat" : "gated_delta_rule",
                     {Shape{2, 7, 6}, Shape{2, 7, 6}, Shape{2, 7, 8}, Shape{2, 7, 2}, Shape{2, 7, 2}},
                     [compat](Tape<T>& tp, V& in) {
                         return ops::gated_delta_rule(tp, in[0], in[1], in[2], ops::log_sigmoid(tp, in[3], 0.5),
                                                      ops::sigmoid(tp, in[4]), 2, compat, 3);
                     },
                     {0, 1, 2, 3, 4}});
    t.push_back({"gated_delta_rule_chunked",
                 {Shape{2, 7, 6}, Shape{2, 7, 6}, Shape{2, 7, 8}, Shape{2, 7, 2}, Shape{2, 7, 2}},
                 [](Tape<T>& tp, V& in) {
                     return ops::gated_delta_rule(tp, in[0], in[1], in[2], ops::log_sigmoid(tp, in[3], 0.5),
                                                  ops::sigmoid(tp, in[4]), 2, false, 3, ops::DeltaForm::chunked);
                 },
                 {0, 1, 2, 3, 4}});
    // Chunked form with WY blocks of 3 inside checkpoint spans of 8 over T 11: full, chunk-end and
    // sequence-end short blocks, recomputed block states; strong decay (a ≈ 0.1–0.5) in the default row.
    for (bool compat : {false, true})
        t.push_back({compat ? "gated_delta_rule_chunked_blocks_upstream_compat" : "gated_delta_rule_chunked_blocks",
                     {Shape{2, 11, 6}, Shape{2, 11, 6}, Shape{2, 11, 8}, Shape{2, 11, 2}, Shape{2, 11, 2}},
                     [compat](Tape<T>& tp, V& in) {
                         return ops::gated_delta_rule(tp, in[0], in[1], in[2], ops::log_sigmoid(tp, in[3], compat ? 0.5 : 2.0),
                                                      ops::sigmoid(tp, in[4]), 2, compat, 8, ops::DeltaForm::chunked, 3);
                     },
                     {0, 1, 2, 3, 4}});
    t.push_back({"l2_normalize", {Shape{3, 8}}, [](Tape<T>& tp, V& in) { return ops::l2_normalize(tp, in[0], 4); }, {0}});
    t.push_back({"log_sigmoid", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::log_sigmoid(tp, in[0], 1.0 / 16); }, {0}});
    t.push_back({"softmax", {Shape{2, 3, 5}}, [](Tape<T>& tp, V& in) { return ops::softmax(tp, in[0]); }, {0}});
    t.push_back({"slot_attention",
                 {Shape{2, 3, 4}, Shape{5, 4}},
                 [](Tape<T>& tp, V& in) { return ops::slot_attention(tp, in[0], in[1], 0.5); },
                 {0, 1}});
    t.push_back({"time_shift_2", {Shape{2, 5, 3}}, [](Tape<T>& tp, V& in) { return ops::time_shift(tp, in[0], 2); }, {0}});
    t.push_back({"concat_cols", {Shape{2, 3, 4}, Shape{2, 3, 2}}, [](Tape<T>& tp, V& in) { return ops::concat_cols(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"mul_col", {Shape{2, 3, 4}, Shape{2, 3, 2}}, [](Tape<T>& tp, V& in) { return ops::mul_col(tp, in[0], in[1], 1); }, {0, 1}});
    t.push_back({"mul_scalar", {Shape{3, 4}, Shape{1}}, [](Tape<T>& tp, V& in) { return ops::mul_scalar(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"mul_const", {Shape{3, 4}}, [](Tape<T>& tp, V& in) { return ops::mul_const(tp, in[0], 0.37); }, {0}});
    t.push_back({"seq_mean_causal", {Shape{2, 5, 3}}, [](Tape<T>& tp, V& in) { return ops::seq_mean(tp, in[0], true); }, {0}});
    t.push_back({"seq_mean_whole", {Shape{2, 5, 3}}, [](Tape<T>& tp, V& in) { return ops::seq_mean(tp, in[0], false); }, {0}});
    t.push_back({"broadcast_rows", {Shape{1, 1, 4}}, [](Tape<T>& tp, V& in) { return ops::broadcast_rows(tp, in[0], Shape{2, 3, 4}); }, {0}});
    // v6.1 C engine: ternary weights and activations (popcount GEMM), identity STE on both; K = 13 is ragged.
    t.push_back({"q4_linear",
                 {Shape{6, 13}, Shape{5, 13}},
                 [](Tape<T>& tp, V& in) { return ops::q4_linear(tp, in[0], in[1]); },
                 {0, 1},
                 false,
                 nullptr,
                 [](std::vector<std::vector<double>>& v, const std::vector<Shape>& s, int k) {
                     std::vector<double> q;
                     if (k != 0) {
                         q.resize(v[0].size());
                         ops::q4_dequantize_activations(v[0].data(), s[0].dims[0], s[0].dims[1], q.data());
                         v[0] = q;
                     }
                     if (k != 1) {
                         q.resize(v[1].size());
                         ops::q4_dequantize_weights(v[1].data(), s[1].dims[0], s[1].dims[1], q.data());
                         v[1] = q;
                     }
                 }});
    // nova-diff (v5.2 announced): λ = clamp(exp(mean λ_q − mean λ_k)) inside the clamp (the means of 24 N(0,1)
    // values differ by ~0.3; the clamped side is covered by the parity test's layer at lambda_max); a − λ·b; the whole differential attention (2 heads of 3, T 5, λ from its op); top-1 softmax gate;
    // row gather / scatter-add (repeated rows) / per-row scale; the μP scale.
    t.push_back({"diff_lambda", {Shape{4, 6}, Shape{4, 6}}, [](Tape<T>& tp, V& in) { return ops::diff_lambda(tp, in[0], in[1]); }, {0, 1}});
    t.push_back({"sub_scaled", {Shape{2, 3, 4}, Shape{2, 3, 4}, Shape{1}},
                 [](Tape<T>& tp, V& in) { return ops::sub_scaled(tp, in[0], in[1], in[2]); }, {0, 1, 2}});
    t.push_back({"differential_attention",
                 {Shape{2, 5, 12}, Shape{2, 5, 12}, Shape{2, 5, 6}, Shape{4, 6}, Shape{4, 6}},
                 [](Tape<T>& tp, V& in) {
                     return ops::differential_attention(tp, in[0], in[1], in[2], ops::diff_lambda(tp, in[3], in[4]), 2, 0.6);
                 },
                 {0, 1, 2, 3, 4}});
    t.push_back({"top1_softmax_gate", {Shape{7, 4}}, [](Tape<T>& tp, V& in) {
                     static thread_local std::vector<int32_t> choice(7);
                     return ops::top1_softmax_gate(tp, in[0], choice.data());
                 }, {0}});
    t.push_back({"gather_rows", {Shape{5, 3}}, [](Tape<T>& tp, V& in) {
                     static const int32_t rows[] = {4, 0, 4, 2};
                     return ops::gather_rows(tp, in[0], rows, 4);
                 }, {0}});
    t.push_back({"scatter_add_rows", {Shape{5, 3}, Shape{4, 3}}, [](Tape<T>& tp, V& in) {
                     static const int32_t rows[] = {1, 3, 1, 0};
                     return ops::scatter_add_rows(tp, in[0], in[1], rows);
                 }, {0, 1}});
    t.push_back({"scale_rows", {Shape{2, 3, 4}, Shape{2, 3, 1}}, [](Tape<T>& tp, V& in) { return ops::scale_rows(tp, in[0], in[1]); }, {0, 1}});
    // A top-1 MoE layer end to end: 3 experts (one linear each) on 6 tokens; router logits from h.
    t.push_back({"moe_top1_gather_scatter",
                 {Shape{6, 4}, Shape{3, 4}, Shape{4, 4}, Shape{4, 4}, Shape{4, 4}},
                 [](Tape<T>& tp, V& in) {
                     std::vector<int32_t> choice(6), order(6);
                     std::vector<int64_t> off(4);
                     Tensor<T> g = ops::top1_softmax_gate(tp, ops::linear(tp, in[0], in[1]), choice.data());
                     ops::group_by_choice(choice.data(), 6, 3, order.data(), off.data());
                     Tensor<T> out = ops::linear(tp, in[0], in[2]);
                     for (int64_t e = 0; e < 3; ++e) {
                         const int64_t M = off[size_t(e + 1)] - off[size_t(e)];
                         if (M == 0) continue;
                         const int32_t* rows = order.data() + off[size_t(e)];
                         Tensor<T> y = ops::linear(tp, ops::gather_rows(tp, in[0], rows, M), e == 1 ? in[4] : in[3]);
                         out = ops::scatter_add_rows(tp, out, ops::scale_rows(tp, y, ops::gather_rows(tp, g, rows, M)), rows);
                     }
                     return out;
                 },
                 {0, 1, 2, 3, 4}});
    // nova-diff's fused experts: h and the gate here; the Q2 weights' STE gradients are checked bit for
    // bit against the chain in tests/variants/nova_diff_fused.cpp.
    t.push_back({"expert_silu", {Shape{5, 4}, Shape{6, 4}, Shape{4, 6}}, [](Tape<T>& tp, V& in) {
                     return ops::expert_silu(tp, in[0], in[1], in[2]);
                 }, {0}});
    t.push_back({"routed_expert_silu_into", {Shape{5, 4}, Shape{5, 1}, Shape{6, 4}, Shape{4, 6}, Shape{5, 4}},
                 [](Tape<T>& tp, V& in) {
                     static const int32_t rows[3] = {3, 0, 4};
                     Tensor<T> acc = ops::mul_const(tp, in[4], 1.0);  // an activation of its own, as the op needs
                     return ops::routed_expert_silu_into(tp, acc, in[0], in[1], rows, 3, in[2], in[3]);
                 }, {0, 1, 4}});
    // v6.1 SUPERNOVA II. bitlinear_median: x only (the weight's clipped STE is checked in
    // tests/variants/supernova2.cpp).
    t.push_back({"bitlinear_median", {Shape{6, 5}, Shape{4, 5}}, [](Tape<T>& tp, V& in) { return ops::bitlinear_median(tp, in[0], in[1]); }, {0}});
    t.push_back({"lerp", {Shape{3, 5}, Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::lerp(tp, in[0], in[1], in[2]); }, {0, 1, 2}});
    t.push_back({"tanh", {Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::tanh(tp, in[0]); }, {0}});
    t.push_back({"mul_col_2d", {Shape{4, 5}, Shape{4, 3}}, [](Tape<T>& tp, V& in) { return ops::mul_col(tp, in[0], in[1], 1); }, {0, 1}});
    t.push_back({"moe_route_top2", {Shape{6, 4}}, [](Tape<T>& tp, V& in) {
                     static ops::Routing r;
                     r.k = 2;
                     return ops::route_topk(tp, in[0], r);
                 }, {0}});
    t.push_back({"moe_balance_loss", {Shape{6, 4}}, [](Tape<T>& tp, V& in) { return ops::balance_loss(tp, in[0], 0.01); }, {0}});
    // Rows 0, 1, 3, 4 of src go to tokens 0, 1, 3, 2 (gate slots 0, 3, 6, 5); row 2 is not routed.
    t.push_back({"moe_scatter_rows_weighted", {Shape{5, 3}, Shape{4, 2}}, [](Tape<T>& tp, V& in) {
                     static const int32_t assign[5] = {0, 3, -1, 6, 5};
                     Tensor<T> acc = ops::moe_accumulator(tp, 4, 3, tp.recording({in[0], in[1]}));
                     return ops::scatter_rows_weighted(tp, acc, in[0], in[1], assign);
                 }, {0, 1}});
    // A whole top-2-of-3 layer: router, per-expert gather of the routed rows, two different experts
    // (linear, tanh∘linear, linear again), weighted scatter back.
    t.push_back({"moe_top2_gather_scatter", {Shape{7, 4}, Shape{3, 4}, Shape{4, 4}}, [](Tape<T>& tp, V& in) {
                     static ops::Routing r;
                     r.k = 2;
                     Tensor<T> gates = ops::route_topk(tp, ops::linear(tp, in[0], in[1]), r);
                     ops::build_expert_lists(r);
                     Tensor<T> acc = ops::moe_accumulator(tp, 7, 4, true);
                     for (int64_t e = 0; e < 3; ++e) {
                         if (r.served(e) == 0) continue;
                         Tensor<T> ye = ops::linear(tp, ops::embedding(tp, in[0], r.tokens_of(e), r.served(e)), in[2]);
                         if (e == 1) ye = ops::tanh(tp, ye);
                         acc = ops::scatter_rows_weighted(tp, acc, ye, gates, r.assign_of(e));
                     }
                     return acc;
                 }, {0, 1, 2}});
    t.push_back({"residual_add3", {Shape{3, 5}, Shape{3, 5}, Shape{3, 5}, Shape{3, 5}}, [](Tape<T>& tp, V& in) { return ops::residual_add3(tp, in[0], in[1], in[2], in[3]); }, {0, 1, 2, 3}});
    // nova-diff's experts after the first add into the first one's sum in place (row 4 from both).
    t.push_back({"scatter_add_rows_into", {Shape{5, 3}, Shape{4, 3}, Shape{2, 3}}, [](Tape<T>& tp, V& in) {
                     static const int32_t first[4] = {4, 0, 4, 2}, later[2] = {1, 4};
                     return ops::scatter_add_rows_into(tp, ops::scatter_add_rows(tp, in[0], in[1], first), in[2], later);
                 }, {0, 1, 2}});
    // One fused ternary GLU expert on rows 3, 0, 4, 0 of x (a repeat accumulates); x only, like
    // bitlinear_median (the weights' clipped STE is checked against the unfused chain in
    // tests/variants/supernova2.cpp).
    t.push_back({"moe_expert_glu_median", {Shape{5, 4}, Shape{6, 4}, Shape{6, 4}, Shape{4, 6}}, [](Tape<T>& tp, V& in) {
                     static const int32_t rows[4] = {3, 0, 4, 0};
                     T* work = tp.scratch(ops::expert_glu_work_size(4, 4, 6));
                     return ops::expert_glu_median(tp, in[0], rows, 4, in[1], in[2], in[3], work);
                 }, {0}});
    // Bolt's fused sublayers: x, the norm gain and the conv weight here; the ternary weights' STE
    // gradients are checked bit for bit against the unfused chain in tests/variants/bolt_fused.cpp.
    t.push_back({"prenorm_gated_conv_residual", {Shape{2, 5, 4}, Shape{4}, Shape{8, 4}, Shape{4, 1, 3}, Shape{4, 4}}, [](Tape<T>& tp, V& in) {
                     return ops::prenorm_gated_conv_residual(tp, in[0], in[1], in[2], in[3], in[4], 1e-6);
                 }, {0, 1, 3}});
    t.push_back({"prenorm_ternary_glu_residual", {Shape{2, 3, 4}, Shape{4}, Shape{6, 4}, Shape{6, 4}, Shape{4, 6}}, [](Tape<T>& tp, V& in) {
                     return ops::prenorm_ternary_glu_residual(tp, in[0], in[1], in[2], in[3], in[4], 1e-6);
                 }, {0, 1}});
    // The same nodes with float weights (CORTEX's blocks): every input, the weights included.
    t.push_back({"prenorm_gated_conv_residual_dense", {Shape{2, 5, 4}, Shape{4}, Shape{8, 4}, Shape{4, 1, 3}, Shape{4, 4}}, [](Tape<T>& tp, V& in) {
                     return ops::prenorm_gated_conv_residual(tp, in[0], in[1], in[2], in[3], in[4], 1e-6, ops::BranchWeights::dense);
                 }, {0, 1, 2, 3, 4}});
    // CORTEX-VI's memory sublayer as one node (d = 3: W_kvq [9, 6], W_out [6, 3]), every input.
    t.push_back({"prenorm_memory_residual", {Shape{2, 5, 6}, Shape{6}, Shape{9, 6}, Shape{6, 3}}, [](Tape<T>& tp, V& in) {
                     return ops::prenorm_memory_residual(tp, in[0], in[1], in[2], in[3], 0.9, 0.35, 1e-6);
                 }, {0, 1, 2, 3}});
    t.push_back({"prenorm_swiglu_residual_dense", {Shape{2, 3, 4}, Shape{4}, Shape{6, 4}, Shape{6, 4}, Shape{4, 6}}, [](Tape<T>& tp, V& in) {
                     return ops::prenorm_ternary_glu_residual(tp, in[0], in[1], in[2], in[3], in[4], 1e-6, ops::BranchWeights::dense);
                 }, {0, 1, 2, 3, 4}});
    // SUPERNOVA II's parallel sub-layer as one node (D = 8, R = 4, 2 scales, 3 slots): x and the float
    // parameters (norm gains, router, slots); the ternary weights' clipped STE is checked against the op
    // chain in tests/variants/supernova2_fused.cpp.
    t.push_back({"parallel_branch_residual",
                 {Shape{2, 3, 8}, Shape{8}, Shape{2, 8}, Shape{2}, Shape{4, 8}, Shape{4, 8}, Shape{8, 4}, Shape{4, 8},
                  Shape{4, 8}, Shape{4}, Shape{8, 4}, Shape{3, 8}, Shape{8, 8}, Shape{8, 8}},
                 [](Tape<T>& tp, V& in) {
                     ops::ParallelBranch<T> p;
                     p.norm = in[1], p.router_w = in[2], p.router_b = in[3];
                     p.proj[0] = in[4], p.proj[1] = in[5], p.scales = 2;
                     p.out_proj = in[6], p.planner = in[7], p.executor = in[8], p.sg_norm = in[9], p.sg_gate = in[10];
                     p.slots = in[11], p.query = in[12], p.slot_out = in[13], p.slot_scale = 0.35;
                     return ops::parallel_branch_residual(tp, in[0], p);
                 }, {0, 1, 2, 3, 9, 11}});
    // SUPERNOVA II's temporal mixer with its norm and residual as one node (L = 5: both shifts cross
    // rows inside a sequence and stop at its start): x and the norm gain; the ternary weights' clipped
    // STE against the op chain in tests/variants/supernova2_fused.cpp.
    t.push_back({"temporal_mix_residual", {Shape{2, 5, 4}, Shape{4}, Shape{4, 4}, Shape{4, 4}, Shape{4, 8}, Shape{4, 4}},
                 [](Tape<T>& tp, V& in) { return ops::temporal_mix_residual(tp, in[0], in[1], in[2], in[3], in[4], in[5], 1e-6); },
                 {0, 1}});
    // Thunderbolt's FFN sub-layer as one node (L = 5: the token shift crosses rows inside a sequence and
    // stops at its start): x, the LayerNorm's weight and bias and the shift's mix logits; the Q1' weights'
    // identity STE against the op chain in tests/variants/thunderbolt_fused.cpp.
    t.push_back({"shift_relu2_residual", {Shape{2, 5, 4}, Shape{4}, Shape{4}, Shape{4}, Shape{6, 4}, Shape{4, 6}},
                 [](Tape<T>& tp, V& in) { return ops::shift_relu2_residual(tp, in[0], in[1], in[2], in[3], in[4], in[5], 1e-5); },
                 {0, 1, 2, 3}});
    // Thunderbolt's token mixer as one node (I = 6 in 2 heads, lower bound 0.3, L = 5): x, the LayerNorm,
    // the mix logits, f_bias and the GroupNorm; the Q1' weights against the op chain as above.
    t.push_back({"shift_recurrence_residual",
                 {Shape{2, 5, 4}, Shape{4}, Shape{4}, Shape{4}, Shape{6, 4}, Shape{6, 4}, Shape{6, 4}, Shape{4, 6}, Shape{6},
                  Shape{6}, Shape{6}},
                 [](Tape<T>& tp, V& in) {
                     ops::RecurrenceMixer<T> p;
                     p.norm_w = in[1], p.norm_b = in[2], p.mix = in[3];
                     p.W_f = in[4], p.W_v = in[5], p.W_o = in[6], p.W_proj = in[7];
                     p.f_bias = in[8], p.gn_w = in[9], p.gn_b = in[10];
                     p.lower_bound = 0.3, p.heads = 2;
                     return ops::shift_recurrence_residual(tp, in[0], p);
                 }, {0, 1, 2, 3, 8, 9, 10}});
    return t;
}

// Scalar objective L = Σ out ⊙ R with fixed random R, so every output element matters.
template <class T>
double objective(const Tensor<T>& out, const std::vector<double>& r) {
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += double(out.data[i]) * r[i];
    return s;
}

struct Inputs {
    std::vector<std::vector<double>> vals;
};

Inputs make_inputs(const std::vector<Shape>& shapes, uint64_t seed) {
    Rng rng(seed);
    Inputs in;
    for (auto& s : shapes) {
        std::vector<double> v(s.numel());
        for (auto& x : v) x = rng.normal(0, 1);
        in.vals.push_back(v);
    }
    return in;
}

// Runs fwd on copies of the inputs with gradients, seeds out.grad = R, returns input gradients and
// the output values.
template <class T>
std::vector<std::vector<double>> analytic(const OpCase<T>& c, const Inputs& in, std::vector<double>& r, uint64_t seed) {
    Tape<T> tape;
    tape.set_retain_grads(true);  // out.grad is seeded by hand
    std::vector<std::vector<T>> data(in.vals.size()), grad(in.vals.size());
    std::vector<Tensor<T>> ts;
    for (size_t k = 0; k < in.vals.size(); ++k) {
        data[k].assign(in.vals[k].begin(), in.vals[k].end());
        grad[k].assign(in.vals[k].size(), T(0));
        ts.emplace_back(data[k].data(), grad[k].data(), c.shapes[k]);
    }
    Tensor<T> out = c.fwd(tape, ts);
    if (r.empty()) {
        Rng rng(seed ^ 0x9e3779b97f4a7c15ull);
        r.resize(out.numel());
        for (auto& x : r) x = rng.normal(0, 1);
    }
    REQUIRE(out.grad != nullptr);
    for (int64_t i = 0; i < out.numel(); ++i) out.grad[i] = T(r[i]);
    tape.run_backward();
    std::vector<std::vector<double>> g;
    for (auto& v : grad) g.emplace_back(v.begin(), v.end());
    return g;
}

double eval_objective(const Fwd<double>& f, const std::vector<Shape>& shapes, std::vector<std::vector<double>>& vals,
                      const std::vector<double>& r) {
    Tape<double> tape;
    NoGradGuard<double> ng(tape);
    std::vector<Tensor<double>> ts;
    for (size_t k = 0; k < vals.size(); ++k) ts.emplace_back(vals[k].data(), nullptr, shapes[k]);
    return objective(f(tape, ts), r);
}

}  // namespace

TEST_CASE("every op's backward matches central finite differences (double) and the float path") {
    auto dtable = op_table<double>();
    auto ftable = op_table<float>();
    REQUIRE(dtable.size() == ftable.size());
    for (size_t ci = 0; ci < dtable.size(); ++ci) {
        const auto& c = dtable[ci];
        CAPTURE(c.name);
        const uint64_t seed = 1000 + ci;
        Inputs in = make_inputs(c.shapes, seed);
        std::vector<double> r;
        auto g = analytic(c, in, r, seed);

        for (int k : c.fd_inputs) {
            CAPTURE(k);
            std::vector<std::vector<double>> vals = in.vals;
            Fwd<double> f = c.fwd;
            if (c.ste_point) {
                c.ste_point(vals, c.shapes, k);
                f = [](Tape<double>& tp, std::vector<Tensor<double>>& x) { return ops::linear(tp, x[0], x[1]); };
            } else if (c.ste_weight && k == 1) {
                if (c.ste_quant) c.ste_quant(in.vals[1].data(), vals[1].data(), int64_t(vals[1].size()));
                else ops::quantize_absmean(in.vals[1].data(), vals[1].data(), int64_t(vals[1].size()));
                f = [](Tape<double>& tp, std::vector<Tensor<double>>& x) { return ops::linear(tp, x[0], x[1]); };
            }
            double max_err = 0, max_ref = 0;
            for (size_t i = 0; i < vals[k].size(); ++i) {
                const double h = 1e-5, x0 = vals[k][i];
                vals[k][i] = x0 + h;
                const double lp = eval_objective(f, c.shapes, vals, r);
                vals[k][i] = x0 - h;
                const double lm = eval_objective(f, c.shapes, vals, r);
                vals[k][i] = x0;
                const double num = (lp - lm) / (2 * h);
                max_err = std::max(max_err, std::abs(num - g[k][i]));
                max_ref = std::max(max_ref, std::abs(num));
            }
            const double rel = max_err / std::max(max_ref, 1e-12);
            CAPTURE(rel);
            CHECK(max_ref > 1e-6);  // the check must be able to fail: gradients are not all zero
            CHECK(rel <= 1e-6);
        }

        // float path against double path, same inputs and seed gradient
        auto gf = analytic(ftable[ci], in, r, seed);
        for (size_t k = 0; k < g.size(); ++k) {
            double num = 0, den = 0;
            for (size_t i = 0; i < g[k].size(); ++i) {
                num += (gf[k][i] - g[k][i]) * (gf[k][i] - g[k][i]);
                den += g[k][i] * g[k][i];
            }
            if (den == 0) continue;
            const double rel = std::sqrt(num / den);
            CAPTURE(k);
            CAPTURE(rel);
            CHECK(rel <= 1e-4);
        }
    }
}
