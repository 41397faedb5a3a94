// Batch-1 Bolt generation, one thread: cached exact, cached int8 and the upstream recompute loop (whole
// 256-token window per token). Random weights: speed does not depend on their values.
#include <benchmark/benchmark.h>

#include <numeric>
#include <vector>

#include "examples/bolt.hpp"

using namespace flashlm;

namespace {

examples::Bolt<float>& model() {
    static examples::Bolt<float>* m = [] {
        auto* b = new examples::Bolt<float>("bolt", examples::BoltConfig::small());
        Rng rng(1);
        b->init(rng);
        return b;
    }();
    return *m;
}

void run_cached(benchmark::State& st, Quant q) {
    set_threads(int(st.range(0)));
    auto g = model().make_generator(q);
    for (int i = 0; i < 64; ++i) g->step(i);
    int32_t tok = 1;
    for (auto _ : st) {
        const float* z = g->step(tok);
        tok = int32_t(train::argmax(z, 10000));  // greedy: train::Sampler at temperature 0
    }
    st.counters["tok/s"] = benchmark::Counter(double(st.iterations()), benchmark::Counter::kIsRate);
}

void BM_generate_exact(benchmark::State& st) { run_cached(st, Quant::exact); }
void BM_generate_int8(benchmark::State& st) { run_cached(st, Quant::int8); }

void BM_generate_recompute(benchmark::State& st) {
    set_threads(int(st.range(0)));
    Tape<float> tape;
    NoGradGuard<float> ng(tape);
    std::vector<int32_t> ctx(256);
    for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = int32_t(i * 37 % 10000);
    for (auto _ : st) {
        tape.reset();
        Tensor<float> z = model().logits(tape, ctx.data(), 1, 256);
        const float* last = z.data + 255 * 10000;
        ctx.erase(ctx.begin());
        ctx.push_back(int32_t(std::max_element(last, last + 10000) - last));
    }
    st.counters["tok/s"] = benchmark::Counter(double(st.iterations()), benchmark::Counter::kIsRate);
}

// The exact path's float head alone, as generation runs it (the block weights' 0.6 MB read in between,
// here a plain read of that size), in one direction every call or alternating (range(0) = 1), against
// a plain read of the same 7.7 MB (8 interleaved streams): what the head reaches of the L3 read rate.
// Counter read/s = head bytes per second.
std::vector<float>& scratch(size_t n) {
    static std::vector<float> v;
    if (v.size() < n) v.assign(n, 1.0f);
    return v;
}
float read_sum(const float* p, int64_t n) {
    constexpr int S = 8;  // interleaved streams
    float acc[S][16] = {};
    const int64_t per = n / S / 16 * 16;
    for (int64_t k = 0; k < per; k += 16)
        for (int s = 0; s < S; ++s)
            for (int l = 0; l < 16; ++l) acc[s][l] += p[s * per + k + l];
    float t = 0;
    for (auto& a : acc) t = std::accumulate(a, a + 16, t);
    return t;
}
void BM_head_f32(benchmark::State& st) {
    set_threads(1);
    const int64_t V = 10000, D = 192;
    const float* emb = model().params().get("embedding.weight").data;
    std::vector<float> x(D, 0.01f), y(V);
    const float* blocks = scratch(150000).data();  // 0.6 MB
    bool reverse = false;
    float sink = 0;
    for (auto _ : st) {
        sink += read_sum(blocks, 150000);
        kernels::dense_f32_matvec(emb, V, D, x.data(), y.data(), reverse);
        if (st.range(0)) reverse = !reverse;
        benchmark::DoNotOptimize(y.data());
    }
    benchmark::DoNotOptimize(sink);
    st.counters["read/s"] = benchmark::Counter(double(st.iterations()) * V * D * 4, benchmark::Counter::kIsRate);
}
void BM_read_7_7MB(benchmark::State& st) {
    set_threads(1);
    const float* w = model().params().get("embedding.weight").data;
    const float* blocks = scratch(150000).data();
    float sink = 0;
    for (auto _ : st) {
        sink += read_sum(blocks, 150000);
        sink += read_sum(w, 10000 * 192);
    }
    benchmark::DoNotOptimize(sink);
    st.counters["read/s"] = benchmark::Counter(double(st.iterations()) * 10000 * 192 * 4, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_head_f32)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_read_7_7MB)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_generate_exact)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_generate_int8)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_generate_recompute)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
