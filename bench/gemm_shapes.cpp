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


// A packing-free AVX-512 kernel for the skinny shapes, to see what Eigen's packing costs: C[M,N] (+)=
// Σ_k A(i,k) B[k, :], with A(i,k) = a[i·ars + k·aks] (row-major A: ars = K, aks = 1; the transposed A of
// gemm_tn: ars = 1, aks = M) and B row-major [K, N] (gemm_nt needs Wᵀ, made once per call here). A tile
// is R rows × V vectors of 16 columns; B's rows are read in place (they stay in L2), A is broadcast.
#if defined(__AVX512F__)
template <int R, int V>
void hand_tile(const float* a, int64_t ars, int64_t aks, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t K,
               bool acc) {
    __m512 s[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) s[r][v] = acc ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        __m512 bv[V];
        for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
        for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(a[r * ars + k * aks]);
            for (int v = 0; v < V; ++v) s[r][v] = _mm512_fmadd_ps(av, bv[v], s[r][v]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, s[r][v]);
}

template <int R>
void hand_rows(const float* a, int64_t ars, int64_t aks, const float* b, int64_t N, float* c, int64_t K, bool acc) {
    int64_t j = 0;
    for (; j + 64 <= N; j += 64) hand_tile<R, 4>(a, ars, aks, b + j, N, c + j, N, K, acc);
    for (; j + 16 <= N; j += 16) hand_tile<R, 1>(a, ars, aks, b + j, N, c + j, N, K, acc);
}

// Rows [r0, r1) of C; N must be a multiple of 16 (the bench's shapes are).
void hand_gemm(int64_t r0, int64_t r1, int64_t N, int64_t K, const float* a, int64_t ars, int64_t aks, const float* b,
               float* c, bool acc) {
    int64_t i = r0;
    for (; i + 6 <= r1; i += 6) hand_rows<6>(a + i * ars, ars, aks, b, N, c + i * N, K, acc);
    for (; i < r1; ++i) hand_rows<1>(a + i * ars, ars, aks, b, N, c + i * N, K, acc);
}
#endif

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
        double hand_gf = 0;
#if defined(__AVX512F__)
        if (s.n % 16 == 0) {
            std::vector<float> bt;
            auto hand = [&] {
                const float* bb = b.data();
                if (s.kind == 'n') {  // gemm_nt's B is [N, K]: the kernel reads Bᵀ [K, N]
                    bt.resize(size_t(s.n * s.k));
                    for (int64_t j = 0; j < s.n; ++j)
                        for (int64_t q = 0; q < s.k; ++q) bt[size_t(q * s.n + j)] = b[size_t(j * s.k + q)];
                    bb = bt.data();
                }
                const int64_t ars = s.kind == 't' ? 1 : s.k, aks = s.kind == 't' ? s.m : 1;
#pragma omp parallel
                {
                    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
                    const int64_t r0 = s.m * t / nt, r1 = s.m * (t + 1) / nt;
                    hand_gemm(r0, r1, s.n, s.k, a.data(), ars, aks, bb, c.data(), s.acc);
                }
            };
            hand();
            double hb = 1e30;
            for (int r = 0; r < reps; ++r) {
                const auto t0 = clock_type::now();
                hand();
                hb = std::min(hb, std::chrono::duration<double>(clock_type::now() - t0).count());
            }
            hand_gf = 2.0 * double(s.m * s.n * s.k) / hb * 1e-9;
        }
#endif
        std::printf("%-18s %s %6lld %6lld %6lld  %8.3f ms  %6.1f GFLOP/s  %5.1f %%   packing-free %6.1f GFLOP/s\n", s.role,
                    s.kind == 'n' ? "nt" : s.kind == 'N' ? "nn" : "tn", (long long)s.m, (long long)s.n, (long long)s.k,
                    best * 1e3, gf, 100.0 * gf / peak, hand_gf);
    }
    return 0;
}
