// A training step after the first must not touch the heap: every malloc/new (including Eigen's GEMM
// workspace and OpenMP's) is counted while a steady-state step runs.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "examples/bolt.hpp"
#include "examples/cortex.hpp"
#include "examples/nova.hpp"
#include "examples/nova_diff.hpp"
#include "examples/cortex7.hpp"
#include "examples/thunderbolt.hpp"
#include "examples/v3.hpp"
#include "examples/bolt_deltanet.hpp"
#include "examples/supernova.hpp"
#include "examples/supernova2.hpp"
#include "examples/supernova2_engine.hpp"

// Under AddressSanitizer (scripts/sanitize.sh) malloc belongs to ASan's allocator: a replacement here
// would hand it memory it does not know. ASan calls a hook on every allocation instead (malloc, calloc,
// realloc, the aligned ones and operator new alike), which counts the same events.
#if defined(__SANITIZE_ADDRESS__)
#define FLASHLM_TEST_ALLOC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLASHLM_TEST_ALLOC_ASAN 1
#endif
#endif

namespace {
std::atomic<long> g_allocs{0};
std::atomic<bool> g_counting{false};
inline void note() {
    if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#ifndef FLASHLM_TEST_ALLOC_ASAN
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

extern "C" {
void* malloc(size_t n) {
    note();
    return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
    note();
    return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
    note();
    return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
// Storage maps buffers of 1 MiB and more itself (core/storage.hpp): count those maps too.
void* __mmap(void*, size_t, int, int, int, off_t);
void* mmap(void* addr, size_t n, int prot, int flags, int fd, off_t off) {
    note();
    return __mmap(addr, n, prot, flags, fd, off);
}
int posix_memalign(void** out, size_t align, size_t n) {
    note();
    *out = __libc_memalign(align, n);
    return *out ? 0 : ENOMEM;
}
void* aligned_alloc(size_t align, size_t n) {
    note();
    return __libc_memalign(align, n);
}
void* memalign(size_t align, size_t n) {
    note();
    return __libc_memalign(align, n);
}
}
#else
// From <sanitizer/allocator_interface.h>, which g++ does not ship.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void on_malloc(const volatile void*, size_t) { note(); }
void on_free(const volatile void*) {}
// The runtime refuses (returns 0) a null free hook, and then no allocation is ever counted.
const int g_hooked = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace

TEST_CASE("the sanitizer's allocation hook is installed") { REQUIRE(g_hooked != 0); }
#endif

using namespace flashlm;

// Heap allocations in each of five training steps (zero_grad, loss, backward, clip, AdamW) of `model`
// on random ids over a 512-token vocabulary; pos_fraction < 1: the loss on positions sampled each step,
// as train::Trainer does.
std::array<long, 5> train_step_allocs(LanguageModel<float>& model, Rng& rng, double pos_fraction = 1.0) {
    optim::AdamW<float> opt(model.params(), {});
    const int64_t B = 4, L = 64;
    std::vector<int32_t> ids(B * L), tg(B * L);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(rng.below(512)), tg[i] = int32_t(rng.below(512));
    Tape<float> tape;
    std::array<long, 5> counts{};
    std::vector<int32_t> positions, scratch;
    for (auto& count : counts) {
        g_allocs = 0;
        g_counting = true;
        tape.reset();
        model.params().zero_grad();
        if (pos_fraction < 1) {
            train::sample_positions(rng, B * L, pos_fraction, positions, scratch);
            REQUIRE(model.set_loss_positions(positions));
        }
        Tensor<float> loss = model.loss(tape, ids.data(), tg.data(), B, L);
        tape.backward(loss);
        optim::clip_grad_norm(model.params(), 1.0);
        opt.step(1e-3);
        g_counting = false;
        count = g_allocs.load();
    }
    MESSAGE(model.name() << " allocations per step: " << counts[0] << ", " << counts[1] << ", " << counts[2] << ", "
                         << counts[3] << ", " << counts[4]);
    return counts;
}

// Heap allocations in 100 cached generation steps after the first.
long generation_allocs(Generator& gen) {
    gen.step(1);
    g_allocs = 0;
    g_counting = true;
    for (int32_t t = 0; t < 100; ++t) gen.step(t % 512);
    g_counting = false;
    return g_allocs.load();
}

// What every model's case checks: the first training step allocates (the counter works: that step sizes
// the arena), every later one allocates nothing, and neither do cached generation steps for `quants`.
// Where activation sizes follow the data (MoE routing), the second step may fill the arena differently
// and the third fold its chunks into one block (core/arena.hpp): such models are steady from the fourth.
enum class Sizes { fixed, routed };
void check_steady_allocs(LanguageModel<float>& model, Rng& rng,
                         const std::vector<Quant>& quants = {Quant::exact, Quant::int8}, Sizes sizes = Sizes::fixed,
                         double pos_fraction = 1.0) {
    const auto counts = train_step_allocs(model, rng, pos_fraction);
    CHECK(counts[0] > 0);
    for (size_t i = sizes == Sizes::fixed ? 1 : 3; i < counts.size(); ++i) {
        CAPTURE(i);
        CHECK(counts[i] == 0);
    }
    for (Quant q : quants) {
        CAPTURE(int(q));
        auto gen = model.make_generator(q);
        REQUIRE(gen);
        CHECK(generation_allocs(*gen) == 0);
    }
}

TEST_CASE("a steady-state Bolt training step makes no heap allocation (blocks on the tape or recomputed)") {
    for (bool recompute : {false, true}) {
        CAPTURE(recompute);
        examples::BoltConfig c{512, 64, 2, 8, 128, 64};
        examples::Bolt<float> model("bolt", c);
        Rng rng(7);
        model.init(rng);
        REQUIRE(model.set_recompute(recompute));
        check_steady_allocs(model, rng, {});  // generation: the next case
    }
}

TEST_CASE("a cached generation step makes no heap allocation (exact and int8)") {
    examples::BoltConfig c{512, 64, 2, 8, 128, 64};
    examples::Bolt<float> model("bolt", c);
    Rng rng(3);
    model.init(rng);
    for (Quant q : {Quant::exact, Quant::int8}) {
        CAPTURE(int(q));
        CHECK(generation_allocs(*model.make_generator(q)) == 0);
    }
}

TEST_CASE("cortex6: steady-state training steps (both objectives) and cached generation steps make no heap allocation") {
    for (bool compat : {false, true}) {
        examples::CortexConfig c = examples::CortexConfig::cortex6();
        c.vocab_size = 512, c.d_model = 64, c.n_layers = 2, c.d_ff = 128, c.d_mem = 16, c.seq_len = 64;
        c.upstream_compat = compat;
        examples::Cortex<float> model("cortex6", c);
        Rng rng(9);
        model.init(rng);
        CAPTURE(compat);
        check_steady_allocs(model, rng, compat ? std::vector<Quant>{} : std::vector<Quant>{Quant::exact});
    }
}

TEST_CASE("nova: steady-state training steps (dropout on) and KV-cache generation steps (with refills) make no heap allocation") {
    examples::NovaConfig c;
    c.vocab_size = 512, c.d_model = 64, c.n_layers = 2, c.n_heads = 2, c.d_head = 16, c.d_ffn = 96, c.seq_len = 64;
    examples::Nova<float> model("nova", c);
    Rng rng(11);
    model.init(rng);
    check_steady_allocs(model, rng, {Quant::exact});  // 101 tokens > seq_len 64: one refill
}

TEST_CASE("nova-diff: steady-state training steps (MoE routing buffers reused) and KV-cache generation steps (with refills) make no heap allocation") {
    examples::NovaDiffConfig c;
    c.vocab_size = 512, c.d_model = 64, c.n_layers = 3, c.n_heads = 2, c.d_head = 16, c.expert_dim = 96, c.n_experts = 4;
    c.seq_len = 64;
    examples::NovaDiff<float> model("nova-diff", c);
    Rng rng(12);
    model.init(rng);
    check_steady_allocs(model, rng, {Quant::exact, Quant::int8}, Sizes::routed);
}

TEST_CASE("cortex (v7): steady-state training steps (both modes) and cached generation steps make no heap allocation") {
    for (bool compat : {false, true}) {
        examples::Cortex7Config c;
        c.vocab_size = 512, c.d_model = 64, c.n_layers = 3, c.d_ff = 128, c.seq_len = 64, c.gate_hidden = 16;
        c.exit_layers = {1, 2};
        c.upstream_compat = compat;
        examples::Cortex7<float> model("cortex", c);
        Rng rng(10);
        model.init(rng);
        CAPTURE(compat);
        check_steady_allocs(model, rng, compat ? std::vector<Quant>{} : std::vector<Quant>{Quant::exact, Quant::int8});
        if (compat) continue;
        c.early_exit = true, c.exit_thresholds = {-1.0, -1.0};  // exits evaluated every step
        examples::Cortex7<float> ee("cortex", c);
        ee.init(rng);
        CHECK(generation_allocs(*ee.make_generator(Quant::exact)) == 0);
    }
}

TEST_CASE("thunderbolt: steady-state training steps (both GroupNorm modes) and cached generation steps make no heap allocation") {
    for (bool compat : {false, true}) {
        examples::ThunderboltConfig c;
        c.vocab_size = 512, c.d_model = 64, c.n_heads = 4, c.d_head = 16, c.n_layers = 2, c.d_ffn = 128, c.seq_len = 64;
        c.upstream_compat = compat;
        examples::Thunderbolt<float> model("thunderbolt", c);
        Rng rng(11);
        model.init(rng);
        CAPTURE(compat);
        check_steady_allocs(model, rng, compat ? std::vector<Quant>{} : std::vector<Quant>{Quant::exact, Quant::int8});
    }
}

TEST_CASE("bolt-blockwise: a steady-state training step and cached generation steps make no heap allocation") {
    examples::BoltConfig c{512, 64, 2, 8, 128, 64};
    c.quantizer = nn::WeightQuant::blockwise, c.inner_norm = true;
    examples::Bolt<float> model("bolt-blockwise", c);
    Rng rng(8);
    model.init(rng);
    check_steady_allocs(model, rng);
}

TEST_CASE("v3: a steady-state training step and cached generation steps make no heap allocation") {
    examples::V3Config c;
    c.vocab_size = 512, c.d_model = 32, c.glu_inner_dim = 48, c.seq_len = 64;
    examples::V3<float> model("v3", c);
    Rng rng(10);
    model.init(rng);
    check_steady_allocs(model, rng);
    check_steady_allocs(model, rng, {}, Sizes::fixed, 0.25);  // the recipe's loss on 25 % of the positions
}

TEST_CASE("bolt-deltanet: steady-state training steps (both prediction rules, both delta forms) and cached generation steps make no heap allocation") {
    for (bool compat : {false, true})
    for (const char* form : {"chunked", "sequential"}) {
        examples::BoltDeltaNetConfig c;
        c.vocab_size = 512, c.dim = 64, c.n_blocks = 2, c.num_heads = 2, c.glu_hidden = 128, c.seq_len = 64;
        c.upstream_compat = compat;
        c.delta_form = form;
        examples::BoltDeltaNet<float> model("bolt-deltanet", c);
        Rng rng(11);
        model.init(rng);
        CAPTURE(compat);
        CAPTURE(form);
        check_steady_allocs(model, rng);
    }
}

TEST_CASE("supernova: steady-state training steps (both planner means) and cached generation steps make no heap allocation") {
    for (bool compat : {false, true}) {
        examples::SupernovaConfig c;
        c.vocab_size = 512, c.d_model = 64, c.n_layers = 2, c.d_reason = 32, c.d_planner = 16, c.seq_len = 64;
        c.upstream_compat = compat;
        examples::Supernova<float> model("supernova", c);
        Rng rng(12);
        model.init(rng);
        CAPTURE(compat);
        check_steady_allocs(model, rng, compat ? std::vector<Quant>{} : std::vector<Quant>{Quant::exact, Quant::int8});
    }
}

TEST_CASE("supernova2: steady-state training steps (sparse experts) and cached generation steps (with replays past max_seq_len) make no heap allocation") {
    examples::Supernova2Config c;
    c.vocab_size = 512, c.d_model = 32, c.n_layers = 2, c.d_ffn = 64, c.d_reason = 16, c.n_scales = 2, c.n_slots = 4;
    c.max_seq_len = 64;
    examples::Supernova2<float> model("supernova2", c);
    Rng rng(12);
    model.init(rng);
    check_steady_allocs(model, rng, {Quant::exact, Quant::int8}, Sizes::routed);
    REQUIRE(model.set_recompute(true));  // the side tape keeps its capacity too
    const auto rc = train_step_allocs(model, rng);
    CHECK(rc[3] == 0);
    CHECK(rc[4] == 0);
}

TEST_CASE("supernova2-engine: steady-state training steps (Q4 popcount layers) and generation steps make no heap allocation") {
    examples::Supernova2EngineConfig c;
    c.vocab_size = 512, c.d_model = 64, c.d_ffn = 128, c.n_layers = 2, c.seq_len = 64;
    examples::Supernova2Engine<float> model("supernova2-engine", c);
    Rng rng(12);
    model.init(rng);
    check_steady_allocs(model, rng);
}
