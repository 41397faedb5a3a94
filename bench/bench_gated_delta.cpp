// Gated delta rule at the small bolt-deltanet shape (4 heads, dk 36, dv 72), batch 16: the sequential
// token loop vs the chunkwise-parallel form (chunk 64), forward alone and forward + the shared BPTT
// backward, at T = 256 and 1024 (chunk 64; the forward also at chunk 32). Items = tokens (B·T). Threads follow OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/ops/gated_delta_rule.hpp>
#include <flashlm/ops/log_sigmoid.hpp>

using namespace flashlm;

namespace {

struct Inputs {
    int64_t B = 16, L, H = 4, dk = 36, dv = 72;
    std::vector<float> q, k, v, g, beta, gq, gk, gv, gg, gb;
    explicit Inputs(int64_t len) : L(len) {
        Rng rng(1);
        q.resize(size_t(B * L * H * dk)), k.resize(q.size()), v.resize(size_t(B * L * H * dv));
        g.resize(size_t(B * L * H)), beta.resize(g.size());
        for (auto* x : {&q, &k})
            for (int64_t r = 0; r < B * L * H; ++r) {
                float n = 0;
                for (int64_t i = 0; i < dk; ++i) n += ((*x)[size_t(r * dk + i)] = float(rng.normal(0, 1))) * (*x)[size_t(r * dk + i)];
                for (int64_t i = 0; i < dk; ++i) (*x)[size_t(r * dk + i)] /= std::sqrt(n);
            }
        for (auto& x : v) x = float(rng.normal(0, 1));
        for (size_t i = 0; i < g.size(); ++i) {
            g[i] = ops::log_sigmoid_scalar(float(rng.normal(0, 3))) / 16;
            beta[i] = ops::sigmoid_scalar(float(rng.normal(0, 2)));
        }
        gq.assign(q.size(), 0), gk.assign(k.size(), 0), gv.assign(v.size(), 0), gg.assign(g.size(), 0), gb.assign(g.size(), 0);
    }
};

void run(benchmark::State& state, ops::DeltaForm form, bool backward, int64_t chunk = 64) {
    Inputs in(state.range(0));
    Tape<float> tape;
    const auto bt = [&](std::vector<float>& d, std::vector<float>& gr, Shape s) {
        return Tensor<float>(d.data(), backward ? gr.data() : nullptr, s);
    };
    const int64_t B = in.B, L = in.L, H = in.H;
    for (auto _ : state) {
        tape.reset();
        Tensor<float> o = ops::gated_delta_rule(tape, bt(in.q, in.gq, Shape{B, L, H * in.dk}), bt(in.k, in.gk, Shape{B, L, H * in.dk}),
                                                bt(in.v, in.gv, Shape{B, L, H * in.dv}), bt(in.g, in.gg, Shape{B, L, H}),
                                                bt(in.beta, in.gb, Shape{B, L, H}), H, false, chunk, form);
        if (backward) {
            std::fill(o.grad, o.grad + o.numel(), 1.0f);
            tape.run_backward();
        }
        benchmark::DoNotOptimize(o.data);
    }
    state.SetItemsProcessed(state.iterations() * B * L);
}

}  // namespace

BENCHMARK_CAPTURE(run, sequential_fwd, ops::DeltaForm::sequential, false)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, chunked_fwd, ops::DeltaForm::chunked, false)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, chunked32_fwd, ops::DeltaForm::chunked, false, 32)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, sequential_fwd_bwd, ops::DeltaForm::sequential, true)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(run, chunked_fwd_bwd, ops::DeltaForm::chunked, true)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
