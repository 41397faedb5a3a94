// Ternary matvec (generation: one token, M = 1) on square 2048² / 4096² matrices, 1024 -> 4096 and the
// Bolt layer shapes, for every ISA path of both families, against Eigen's float GEMV on the dequantised
// weights, in two cases:
//   hot   the same matrix every call: it stays in L2 (or L3 when it does not fit), the matvec's best case;
//   dram  every call takes the next of enough copies of the matrix to exceed the last-level cache
//         (each representation, float or packed, has its own copies), so each call streams it from DRAM,
//         as a model bigger than the cache does during generation.
// Counters: "weights/s" = rows · cols per second; in the dram case also "read/s" (bytes of the
// representation streamed per second). Each runs with 1 thread and all. At the end a summary table per
// thread count gives G weights/s of Eigen, the scalar and the best path of each family, their ratios, and
// for the dram case the read rate as a % of the machine's read bandwidth, measured in the same run: a
// vectorised sum over a buffer of the dram footprint, at start-up and again before each set of copies is
// built, the best of all those passes (a busy machine only ever makes a pass slower). Clocks: 1-thread runs use the thread's CPU time (on a
// shared machine a descheduled thread would otherwise count as slow memory; stalls on memory still
// count), all-threads runs wall-clock time (UseRealTime), the bandwidth baseline the same per count.
//   bench_kernels --benchmark_filter='4096->4096' --benchmark_min_time=0.2
//   FLASHLM_BENCH_DRAM_MIB=2048 bench_kernels ...   (the dram footprint; default max(2 x L3, 256 MiB))
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

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

// Seconds on the clock the benchmark library uses for this thread count (see the top of the file).
double clock_s(int threads) {
    if (threads > 1) return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Returns the seconds the timed loop took on that clock.
template <class F>
double run(benchmark::State& state, const Problem& p, int threads, F&& f) {
    set_threads(threads);
    const double t0 = clock_s(threads);
    for (auto _ : state) {
        f();
        benchmark::ClobberMemory();
    }
    const double sec = clock_s(threads) - t0;
    state.counters["weights/s"] = benchmark::Counter(double(p.rows * p.cols), benchmark::Counter::kIsIterationInvariantRate);
    set_isa("auto");
    return sec;
}

template <class F>
void add(const std::string& name, int threads, F&& f) {
    auto* b = benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f));
    if (threads > 1) b->UseRealTime();
}

// ---- the dram case ---------------------------------------------------------------------------------

size_t g_dram_bytes = 0;          // footprint of each set of copies
std::vector<int> g_thread_counts;
std::vector<double> g_read_bw;    // best bytes/s of a streaming read over g_dram_bytes, indexed by threads

size_t last_level_cache_bytes() {
    size_t llc = 0;
    for (const auto& c : benchmark::CPUInfo::Get().caches)
        if (c.type != "Instruction") llc = std::max(llc, size_t(c.size));
    return llc;
}

// Sum of 64-bit words over [b, e), read as 8 interleaved streams with one vector accumulator each: the
// GEMVs read several rows at once, and a single sequential stream measured ~30 % below them (fewer
// misses in flight); with 8 streams the baseline is at or above what any kernel here reached.
uint64_t stream_sum(const uint64_t* b, const uint64_t* e) {
    using V = xsimd::batch<uint64_t>;
    constexpr int S = 8;
    constexpr size_t n = V::size;
    const size_t len = size_t(e - b) / (S * n) * n;  // words per stream, whole vectors
    V acc[S];
    for (auto& a : acc) a = V(uint64_t(0));
    for (size_t i = 0; i < len; i += n)
        for (int k = 0; k < S; ++k) acc[k] += V::load_unaligned(b + k * len + i);
    for (int k = 1; k < S; ++k) acc[0] += acc[k];
    alignas(64) uint64_t lanes[n];
    acc[0].store_aligned(lanes);
    uint64_t s = 0;
    for (size_t i = 0; i < n; ++i) s += lanes[i];
    for (const uint64_t* p = b + S * len; p < e; ++p) s += *p;
    return s;
}

