// One full training step of Bolt small (b16 x 256) next to the two numbers that say how good it is on
// this machine: Eigen's own float GEMM on exactly the step's matmul shapes, and a measured FP32 FMA
// peak, all measured in the same run (the machine is shared, so only same-run ratios mean anything).
//   bench_train_step --benchmark_filter=bolt
// bench/run_train_step.sh runs everything and prints the summary table.
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the deliberate `__Y = __Y` of
// _mm512_undefined_ps) once Eigen's GEBP kernels are inlined into this file's direct Eigen products; the
// pragma must precede the includes because the diagnostic is tied to the header locations.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/fma_peak.hpp"

#include "examples/bolt.hpp"

using namespace flashlm;

namespace {

constexpr int64_t k_batch = 16, k_seq = 256, k_rows = k_batch * k_seq;

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;  // Linux reports KiB
}

void use_threads(int threads) {
    omp_set_num_threads(threads);
    Eigen::setNbThreads(threads);
}

// Matmul FLOPs of one training step, counted analytically. Per token, the forward runs in each block
// mixer.up D->2D, mixer.down D->D, ffn.W_gate and ffn.W_up D->H, ffn.W_down H->D, and once the tied head
// D->V: fwd = 2 * B*T * (n_blocks * (2D*D + D*D + 2*H*D + H*D) + V*D). Backward forms dX and dW of every
// one of them (the fused head CE forms its two inside the forward), each as costly as the forward
// product, so a step is 3 * fwd. Norms, the depthwise conv, elementwise ops and AdamW are left out: they
// add under 0.1% of that count, though not of the time.
double step_flops(const examples::BoltConfig& c, int64_t tokens) {
    const int64_t D = c.dim, H = c.glu_hidden;
    const int64_t macs = c.n_blocks * (2 * D * D + D * D + 2 * H * D + H * D) + c.vocab_size * D;
    return 3.0 * 2.0 * double(tokens) * double(macs);
}

// The state of a training run, kept across the timed iterations like the trainer keeps it.
struct Rig {
    examples::BoltConfig cfg = examples::BoltConfig::small();
    examples::Bolt<float> model{"bolt", cfg};
    optim::AdamW<float> adam{model.params(), optim::AdamWConfig{0.9, 0.95, 1e-8, 0.01}};
    Tape<float> tape;
    std::vector<int32_t> ids, targets;

    Rig() : ids(size_t(k_rows)), targets(size_t(k_rows)) {
        Rng rng(42);
        model.init(rng);
        std::mt19937 gen(7);
        std::uniform_int_distribution<int32_t> tok(0, int32_t(cfg.vocab_size) - 1);
        for (auto& t : ids) t = tok(gen);
        for (auto& t : targets) t = tok(gen);
    }
    float step() {
        model.params().zero_grad();
        tape.reset();
        Tensor<float> loss = model.loss(tape, ids.data(), targets.data(), k_batch, k_seq);
        tape.backward(loss);
        optim::clip_grad_norm(model.params(), 1.0);
        adam.step(4e-3);
        return loss.data[0];
    }
};

// One rig for every run of the benchmark: Google Benchmark calls the function more than once, and a
// second 1.2 GB rig would land partly in heap that glibc kept from the first (its mmap threshold rises
// after large frees), doubling peak RSS.
Rig& shared_rig() {
    static Rig rig;
    return rig;
}

