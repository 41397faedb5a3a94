#pragma once
// `bench_train_step_cli --memory-report`: where a training step's resident memory goes, printed to
// stderr after the timed steps. The tape arena is split by op: a node's share is what the arena handed
// out between the previous node's record and its own (its saved buffers and its output), so the lines
// sum to the arena's use after the forward. Activation gradients live apart, planned by lifetime
// (autograd/grad_plan.hpp): per op the size its outputs' gradients would take unplanned, then the peak
// the plan needed.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "examples/registry.hpp"
#include "flashlm/ops/decayed_memory.hpp"
#include "flashlm/ops/prenorm_memory_residual.hpp"
#include "flashlm/ops/prenorm_residual.hpp"

namespace flashlm::bench {

inline double resident_mib() {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "VmRSS:", 6) == 0) kb = std::strtod(line + 6, nullptr);
    std::fclose(f);
    return kb / 1024.0;
}

inline const char* op_name(void (*bw)(Node<float>&)) {
    using N = Node<float>;
    static const std::pair<void (*)(N&), const char*> k_names[] = {
        {&ops::embedding_backward<float>, "embedding"},
        {&ops::rmsnorm_backward<float>, "rmsnorm"},
        {&ops::bitlinear_backward<float>, "bitlinear"},
        {&ops::linear_backward<float>, "linear"},
        {&ops::gated_causal_conv_backward<float>, "gated_causal_conv"},
        {&ops::swiglu_backward<float>, "swiglu"},
        {&ops::add_backward<float>, "add"},
        {&ops::tied_head_ce_backward<float>, "tied_head_cross_entropy"},
        {&ops::recompute_backward<float>, "recompute"},
        {&ops::prenorm_gated_conv_residual_backward<float>, "prenorm_gated_conv_residual"},
        {&ops::prenorm_ternary_glu_residual_backward<float>, "prenorm_ternary_glu_residual"},
        {&ops::decayed_memory_backward<float>, "decayed_memory"},
        {&ops::prenorm_memory_residual_backward<float>, "prenorm_memory_residual"},
        {&ops::bitlinear_median_backward<float>, "bitlinear_median"},
        {&ops::time_shift_backward<float>, "time_shift"},
        {&ops::concat_cols_backward<float>, "concat_cols"},
        {&ops::sigmoid_backward<float>, "sigmoid"},
        {&ops::lerp_backward<float>, "lerp"},
        {&ops::softmax_backward<float>, "softmax"},
        {&ops::linear_bias_backward<float>, "linear_bias"},
        {&ops::mul_col_backward<float>, "mul_col"},
        {&ops::mul_backward<float>, "mul"},
        {&ops::tanh_backward<float>, "tanh"},
        {&ops::slot_attention_backward<float>, "slot_attention"},
        {&ops::residual_add3_backward<float>, "residual_add3"},
        {&ops::route_topk_backward<float>, "route_topk"},
        {&ops::balance_loss_backward<float>, "balance_loss"},
        {&ops::expert_glu_median_backward<float>, "expert_glu_median"},
        {&ops::scatter_rows_weighted_backward<float>, "scatter_rows_weighted"},
        {&ops::cross_entropy_backward<float>, "cross_entropy"},
        {&ops::parallel_branch_residual_backward<float>, "parallel_branch_residual"},
        {&ops::temporal_mix_residual_backward<float>, "temporal_mix_residual"},
        {&ops::shift_recurrence_residual_backward<float>, "shift_recurrence_residual"},
        {&ops::shift_relu2_residual_backward<float>, "shift_relu2_residual"},
        {&ops::group_norm_backward<float>, "group_norm"},
        {&ops::token_shift_backward<float>, "token_shift"},
        {&ops::gated_recurrence_backward<float>, "gated_recurrence"},
        {&ops::relu_squared_backward<float>, "relu_squared"},
        {&ops::bitlinear_rows_backward<float>, "bitlinear_rows"},
        {&ops::layernorm_backward<float>, "layernorm"},
        {&ops::causal_attention_backward<float>, "causal_attention"},
        {&ops::slice_cols_backward<float>, "slice_cols"},
        {&ops::sub_scaled_backward<float>, "sub_scaled"},
        {&ops::differential_attention_backward<float>, "differential_attention"},
        {&ops::silu_backward<float>, "silu"},
        {&ops::expert_silu_backward<float>, "expert_silu"},
        {&ops::routed_expert_silu_into_backward<float>, "routed_expert_silu_into"},
        {&ops::top1_softmax_gate_backward<float>, "top1_softmax_gate"},
        {&ops::gather_rows_backward<float>, "gather_rows"},
        {&ops::scatter_add_rows_backward<float>, "scatter_add_rows"},
        {&ops::scatter_add_rows_into_backward<float>, "scatter_add_rows_into"},
    };
    for (const auto& [f, name] : k_names)
        if (f == bw) return name;
    return "other";
}

// Call after a step (the tape still holds its graph: reset() runs at the start of the next step).
inline void print_memory_report(const Tape<float>& tape, const ParamStore<float>& params, double rss_before_model) {
    constexpr double mib = 1.0 / (1024.0 * 1024.0);
    const auto& nodes = tape.nodes();
    struct Row {
        std::size_t count = 0, total = 0, grad = 0;
    };
    std::map<std::string, Row> rows;
    std::size_t prev = 0;
    for (const auto& n : nodes) {
        Row& r = rows[op_name(n.backward)];
        r.count += 1;
        r.total += n.arena_mark - prev;
        prev = n.arena_mark;
    }
    // An output gradient is the op's own unless it shares an input's (the fused residual ops).
    for (const auto& n : nodes) {
        if (!n.out.grad) continue;
        bool shared = false;
        for (const auto& t : n.in) shared = shared || (t.grad && t.grad == n.out.grad);
        if (!shared) rows[op_name(n.backward)].grad += std::size_t(n.out.numel());
    }
    const double fb = sizeof(float) * mib;
    std::fprintf(stderr, "memory report (MiB; arena shares by op: allocations up to and including its record)\n");
    std::fprintf(stderr, "  %-30s %6s %10s %12s\n", "op", "nodes", "arena", "grads unplanned");
    for (const auto& [name, r] : rows)
        std::fprintf(stderr, "  %-30s %6zu %10.1f %12.1f\n", name.c_str(), r.count, double(r.total) * fb, double(r.grad) * fb);
    std::fprintf(stderr, "  %-30s %6s %10.1f\n", "after the last node", "", double(tape.arena().used() - prev) * fb);
    std::fprintf(stderr, "  arena: used %.1f, peak %.1f, capacity %.1f (untouched capacity is not resident)\n",
                 double(tape.arena().used()) * fb, double(tape.arena().peak()) * fb, double(tape.arena().capacity()) * fb);
    std::fprintf(stderr, "  activation gradients planned by lifetime: peak %.1f of %.1f unplanned (held %.1f)\n",
                 double(tape.grad_peak()) * fb, double(tape.grad_unplanned()) * fb, double(tape.grad_capacity()) * fb);
    std::fprintf(stderr, "  tape workspace (backward recomputation, inner gradients, the head's packed E): %.1f\n", double(tape.workspace_size()) * fb);
    const double p = double(params.flat_size()) * fb;
    std::fprintf(stderr, "  parameters %.1f + gradients %.1f + AdamW moments %.1f = %.1f\n", p, p, 2 * p, 4 * p);
    std::fprintf(stderr, "  resident before the model was built: %.1f; now: %.1f\n", rss_before_model, resident_mib());
}

}  // namespace flashlm::bench
