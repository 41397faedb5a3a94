// The add kernel for f32 products with a ternary operand (kernels/ternary_add_gemm.hpp) against the
// f32 FMA GEMM (kernels/gemm_f32.hpp) on the ternary products of one training step: the forward
// y = x W̃ᵀ (nt) and the input gradient dx = dy W̃ (nn) of every BitLinear, with W̃ an absmean
// ternarisation of N(0, 0.02²) weights. Each call includes what the step's call does: the add kernel
// checks W̃ and builds its lists; the FMA GEMM packs W̃. Timed alternately (best of --reps rounds, each
// round one call of each); prints ms, "GFLOP/s" (2·M·N·K over the time, the FMA GEMM's arithmetic), the
// ratio, and the largest difference relative to the output's largest magnitude.
//   bench_ternary_add [--threads N] [--reps N] [--tokens M] [--model bolt|cortex|bolt-large|supernova2]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/ternary_add_gemm.hpp"
#include "flashlm/ops/bitlinear.hpp"

using namespace flashlm;

namespace {

struct Product {
    const char* role;
    int64_t n, k;  // W̃: [n, k]
};

double seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
    int threads = 1, reps = 7;
    int64_t tokens = 4096;
    std::string model = "bolt";
    for (int i = 1; i < argc; ++i) {
        const bool more = i + 1 < argc;
        if (!std::strcmp(argv[i], "--threads") && more) threads = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--reps") && more) reps = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--tokens") && more) tokens = std::atoll(argv[++i]);
        else if (!std::strcmp(argv[i], "--model") && more) model = argv[++i];
        else {
            std::fprintf(stderr, "usage: bench_ternary_add [--threads N] [--reps N] [--tokens M] [--model bolt|cortex|bolt-large|supernova2]\n");
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || tokens < 1) {
        std::fprintf(stderr, "bench_ternary_add: threads, reps and tokens must be >= 1\n");
        return 2;
    }
    // (dim, hidden): Bolt 192/512, CORTEX-VI 256/512, Bolt-large 384/1024, SUPERNOVA II's expert 384/768
    int64_t D = 192, H = 512;
    if (model == "cortex") D = 256, H = 512;
    else if (model == "bolt-large") D = 384, H = 1024;
    else if (model == "supernova2") D = 384, H = 768;
    else if (model != "bolt") {
        std::fprintf(stderr, "bench_ternary_add: unknown --model %s\n", model.c_str());
        return 2;
    }
    if (!kernels::set_ternary_add(true)) {
        std::printf("the add kernel cannot run here (no AVX-512F, or FLASHLM_ISA hides it)\n");
        return 0;
    }
    omp_set_num_threads(threads);
    const std::vector<Product> products = {
        {"mixer.up / glu-less up", 2 * D, D}, {"mixer.down / square", D, D}, {"glu gate/up", H, D}, {"glu down", D, H}};
    std::printf("%s, M = %lld tokens, %d threads, best of %d alternated rounds\n", model.c_str(), (long long)tokens,
                threads, reps);
    std::printf("%-24s %2s %6s %6s %6s  %8s %7s  %8s %7s  %6s  %8s\n", "product", "", "M", "N", "K", "fma ms", "GFLOP/s",
                "add ms", "GFLOP/s", "ratio", "max diff");
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (const Product& p : products) {
        std::vector<float> w(size_t(p.n * p.k)), wq(w.size());
        for (auto& v : w) v = 0.02f * nd(rng);
        ops::quantize_absmean(w.data(), wq.data(), int64_t(w.size()));
        for (const bool dx : {false, true}) {
            // nt: y[M, n] = x[M, k] W̃ᵀ;  nn: dx[M, k] = dy[M, n] W̃
            const int64_t in = dx ? p.n : p.k, out = dx ? p.k : p.n;
            std::vector<float> a(size_t(tokens * in)), c_fma(size_t(tokens * out)), c_add(c_fma.size());
            for (auto& v : a) v = nd(rng);
            auto call = [&](bool add) {
                float* c = add ? c_add.data() : c_fma.data();
                kernels::set_ternary_add(add);
                if (!dx) {
                    if (!add || !kernels::ternary_add_nt(tokens, p.n, p.k, a.data(), wq.data(), c, false))
                        kernels::gemm_nt(tokens, p.n, p.k, a.data(), wq.data(), c, false);
                } else if (!add || !kernels::ternary_add_nn(tokens, p.k, p.n, a.data(), wq.data(), c, false)) {
                    kernels::gemm_nn(tokens, p.k, p.n, a.data(), wq.data(), c, false);
                }
            };
            call(false);
            call(true);
            double best[2] = {1e30, 1e30};
            for (int r = 0; r < reps; ++r)
                for (const bool add : {false, true}) {
                    const double t0 = seconds();
                    call(add);
                    best[add] = std::min(best[add], seconds() - t0);
                }
            double mx = 0, diff = 0;
            for (size_t i = 0; i < c_fma.size(); ++i) {
                mx = std::max(mx, double(std::abs(c_fma[i])));
                diff = std::max(diff, double(std::abs(c_fma[i] - c_add[i])));
            }
            const double flop = 2.0 * double(tokens) * double(p.n) * double(p.k);
            std::printf("%-24s %2s %6lld %6lld %6lld  %8.3f %7.1f  %8.3f %7.1f  %5.2fx  %8.1e\n", p.role, dx ? "nn" : "nt",
                        (long long)tokens, (long long)out, (long long)in, best[0] * 1e3, flop / best[0] * 1e-9,
                        best[1] * 1e3, flop / best[1] * 1e-9, best[0] / best[1], diff / std::max(mx, 1e-30));
        }
    }
    return 0;
}