void bm_bolt_train_step(benchmark::State& state) {
    use_threads(int(state.range(0)));
    Rig& rig = shared_rig();
    // Two steps: the first sizes the arena (and this thread count's GEMM workspaces); the second is
    // already the steady state the trainer runs in (core/arena.hpp), the other is a margin.
    rig.step();
    rig.step();
    for (auto _ : state) benchmark::DoNotOptimize(rig.step());
    const double steps = double(state.iterations());
    state.SetItemsProcessed(state.iterations() * k_rows);
    state.counters["tok/s"] = benchmark::Counter(steps * double(k_rows), benchmark::Counter::kIsRate);
    state.counters["GFLOP/s"] = benchmark::Counter(steps * step_flops(rig.cfg, k_rows) * 1e-9, benchmark::Counter::kIsRate);
    state.counters["step_flops"] = step_flops(rig.cfg, k_rows);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

// ---- Eigen's GEMM on the step's shapes -------------------------------------------------------------
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMat>;

enum class Form { fwd, dx, dw };

struct GemmShape {
    int64_t k, n, per_step;  // per_step: how many layers of one Bolt-small step have this shape
};
// (K, N) of every linear layer: mixer.up, mixer.down, ffn.W_gate + W_up, ffn.W_down, tied head.
const GemmShape k_shapes[] = {{192, 384, 6}, {192, 192, 6}, {192, 512, 12}, {512, 192, 6}, {192, 10000, 1}};

void bm_eigen_gemm(benchmark::State& state, GemmShape s, Form form) {
    use_threads(int(state.range(0)));
    const int64_t M = k_rows, K = s.k, N = s.n;
    std::vector<float> x(size_t(M * K)), w(size_t(N * K)), y(size_t(M * N));
    std::mt19937 gen(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto* v : {&x, &w, &y})
        for (auto& e : *v) e = d(gen);
    Map X(x.data(), M, K), W(w.data(), N, K), Y(y.data(), M, N);
    for (auto _ : state) {
        switch (form) {
            case Form::fwd: Y.noalias() = X * W.transpose(); break;  // y = x W^T
            case Form::dx: X.noalias() = Y * W; break;                // dx = dy W
            case Form::dw: W.noalias() = Y.transpose() * X; break;    // dW = dy^T x
        }
        benchmark::ClobberMemory();
    }
    const double flops = 2.0 * double(M) * double(N) * double(K);
    state.counters["GFLOP/s"] = benchmark::Counter(double(state.iterations()) * flops * 1e-9, benchmark::Counter::kIsRate);
    // Lets the summary weight each shape by its share of a step's FLOPs.
    state.counters["step_flops"] = flops * double(s.per_step);
}

void bm_fma_peak(benchmark::State& state) {
    const int threads = int(state.range(0));
    constexpr int64_t iters = 1 << 20;
    float sink[256] = {};
    for (auto _ : state) {
#pragma omp parallel num_threads(threads)
        sink[omp_get_thread_num() & 255] += bench::fma_chains(iters);
        benchmark::DoNotOptimize(sink);
    }
    const double flops = double(iters) * bench::k_acc * bench::k_lanes * 2.0 * threads;
    state.counters["GFLOP/s"] = benchmark::Counter(double(state.iterations()) * flops * 1e-9, benchmark::Counter::kIsRate);
}

const char* form_name(Form f) { return f == Form::fwd ? "fwd" : f == Form::dx ? "dX" : "dW"; }

}  // namespace

int main(int argc, char** argv) {
    // OpenMP threads per benchmark, not Google Benchmark's ->Threads() (that would run copies side by
    // side). Real time, because the main thread's CPU time misses the worker threads.
    // The Bolt step goes first so its peak RSS is not the Eigen benchmarks' larger buffers.
    // A step takes about a second, so it gets its own minimum time whatever --benchmark_min_time says.
    benchmark::RegisterBenchmark("BM_bolt_train_step", bm_bolt_train_step)
        ->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->MinTime(3.0)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_fma_peak", bm_fma_peak)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
    for (const GemmShape& s : k_shapes)
        for (Form f : {Form::fwd, Form::dx, Form::dw}) {
            const std::string name = std::string("BM_eigen_gemm/") + form_name(f) + "_K" + std::to_string(s.k) + "_N" +
                                     std::to_string(s.n);
            benchmark::RegisterBenchmark(name.c_str(), bm_eigen_gemm, s, f)
                ->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
        }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
