// The v6.1 C engine's kernels at supernova2-engine's shapes (M = 4096 rows = 16 sequences × 256, layers
// 192 -> 384 and 384 -> 192): the popcount GEMM on every path this CPU has (ternary activations ×
// ternary weights, operands already packed), the same with the activation requantize the layer pays,
// and flashlm's Eigen float GEMM (kernels::gemm_nt) on the dequantised operands, which is what a float
// ternary layer runs. Backward: the transpose scatter-add dW = Σ x_iᵀ G_i vs Eigen's gemm_tn.
// Each runs with 1 thread and with all; the end prints same-run ratios (timings on a shared machine
// are noisy, ratios less so).
//   bench_popcount --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/popcount_gemm.hpp"

using namespace flashlm;
using namespace flashlm::kernels;

namespace {

struct Problem {
    int64_t M, K, N, KB;
    std::vector<float> x, xq, w, wq, g, dw;
    std::vector<uint8_t> xv, xs, wv, ws;
    OwnedPopcountPanel panel;
    std::vector<int32_t> c;
    std::vector<float> y, mean;

    Problem(int64_t m, int64_t k, int64_t n) : M(m), K(k), N(n), KB(bitplane_bytes(k)) {
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 1.0f);
        x.resize(size_t(M * K)), w.resize(size_t(N * K)), g.resize(size_t(M * N));
        for (auto& v : x) v = d(rng);
        for (auto& v : w) v = d(rng);
        for (auto& v : g) v = d(rng);
        xv.resize(size_t(M * KB)), xs.resize(xv.size()), wv.resize(size_t(N * KB)), ws.resize(wv.size());
        mean.resize(size_t(M));
        requantize_rows(x.data(), M, K, xv.data(), xs.data(), mean.data());
        const float sw = quantize_weight_planes(w.data(), N, K, wv.data(), ws.data());
        panel = OwnedPopcountPanel(wv.data(), ws.data(), N, KB);
        xq.resize(x.size()), wq.resize(w.size());
        unpack_bitplanes(xv.data(), xs.data(), M, K, xq.data());
        unpack_bitplanes(wv.data(), ws.data(), N, K, wq.data());
        for (auto& v : wq) v *= sw;
        c.resize(size_t(M * N)), y.resize(size_t(M * N)), dw.resize(size_t(K * N));
    }
};

// benchmark name (without the "/real_time" suffix) -> {real, CPU} time per iteration (ns)
std::map<std::string, std::pair<double, double>> g_times;

class Recorder : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& r : runs)
            if (!r.error_occurred) {
                std::string name = r.benchmark_name();
                if (auto p = name.rfind("/real_time"); p != std::string::npos) name.erase(p);
                g_times[name] = {r.GetAdjustedRealTime(), r.GetAdjustedCPUTime()};
            }
        ConsoleReporter::ReportRuns(runs);
    }
};

template <class F>
void add(const std::string& name, const Problem* p, int threads, F f) {
    benchmark::RegisterBenchmark(name.c_str(), [p, threads, f](benchmark::State& st) {
        set_threads(threads);
        for (auto _ : st) {
            f();
            benchmark::ClobberMemory();
        }
        st.counters["MACs/s"] = benchmark::Counter(double(p->M * p->K * p->N), benchmark::Counter::kIsIterationInvariantRate);
    })->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    const int all = max_threads();
    std::vector<int> thread_counts{1};
    if (all > 1) thread_counts.push_back(all);
    const int64_t M = 4096;
    std::vector<std::unique_ptr<Problem>> problems;
    std::vector<std::string> suffixes;
    for (auto [in, out] : {std::pair<int64_t, int64_t>{192, 384}, {384, 192}}) {
        const Problem* p = problems.emplace_back(std::make_unique<Problem>(M, in, out)).get();
        auto* mp = const_cast<Problem*>(p);
        for (int t : thread_counts) {
            const std::string sfx = "/M4096/" + std::to_string(in) + "->" + std::to_string(out) + "/threads:" + std::to_string(t);
            suffixes.push_back(sfx);
            for (PopcountPath path : available_popcount_paths())
                add("popcount_" + popcount_path_name(path) + sfx, p, t, [mp, path] {
                    popcount_gemm(path, mp->xv.data(), mp->xs.data(), mp->M, mp->panel.view, mp->c.data(), mp->N);
                });
            add("popcount_auto_with_requant" + sfx, p, t, [mp] {
                requantize_rows(mp->x.data(), mp->M, mp->K, mp->xv.data(), mp->xs.data(), mp->mean.data());
                popcount_gemm(mp->xv.data(), mp->xs.data(), mp->M, mp->panel.view, mp->c.data(), mp->N);
            });
            add("eigen_f32_gemm" + sfx, p, t, [mp] { gemm_nt(mp->M, mp->N, mp->K, mp->xq.data(), mp->wq.data(), mp->y.data(), false); });
            add("scatter_add_dW" + sfx, p, t, [mp] {
                std::fill(mp->dw.begin(), mp->dw.end(), 0.0f);
                ternary_transpose_matmul(mp->xv.data(), mp->xs.data(), mp->g.data(), mp->M, mp->K, mp->N, mp->dw.data());
            });
            add("eigen_f32_gemm_tn_dW" + sfx, p, t, [mp] {
                // dW[K, N] = Xᵀ G, the float form of the same product
                gemm_tn(mp->K, mp->N, mp->M, mp->xq.data(), mp->g.data(), mp->dw.data(), false);
            });
        }
    }
    Recorder rec;
    benchmark::RunSpecifiedBenchmarks(&rec);
    // On a loaded machine the main thread's CPU time is the steadier number for the 1-thread runs.
    std::printf("\nsame-run ratios (named run's time / best popcount path's time; > 1 = popcount faster), real | cpu:\n");
    for (const auto& sfx : suffixes) {
        const std::string best = "popcount_" + popcount_path_name(available_popcount_paths().back());
        for (int cpu = 0; cpu < 2; ++cpu) {
            auto at = [&](const std::string& n) {
                auto it = g_times.find(n + sfx);
                return it == g_times.end() ? 0.0 : (cpu ? it->second.second : it->second.first);
            };
            const double b = at(best);
            if (b <= 0) continue;
            std::printf("%s %s: %s %.0f us | scalar %.2fx | avx2 %.2fx | eigen_f32_gemm %.2fx | with requant %.2fx | "
                        "dW: scatter_add / eigen_gemm_tn %.2fx\n",
                        sfx.c_str(), cpu ? "cpu " : "real", best.c_str(), b / 1e3, at("popcount_scalar") / b,
                        at("popcount_avx2") / b, at("eigen_f32_gemm") / b, at("popcount_auto_with_requant") / b,
                        at("eigen_f32_gemm_tn_dW") > 0 ? at("scatter_add_dW") / at("eigen_f32_gemm_tn_dW") : 0.0);
        }
    }
    benchmark::Shutdown();
    return 0;
}