// Best of `passes` passes of stream_sum over `bytes`, split over `threads` like the kernels.
double measure_read_bw(size_t bytes, int threads, int passes) {
    std::vector<uint64_t> buf(bytes / 8);
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = i;
    const int64_t n = int64_t(buf.size());
    double best = 0;
    uint64_t sink = 0;
    for (int pass = 0; pass < passes; ++pass) {
        const double t0 = clock_s(threads);
        uint64_t s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s) if (threads > 1)
        {
            const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
            s += stream_sum(buf.data() + n * t / k, buf.data() + n * (t + 1) / k);
        }
        const double sec = clock_s(threads) - t0;
        sink += s;
        best = std::max(best, double(bytes) / sec);
    }
    benchmark::DoNotOptimize(sink);
    return best;
}

// Copies of one representation of one problem, at least g_dram_bytes in all; one set lives at a time
// (benchmarks run in registration order, grouped by problem and representation).
struct DramSet {
    const Problem* p = nullptr;
    bool packed = false;
    std::vector<PackedTernary> w;
    std::vector<std::vector<float>> f;
    size_t next = 0;

    size_t count() const { return packed ? w.size() : f.size(); }
    size_t take() { return next = (next + 1) % count(); }
};

DramSet& dram_set(const Problem& p, bool packed) {
    static DramSet set;
    if (set.p == &p && set.packed == packed) return set;
    set = DramSet{};
    for (int t : g_thread_counts) g_read_bw[size_t(t)] = std::max(g_read_bw[size_t(t)], measure_read_bw(g_dram_bytes, t, 5));
    set.p = &p;
    set.packed = packed;
    const size_t one = packed ? p.W.planes.size() * 8 : p.wq.size() * 4;
    const size_t n = std::max<size_t>(2, (g_dram_bytes + one - 1) / one);
    if (packed)
        set.w.assign(n, p.W);
    else
        set.f.assign(n, p.wq);
    return set;
}

// G weights/s and bytes/s of the last run of each benchmark, by ("case", shape, threads) and label.
struct Rate {
    double gw = 0, bytes_per_s = 0;
};
std::map<std::tuple<std::string, std::string, int>, std::map<std::string, Rate>> g_rates;

// Records a run (`sec` from run()) for the summary; in the dram case also the "read/s" counter.
void record(benchmark::State& state, const Problem& p, const std::string& cs, const std::string& shape, int threads,
            const std::string& label, double bytes, double sec) {
    const double it = double(state.iterations());
    const Rate r{double(p.rows * p.cols) * it / sec / 1e9, bytes * it / sec};
    g_rates[{cs, shape, threads}][label] = r;
    if (cs == "dram")
        state.counters["read/s"] = benchmark::Counter(r.bytes_per_s, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
}

// The summary: one markdown table per thread count.
void print_summary(const std::vector<std::string>& shapes) {
    const auto isas = available_isas();
    const std::string best = isas.back();
    for (int t : g_thread_counts) {
        if (std::none_of(g_rates.begin(), g_rates.end(), [t](const auto& kv) { return std::get<2>(kv.first) == t; })) continue;
        std::printf("\nsummary, %d thread(s): G weights/s; dram: (%% of the read bandwidth, %.1f GB/s best measured)\n", t,
                    g_read_bw[size_t(t)] / 1e9);
        std::printf("| case | in -> out | Eigen f32 | f32 scalar | f32 %s | int8 scalar | int8 %s | f32 %s / Eigen | int8 %s / Eigen | "
                    "f32 %s / scalar | int8 %s / scalar |\n",
                    best.c_str(), best.c_str(), best.c_str(), best.c_str(), best.c_str(), best.c_str());
        std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (const char* cs : {"hot", "dram"})
            for (const auto& shape : shapes) {
                const auto it = g_rates.find({cs, shape, t});
                if (it == g_rates.end()) continue;
                const auto& m = it->second;
                const auto cell = [&](const std::string& label) {
                    const auto f = m.find(label);
                    if (f == m.end()) return std::string("-");
                    char buf[64];
                    if (std::string(cs) == "dram")
                    {
                        const double pct = 100.0 * f->second.bytes_per_s / g_read_bw[size_t(t)];
                        std::snprintf(buf, sizeof buf, pct < 10 ? "%.2f (%.1f%%)" : "%.2f (%.0f%%)", f->second.gw, pct);
                    }
                    else
                        std::snprintf(buf, sizeof buf, "%.2f", f->second.gw);
                    return std::string(buf);
                };
                const auto ratio = [&](const std::string& a, const std::string& b) {
                    const auto fa = m.find(a), fb = m.find(b);
                    if (fa == m.end() || fb == m.end()) return std::string("-");
                    char buf[32];
                    std::snprintf(buf, sizeof buf, "%.1fx", fa->second.gw / fb->second.gw);
                    return std::string(buf);
                };
                const std::string fb = "f32_" + best, ib = "int8_" + best;
                std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", cs, shape.c_str(), cell("eigen").c_str(),
                            cell("f32_scalar").c_str(), cell(fb).c_str(), cell("int8_scalar").c_str(), cell(ib).c_str(),
                            ratio(fb, "eigen").c_str(), ratio(ib, "eigen").c_str(), ratio(fb, "f32_scalar").c_str(),
                            ratio(ib, "int8_scalar").c_str());
            }
    }
}

