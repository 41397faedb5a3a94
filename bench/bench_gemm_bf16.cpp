// GEMM throughput, bf16 operands (kernels/gemm_bf16.hpp, `--matmul bf16`) against flashlm's f32 GEMM
// (kernels/gemm.hpp: the AVX-512 kernel, else Eigen), on the products of a Bolt b16×256 training step: for
// each layer shape the forward y = x Wᵀ (nt), dx = dy W (nn) and dW += dyᵀ x (tn, accumulating into the
// gradient as in training), plus the tied head's row block and two K = 1024 shapes. f32 and bf16
// alternate, best of --reps rounds each (a shared machine only ever loses time). Every bf16 kernel the
// CPU has is measured (amx, avx512_bf16).
//   bench_gemm_bf16 [--threads N] [--reps N]
// Output: one line per (shape, product): GFLOP/s of f32 and of each bf16 kernel, and the ratio.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/gemm_bf16.hpp"

using namespace flashlm;
using namespace flashlm::kernels;

namespace {

struct Case {
    const char* what;
    int64_t rows, out, in;  // x [rows, in], W [out, in]
};

// Bolt (dim 192, GLU hidden 512, vocab 10000), b16 × 256 = 4096 rows.
const Case k_cases[] = {
    {"mixer in 192->384", 4096, 384, 192}, {"mixer out 192->192", 4096, 192, 192},
    {"glu up 192->1024", 4096, 1024, 192}, {"glu down 512->192", 4096, 192, 512},
    {"head block 256x10000", 256, 10000, 192}, {"K=1024 1024->192", 4096, 192, 1024},
    {"K=1024 1024->1024", 4096, 1024, 1024},
};

template <class F>
double best_seconds(F&& f, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 1, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_gemm_bf16 [--threads N] [--reps N]\n");
            return 2;
        }
    }
    omp_set_num_threads(std::max(1, threads));
    const Bf16Kernel best = bf16_kernel();
    if (best == Bf16Kernel::none) {
        std::fprintf(stderr, "bench_gemm_bf16: this CPU has no AVX512_BF16\n");
        return 1;
    }
    std::vector<Bf16Kernel> ks{Bf16Kernel::avx512};
    if (best == Bf16Kernel::amx) ks.push_back(Bf16Kernel::amx);
    std::printf("threads %d, GFLOP/s (best of %d)\n%-22s %-4s %9s", threads, reps, "shape", "op", "f32");
    for (Bf16Kernel k : ks) std::printf(" %12s", bf16_kernel_name(k));
    std::printf(" %9s\n", "best/f32");
    std::mt19937 gen(1);
    std::normal_distribution<float> nd;
    for (const Case& c : k_cases) {
        const int64_t M = c.rows, N = c.out, K = c.in;
        std::vector<float> x(size_t(M * K)), w(size_t(N * K)), dy(size_t(M * N)), y(size_t(M * N)), dx(size_t(M * K)),
            dw(size_t(N * K));
        for (auto* v : {&x, &w, &dy})
            for (auto& e : *v) e = nd(gen);
        const double flop = 2.0 * double(M) * double(N) * double(K);
        for (int op = 0; op < 3; ++op) {
            auto run = [&] {
                if (op == 0) gemm_nt<float>(M, N, K, x.data(), w.data(), y.data(), false);
                if (op == 1) gemm_nn<float>(M, K, N, dy.data(), w.data(), dx.data(), false);
                if (op == 2) gemm_tn<float>(N, K, M, dy.data(), x.data(), dw.data(), true);
            };
            std::vector<double> f32_s, bf_s(ks.size(), 1e30);
            double f32_best = 1e30;
            for (int round = 0; round < 2; ++round) {  // alternate: f32, each bf16 kernel, again
                set_matmul(Matmul::f32);
                run();
                f32_best = std::min(f32_best, best_seconds(run, reps));
                set_matmul(Matmul::bf16);
                for (size_t i = 0; i < ks.size(); ++i) {
                    set_bf16_kernel(ks[i]);
                    run();
                    bf_s[i] = std::min(bf_s[i], best_seconds(run, reps));
                }
                set_matmul(Matmul::f32);
            }
            std::printf("%-22s %-4s %9.1f", c.what, op == 0 ? "nt" : op == 1 ? "nn" : "tn", flop / f32_best * 1e-9);
            double fastest = 1e30;
            for (double s : bf_s) std::printf(" %12.1f", flop / s * 1e-9), fastest = std::min(fastest, s);
            std::printf(" %8.2fx\n", f32_best / fastest);
        }
    }
    set_bf16_kernel(best);
    return 0;
}
