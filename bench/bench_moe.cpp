// SUPERNOVA II (v6.1) training-step throughput with sparse top-2 experts (only the selected experts run on
// a token) against the same model running all experts on every token (config dense_experts, identical
// outputs). Forward + backward only (no optimizer), real config unless --small.
// usage: bench_moe [--batch 16] [--seq 256] [--threads 2] [--steps 3] [--small]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "examples/supernova2.hpp"

using namespace flashlm;

int main(int argc, char** argv) {
    int64_t B = 16, L = 256, threads = 2, steps = 3;
    bool small = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_moe: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return std::atoll(argv[++i]);
        };
        if (a == "--batch") B = next();
        else if (a == "--seq") L = next();
        else if (a == "--threads") threads = next();
        else if (a == "--steps") steps = next();
        else if (a == "--small") small = true;
        else {
            std::fprintf(stderr, "usage: bench_moe [--batch N] [--seq N] [--threads N] [--steps N] [--small]\n");
            return 2;
        }
    }
    if (B < 1 || L < 1 || threads < 1 || steps < 1) {
        std::fprintf(stderr, "bench_moe: values must be positive\n");
        return 2;
    }
    set_threads(int(threads));
    examples::Supernova2Config c;
    if (small) c.d_model = 128, c.d_ffn = 256, c.d_reason = 64, c.n_layers = 4;
    c.max_seq_len = std::max(c.max_seq_len, L);
    double tps[2] = {0, 0};
    for (int dense = 0; dense < 2; ++dense) {
        c.dense_experts = dense != 0;
        examples::Supernova2<float> m("supernova2", c);
        Rng rng(1);
        m.init(rng);
        std::vector<int32_t> ids(size_t(B * L)), tg(size_t(B * L));
        for (auto& t : ids) t = int32_t(rng.below(uint64_t(c.vocab_size)));
        for (auto& t : tg) t = int32_t(rng.below(uint64_t(c.vocab_size)));
        Tape<float> tape;
        double best = 1e30;
        for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms the arena up
            const auto t0 = std::chrono::steady_clock::now();
            tape.reset();
            m.params().zero_grad();
            Tensor<float> loss = m.loss(tape, ids.data(), tg.data(), B, L);
            tape.backward(loss);
            const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (s > 0) best = std::min(best, dt);
        }
        tps[dense] = double(B * L) / best;
        std::printf("%-6s experts: %9.0f tok/s (best of %lld fwd+bwd steps, b%lld x %lld, %lld threads, %s config)\n",
                    dense ? "dense" : "sparse", tps[dense], (long long)steps, (long long)B, (long long)L, (long long)threads,
                    small ? "small" : "real");
    }
    std::printf("sparse / dense: %.2fx\n", tps[0] / tps[1]);
    return 0;
}