// Eigen's GEMV is single-threaded; with t > 1 the rows are split over OpenMP like ours.
void eigen_gemv(Problem& p, float* w, int t) {
    const int64_t chunk = (p.rows + t - 1) / t;
#pragma omp parallel for num_threads(t) if (t > 1)
    for (int i = 0; i < t; ++i) {
        const int64_t r0 = std::min(p.rows, i * chunk), n = std::min(p.rows, r0 + chunk) - r0;
        VecMap<float>(p.y.data() + r0, n).noalias() =
            MatMap<float>(w + r0 * p.cols, n, p.cols) * VecMap<float>(p.x.data(), p.cols);
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    const int all = max_threads();
    std::vector<int> thread_counts{1};
    if (all > 1) thread_counts.push_back(all);
    // in -> out, as the layers name them; the matrix is out × in.
    const size_t llc = last_level_cache_bytes();
    g_dram_bytes = std::max(2 * llc, size_t(256) << 20);
    if (const char* env = std::getenv("FLASHLM_BENCH_DRAM_MIB")) g_dram_bytes = size_t(std::atoll(env)) << 20;
    g_read_bw.assign(size_t(all) + 1, 0.0);
    g_thread_counts = thread_counts;
    for (int t : thread_counts) {
        g_read_bw[size_t(t)] = measure_read_bw(g_dram_bytes, t, 10);
        std::printf("read bandwidth, %d thread(s), %.0f MiB buffer (last-level cache %.0f MiB): %.1f GB/s\n", t,
                    double(g_dram_bytes) / (1 << 20), double(llc) / (1 << 20), g_read_bw[size_t(t)] / 1e9);
    }
    std::fflush(stdout);

    // in -> out, as the layers name them; the matrix is out × in.
    const std::pair<int64_t, int64_t> shapes[] = {{2048, 2048}, {4096, 4096}, {1024, 4096}, {192, 384},
                                                  {192, 512},   {512, 192},   {384, 1024}};
    std::vector<std::unique_ptr<Problem>> problems;  // the benchmarks hold raw pointers into these
    std::vector<std::string> shape_names;
    for (auto [in, out] : shapes) {
        Problem* p = problems.emplace_back(std::make_unique<Problem>(in, out)).get();
        const std::string shape = std::to_string(in) + "->" + std::to_string(out);
        shape_names.push_back(shape);
        const double float_bytes = double(p->wq.size() * 4), packed_bytes = double(p->W.planes.size() * 8);
        for (int t : thread_counts) {
            const std::string suffix = "/hot/" + shape + "/threads:" + std::to_string(t);
            add("eigen_f32_gemv" + suffix, t, [p, t, shape, float_bytes](benchmark::State& st) {
                record(st, *p, "hot", shape, t, "eigen", float_bytes, run(st, *p, t, [p, t] { eigen_gemv(*p, p->wq.data(), t); }));
            });
            for (const auto& isa : available_isas()) {
                add("ternary_f32_" + isa + suffix, t, [p, t, isa, shape, packed_bytes](benchmark::State& st) {
                    set_isa(isa);
                    record(st, *p, "hot", shape, t, "f32_" + isa, packed_bytes,
                           run(st, *p, t, [p] { ternary_matvec(p->W, p->x.data(), p->y.data()); }));
                });
                add("ternary_int8_" + isa + suffix, t, [p, t, isa, shape, packed_bytes](benchmark::State& st) {
                    set_isa(isa);
                    record(st, *p, "hot", shape, t, "int8_" + isa, packed_bytes,
                           run(st, *p, t, [p] { ternary_matvec_int8(p->W, p->xq.data(), p->xs, p->y.data()); }));
                });
            }
            // What a layer pays per token on the int8 path: quantising x, then the best kernel.
            add("ternary_int8_with_quant_auto" + suffix, t, [p, t](benchmark::State& st) {
                run(st, *p, t, [p] { ternary_matvec_int8(p->W, p->x.data(), p->y.data()); });
            });
        }
        // dram: float copies first (Eigen), then packed copies (every ternary path), so one set lives at a time.
        for (int t : thread_counts)
            add("eigen_f32_gemv/dram/" + shape + "/threads:" + std::to_string(t), t, [p, t, shape, float_bytes](benchmark::State& st) {
                DramSet& d = dram_set(*p, false);
                record(st, *p, "dram", shape, t, "eigen", float_bytes,
                       run(st, *p, t, [p, t, &d] { eigen_gemv(*p, d.f[d.take()].data(), t); }));
            });
        for (int t : thread_counts) {
            const std::string suffix = "/dram/" + shape + "/threads:" + std::to_string(t);
            for (const auto& isa : available_isas()) {
                add("ternary_f32_" + isa + suffix, t, [p, t, isa, shape, packed_bytes](benchmark::State& st) {
                    DramSet& d = dram_set(*p, true);
                    set_isa(isa);
                    record(st, *p, "dram", shape, t, "f32_" + isa, packed_bytes,
                           run(st, *p, t, [p, &d] { ternary_matvec(d.w[d.take()], p->x.data(), p->y.data()); }));
                });
                add("ternary_int8_" + isa + suffix, t, [p, t, isa, shape, packed_bytes](benchmark::State& st) {
                    DramSet& d = dram_set(*p, true);
                    set_isa(isa);
                    record(st, *p, "dram", shape, t, "int8_" + isa, packed_bytes, run(st, *p, t, [p, &d] {
                               ternary_matvec_int8(d.w[d.take()], p->xq.data(), p->xs, p->y.data());
                           }));
                });
            }
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
        const std::string suffix = "/hot/192->10000/threads:" + std::to_string(t);
        add("head_eigen_f32_gemv" + suffix, t, [hp, t](benchmark::State& st) {
            run(st, *hp, t, [] {
                VecMap<float>(head.y.data(), head.rows).noalias() =
                    MatMap<float>(head.w.data(), head.rows, head.cols) * VecMap<float>(head.x.data(), head.cols);
            });
        });
        for (const auto& isa : available_isas()) {
            add("head_dense_f32_" + isa + suffix, t, [hp, t, isa](benchmark::State& st) {
                set_isa(isa);
                run(st, *hp, t, [] { dense_f32_matvec(head.w.data(), head.rows, head.cols, head.x.data(), head.y.data()); });
            });
            add("head_int8_" + isa + suffix, t, [hp, t, isa](benchmark::State& st) {
                set_isa(isa);
                run(st, *hp, t, [] { int8_rows_matvec(head.q, head.xq.data(), head.xs, head.y.data()); });
            });
        }
        add("head_int8_with_quant_auto" + suffix, t, [hp, t](benchmark::State& st) {
            run(st, *hp, t, [] { int8_rows_matvec(head.q, head.x.data(), head.y.data(), head.xq.data()); });
        });
    }
    benchmark::RunSpecifiedBenchmarks();
    print_summary(shape_names);
    benchmark::Shutdown();
}
