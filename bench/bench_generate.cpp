// Batch-1 Bolt generation, one thread: cached exact, cached int8 and the upstream recompute loop (whole
// 256-token window per token). Random weights: speed does not depend on their values.
#include <benchmark/benchmark.h>

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

}  // namespace

BENCHMARK(BM_generate_exact)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_generate_int8)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_generate_recompute)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
