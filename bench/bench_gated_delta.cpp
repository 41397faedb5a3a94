// Gated delta rule at the bolt-deltanet head shapes, batch 16: the sequential reference (token loop
// forward, BPTT backward) vs the chunkwise-parallel form (WY/UT transform, chunkwise backward),
// forward alone and forward + backward, at T = 256 and 1024 (GDN_BLOCK=n sets the chunked form's WY
// block, default 16; checkpoints every 64 tokens in both forms). small = 4 heads of dk 36 × dv 72,
// large = 6 heads of 48 × 96. The four variants of one shape run back to back, and the end of the run
// prints sequential / chunked wall- and CPU-time ratios from this same run. Items = tokens (B·T). Threads follow
// OMP_NUM_THREADS.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <flashlm/flashlm.hpp>
#include <flashlm/ops/gated_delta_rule.hpp>
#include <flashlm/ops/log_sigmoid.hpp>

using namespace flashlm;

namespace {

struct Inputs {
    int64_t B = 16, L, H, dk, dv;
    std::vector<float> q, k, v, g, beta, gq, gk, gv, gg, gb;
    Inputs(int64_t len, int64_t heads, int64_t hk, int64_t hv) : L(len), H(heads), dk(hk), dv(hv) {
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

// args: T, heads, dk, dv
void run(benchmark::State& state, ops::DeltaForm form, bool backward) {
    Inputs in(state.range(0), state.range(1), state.range(2), state.range(3));
    Tape<float> tape;
    tape.set_retain_grads(true);  // output gradients are seeded by hand
    const auto bt = [&](std::vector<float>& d, std::vector<float>& gr, Shape s) {
        return Tensor<float>(d.data(), backward ? gr.data() : nullptr, s);
    };
    const int64_t B = in.B, L = in.L, H = in.H;
    for (auto _ : state) {
        tape.reset();
        Tensor<float> o = ops::gated_delta_rule(tape, bt(in.q, in.gq, Shape{B, L, H * in.dk}), bt(in.k, in.gk, Shape{B, L, H * in.dk}),
                                                bt(in.v, in.gv, Shape{B, L, H * in.dv}), bt(in.g, in.gg, Shape{B, L, H}),
                                                bt(in.beta, in.gb, Shape{B, L, H}), H, false, 64, form, std::getenv("GDN_BLOCK") ? std::atoi(std::getenv("GDN_BLOCK")) : 16);
        if (backward) {
            std::fill(o.grad, o.grad + o.numel(), 1.0f);
            tape.run_backward();
        }
        benchmark::DoNotOptimize(o.data);
    }
    state.SetItemsProcessed(state.iterations() * B * L);
}

// Keeps each run's wall time per iteration so main can print the same-run ratios.
class RatioReporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, std::pair<double, double>> ms;  // wall, CPU of the calling thread
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& r : runs) ms[r.benchmark_name()] = {r.GetAdjustedRealTime(), r.GetAdjustedCPUTime()};
        ConsoleReporter::ReportRuns(runs);
    }
};

const std::pair<const char*, std::vector<int64_t>> kShapes[] = {{"small", {4, 36, 72}}, {"large", {6, 48, 96}}};

}  // namespace

int main(int argc, char** argv) {
    for (const auto& [name, s] : kShapes)
        for (int64_t T : {256, 1024})
            for (bool bwd : {false, true})
                for (auto form : {ops::DeltaForm::sequential, ops::DeltaForm::chunked}) {
                    const std::string id = std::string(name) + (form == ops::DeltaForm::chunked ? "/chunked" : "/sequential") +
                                           (bwd ? "_fwd_bwd" : "_fwd");
                    benchmark::RegisterBenchmark(id.c_str(), run, form, bwd)
                        ->Args({T, s[0], s[1], s[2]})
                        ->ArgNames({"T", "H", "dk", "dv"})
                        ->Unit(benchmark::kMillisecond);
                }
    benchmark::Initialize(&argc, argv);
    RatioReporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    // CPU time is the calling thread's only: the fair measure with OMP_NUM_THREADS=1 on a busy machine,
    // meaningless with more threads (use wall there).
    std::printf("\nsequential / chunked, same run (B 16; ms per call):\n");
    std::printf("%-6s %5s  %-8s %9s %9s %7s   %9s %9s %7s\n", "shape", "T", "pass", "seq wall", "chk wall", "ratio",
                "seq cpu", "chk cpu", "ratio");
    for (const auto& [name, s] : kShapes)
        for (int64_t T : {256, 1024})
            for (const char* pass : {"fwd", "fwd_bwd"}) {
                const std::string tail = std::string("_") + pass + "/T:" + std::to_string(T) + "/H:" + std::to_string(s[0]) +
                                         "/dk:" + std::to_string(s[1]) + "/dv:" + std::to_string(s[2]);
                const auto a = rep.ms.find(std::string(name) + "/sequential" + tail);
                const auto b = rep.ms.find(std::string(name) + "/chunked" + tail);
                if (a == rep.ms.end() || b == rep.ms.end()) continue;  // filtered out
                const auto [aw, ac] = a->second;
                const auto [bw, bc] = b->second;
                std::printf("%-6s %5lld  %-8s %9.2f %9.2f %6.2fx   %9.2f %9.2f %6.2fx\n", name, static_cast<long long>(T), pass,
                            aw, bw, aw / bw, ac, bc, ac / bc);
            }
    benchmark::Shutdown();
    return 0;
}
