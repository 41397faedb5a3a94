// GFLOP/s of kernels::gemm_* on the GEMM shapes of one Bolt b16x256 training step (M = 4096 tokens,
// dim 192, GLU hidden 512, vocab 10000, head row blocks of 256), against the FP32 FMA peak measured in
// the same run. Prints one line per shape: its role, the kernel, M N K, ms per call, GFLOP/s, % of peak.
//   bench_gemm_shapes [--threads N] [--reps N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/fma_peak.hpp"
#include "flashlm/kernels/gemm.hpp"

using namespace flashlm;
using clock_type = std::chrono::steady_clock;

namespace {

struct Shape3 {
    const char* role;
    char kind;  // 'n': gemm_nt, 'N': gemm_nn, 't': gemm_tn
    int64_t m, n, k;
    bool acc;
};

double peak_gflops(int threads) {
    constexpr int64_t iters = 1 << 22;
    float sink[256] = {};
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = clock_type::now();
#pragma omp parallel num_threads(threads)
        sink[omp_get_thread_num() & 255] += bench::fma_chains(iters);
        const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
        best = std::max(best, double(iters) * bench::k_acc * bench::k_lanes * 2.0 * threads / s * 1e-9);
    }
    volatile float keep = sink[0];
    (void)keep;
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 1, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
        else { std::fprintf(stderr, "usage: bench_gemm_shapes [--threads N] [--reps N]\n"); return 2; }
    }
    if (threads < 1 || reps < 1) { std::fprintf(stderr, "bench_gemm_shapes: threads and reps must be >= 1\n"); return 2; }
    omp_set_num_threads(threads);
    const int64_t M = 4096, D = 192, H = 512, V = 10000, R = 256;
    const std::vector<Shape3> shapes = {
        {"head logits (x16)", 'n', R, V, D, false},  {"head dh (x16)", 'N', R, D, V, false},
        {"head dE (x16)", 't', V, D, R, true},       {"fwd mixer.up", 'n', M, 2 * D, D, false},
        {"fwd mixer.down", 'n', M, D, D, false},     {"fwd glu gate/up", 'n', M, H, D, false},
        {"fwd glu down", 'n', M, D, H, false},       {"dx mixer.up", 'N', M, D, 2 * D, true},
        {"dx mixer.down", 'N', M, D, D, true},       {"dx glu gate/up", 'N', M, D, H, true},
        {"dx glu down", 'N', M, H, D, true},         {"dW mixer.up", 't', 2 * D, D, M, true},
        {"dW mixer.down", 't', D, D, M, true},       {"dW glu gate/up", 't', H, D, M, true},
        {"dW glu down", 't', D, H, M, true},
    };
    std::vector<float> a(size_t(V * R + M * H)), b(size_t(V * R + M * H)), c(size_t(V * D + M * H));
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 7) - 3) * 0.01f, b[i] = float(int(i % 5) - 2) * 0.01f;
    const double peak = peak_gflops(threads);
    std::printf("threads %d, FP32 FMA peak %.1f GFLOP/s\n", threads, peak);
    for (const auto& s : shapes) {
        auto run = [&] {
            if (s.kind == 'n') kernels::gemm_nt(s.m, s.n, s.k, a.data(), b.data(), c.data(), s.acc);
            else if (s.kind == 'N') kernels::gemm_nn(s.m, s.n, s.k, a.data(), b.data(), c.data(), s.acc);
            else kernels::gemm_tn(s.m, s.n, s.k, a.data(), b.data(), c.data(), s.acc);
        };
        run();
        double best = 1e30;
        for (int r = 0; r < reps; ++r) {
            const auto t0 = clock_type::now();
            run();
            best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
        }
        const double gf = 2.0 * double(s.m * s.n * s.k) / best * 1e-9;
        std::printf("%-18s %s %6lld %6lld %6lld  %8.3f ms  %6.1f GFLOP/s  %5.1f %%\n", s.role,
                    s.kind == 'n' ? "nt" : s.kind == 'N' ? "nn" : "tn", (long long)s.m, (long long)s.n, (long long)s.k,
                    best * 1e3, gf, 100.0 * gf / peak);
    }
    return 0;
}
