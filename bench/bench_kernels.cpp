// Ternary matvec (generation: one token, M = 1) on a 2048² matrix and on the Bolt layer shapes, for
// every ISA path of both families, against Eigen's float GEMV on the dequantised weights. The counter
// "weights/s" is rows · cols per wall-clock second (UseRealTime, so the all-threads runs count right).
// Each benchmark runs with 1 thread and with all threads.
//   bench_kernels --benchmark_filter=2048
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/tensor.hpp"
#include "flashlm/kernels/dense.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"

using namespace flashlm;
using namespace flashlm::kernels;

namespace {

struct Problem {
    int64_t rows, cols;
    PackedTernary W;
    std::vector<float> wq, x, y;
    std::vector<int8_t> xq;
    float xs = 0;

    Problem(int64_t in, int64_t out) : rows(out), cols(in) {
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> w(static_cast<size_t>(rows * cols));
        for (auto& v : w) v = d(rng);
        W = pack_ternary(w.data(), rows, cols);
        wq.resize(w.size());
        unpack_ternary(W, wq.data());
        x.resize(size_t(cols));
        for (auto& v : x) v = d(rng);
        y.resize(size_t(rows));
        xq.resize(size_t(cols));
        quantize_activations_int8(x.data(), 1, cols, xq.data(), &xs);
    }
};

template <class F>
void run(benchmark::State& state, const Problem& p, int threads, F&& f) {
    set_threads(threads);
    for (auto _ : state) {
        f();
        benchmark::ClobberMemory();
    }
    state.counters["weights/s"] = benchmark::Counter(double(p.rows * p.cols), benchmark::Counter::kIsIterationInvariantRate);
    set_isa("auto");
}

template <class F>
void add(const std::string& name, F&& f) {
    benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f))->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    const int all = max_threads();
    std::vector<int> thread_counts{1};
    if (all > 1) thread_counts.push_back(all);
    // in -> out, as the layers name them; the matrix is out × in.
    const std::pair<int64_t, int64_t> shapes[] = {{2048, 2048}, {192, 384}, {192, 512}, {512, 192}, {384, 1024}};
    std::vector<std::unique_ptr<Problem>> problems;  // the benchmarks hold raw pointers into these
    for (auto [in, out] : shapes) {
        Problem* p = problems.emplace_back(std::make_unique<Problem>(in, out)).get();
        const std::string shape = std::to_string(in) + "->" + std::to_string(out);
        for (int t : thread_counts) {
            const std::string suffix = "/" + shape + "/threads:" + std::to_string(t);
            add("eigen_f32_gemv" + suffix, [p, t](benchmark::State& st) {
                // Eigen's GEMV is single-threaded; with t > 1 the rows are split over OpenMP like ours.
                run(st, *p, t, [p, t] {
                    const int64_t chunk = (p->rows + t - 1) / t;
#pragma omp parallel for num_threads(t) if (t > 1)
                    for (int i = 0; i < t; ++i) {
                        const int64_t r0 = std::min(p->rows, i * chunk), n = std::min(p->rows, r0 + chunk) - r0;
                        VecMap<float>(p->y.data() + r0, n).noalias() =
                            MatMap<float>(p->wq.data() + r0 * p->cols, n, p->cols) * VecMap<float>(p->x.data(), p->cols);
                    }
                });
            });
            for (const auto& isa : available_isas()) {
                add("ternary_f32_" + isa + suffix, [p, t, isa](benchmark::State& st) {
                    set_isa(isa);
                    run(st, *p, t, [p] { ternary_matvec(p->W, p->x.data(), p->y.data()); });
                });
                add("ternary_int8_" + isa + suffix, [p, t, isa](benchmark::State& st) {
                    set_isa(isa);
                    run(st, *p, t, [p] { ternary_matvec_int8(p->W, p->xq.data(), p->xs, p->y.data()); });
                });
            }
            // What a layer pays per token on the int8 path: quantising x, then the best kernel.
            add("ternary_int8_with_quant_auto" + suffix, [p, t](benchmark::State& st) {
                run(st, *p, t, [p] { ternary_matvec_int8(p->W, p->x.data(), p->y.data()); });
            });
        }
    }
    // The tied output head of generation (Bolt: 10000 × 192 floats, 7.7 MB, streamed every token):
    // Eigen's GEMV (what nn::dense_matvec ran before), dense_f32_matvec and the int8 head per path.
    struct Head {
        int64_t rows = 10000, cols = 192;
        std::vector<float> w, x, y;
        PackedInt8Rows q;
        std::vector<int8_t> xq;
        float xs = 0;
    };
    static Head head;
    {
        std::mt19937 rng(7);
        std::normal_distribution<float> d(0.0f, 0.02f);
        head.w.resize(size_t(head.rows * head.cols));
        for (auto& v : head.w) v = d(rng);
        head.x.resize(size_t(head.cols));
        for (auto& v : head.x) v = d(rng) * 50.0f;
        head.y.resize(size_t(head.rows));
        head.q = pack_int8_rows(head.w.data(), head.rows, head.cols);
        head.xq.resize(size_t(head.q.cols_padded));
        float xs = 0;
        quantize_activations_int8(head.x.data(), 1, head.cols, head.xq.data(), &xs);
        head.xs = xs;
    }
    Problem* hp = problems.emplace_back(std::make_unique<Problem>(1, 1)).get();  // only for the counter
    hp->rows = head.rows, hp->cols = head.cols;
    for (int t : thread_counts) {
        const std::string suffix = "/192->10000/threads:" + std::to_string(t);
        add("head_eigen_f32_gemv" + suffix, [hp, t](benchmark::State& st) {
            run(st, *hp, t, [] {
                VecMap<float>(head.y.data(), head.rows).noalias() =
                    MatMap<float>(head.w.data(), head.rows, head.cols) * VecMap<float>(head.x.data(), head.cols);
            });
        });
        for (const auto& isa : available_isas()) {
            add("head_dense_f32_" + isa + suffix, [hp, t, isa](benchmark::State& st) {
                set_isa(isa);
                run(st, *hp, t, [] { dense_f32_matvec(head.w.data(), head.rows, head.cols, head.x.data(), head.y.data()); });
            });
            add("head_int8_" + isa + suffix, [hp, t, isa](benchmark::State& st) {
                set_isa(isa);
                run(st, *hp, t, [] { int8_rows_matvec(head.q, head.xq.data(), head.xs, head.y.data()); });
            });
        }
        add("head_int8_with_quant_auto" + suffix, [hp, t](benchmark::State& st) {
            run(st, *hp, t, [] { int8_rows_matvec(head.q, head.x.data(), head.y.data(), head.xq.data()); });
        });
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
