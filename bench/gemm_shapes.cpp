// GFLOP/s of kernels::gemm_* on the GEMM shapes of one Bolt b16x256 training step (M = 4096 tokens,
// dim 192, GLU hidden 512, vocab 10000, head row blocks of 256), against the FP32 FMA peak measured in
// the same run. Prints one line per shape: its role, the kernel, M N K, then ms per call, GFLOP/s and % of
// peak for Eigen and for flashlm's AVX-512F kernel (kernels/gemm_f32.hpp), timed alternately (best of
// --reps rounds, each round one call of each), their ratio and the largest relative difference between them.
//   bench_gemm_shapes [--threads N] [--reps N] [--kc N] [--chunk FLOATS] [--group FLOATS] [--hand] [--only ROLE]
//                     [--cortex]   (CORTEX-VI's shapes instead, the memory's skinny products among them)
//                     [--supernova2]  (SUPERNOVA II's: the experts' and the parallel sub-layer's products)
//                     [--nova-diff]   (nova-diff's: attention, the shared and one routed expert, the head)
//                     [--tokens M] (rows of the token-sized operands: 4096 = b16×256, 16384 = b64×256)
// --kc / --chunk / --group set the f32 kernel's depth block, A chunk and B group (tuning only); --hand
// adds the old packing-free reference kernel.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench/fma_peak.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/gemm_f32.hpp"

using namespace flashlm;
using clock_type = std::chrono::steady_clock;

// Seconds of this process's CPU time: with one thread, time the machine's other load takes from us does not
// count (this box is shared); with more, wall time is used (CPU time would count the threads' spinning).
double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
double wall_seconds() { return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count(); }
bool g_cpu_time = false;
double now_s() { return g_cpu_time ? cpu_seconds() : wall_seconds(); }

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
        const double t0 = now_s();
#pragma omp parallel num_threads(threads)
        sink[omp_get_thread_num() & 255] += bench::fma_chains(iters);
        const double s = now_s() - t0;
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
    bool hand_kernel = false, cortex = false, supernova2 = false, nova_diff = false;
    int64_t tokens = 4096;  // M: batch × sequence (b16×256); --tokens 16384 for b64
    std::string only;  // run the shapes whose role contains this
    for (int i = 1; i < argc; ++i) {
        const bool more = i + 1 < argc;
        if (!std::strcmp(argv[i], "--threads") && more) threads = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--reps") && more) reps = std::atoi(argv[++i]);
#if FLASHLM_F32_X86
        else if (!std::strcmp(argv[i], "--kc") && more) kernels::f32_detail::kc_max() = std::max(16, std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--chunk") && more) kernels::f32_detail::a_chunk_floats() = std::max(1, std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--group") && more) kernels::f32_detail::b_group_floats() = std::max(1, std::atoi(argv[++i]));
#endif
        else if (!std::strcmp(argv[i], "--hand")) hand_kernel = true;
        else if (!std::strcmp(argv[i], "--only") && more) only = argv[++i];
        else if (!std::strcmp(argv[i], "--cortex")) cortex = true;
        else if (!std::strcmp(argv[i], "--supernova2")) supernova2 = true;
        else if (!std::strcmp(argv[i], "--nova-diff")) nova_diff = true;
        else if (!std::strcmp(argv[i], "--tokens") && more) tokens = std::max(1, std::atoi(argv[++i]));
        else { std::fprintf(stderr, "usage: bench_gemm_shapes [--threads N] [--reps N] [--kc N] [--chunk FLOATS] [--group FLOATS] [--hand] [--only ROLE] [--cortex] [--supernova2] [--nova-diff] [--tokens M]\n"); return 2; }
    }
    if (threads < 1 || reps < 1) { std::fprintf(stderr, "bench_gemm_shapes: threads and reps must be >= 1\n"); return 2; }
    const bool have_f32 = kernels::set_f32_kernel(true);
    if (!have_f32) std::printf("the f32 kernel cannot run here (no AVX-512F, or FLASHLM_ISA hides it): Eigen only\n");
    omp_set_num_threads(threads);
    g_cpu_time = threads == 1;
    const int64_t M = tokens, D = cortex ? 256 : 192, H = 512, V = cortex ? 4096 : 10000, R = 256, dm = 64;
    // --cortex: CORTEX-VI b16×256 (dim 256, FFN 512, memory 64, vocab 4096): the mixer's and FFN's
    // products as Bolt's, plus the memory's skinny ones (N or K = 64; the three projections also as one
    // N = 192 product) and one sequence's masked [L, L, 64] products.
    const std::vector<Shape3> cortex_shapes = {
        {"fwd mixer.up", 'n', M, 2 * D, D, false},   {"fwd glu gate/up", 'n', M, H, D, false},
        {"fwd glu down", 'n', M, D, H, false},       {"fwd mem k/v/q", 'n', M, dm, D, false},
        {"fwd mem kvq as one", 'n', M, 3 * dm, D, false}, {"fwd mem_out", 'n', M, D, dm, false},
        {"dx mem k/v/q", 'N', M, D, dm, true},       {"dx mem kvq as one", 'N', M, D, 3 * dm, true},
        {"dx mem_out", 'N', M, dm, D, true},         {"dW mem k/v/q", 't', dm, D, M, true},
        {"dW mem kvq as one", 't', 3 * dm, D, M, true}, {"dW mem_out", 't', D, dm, M, true},
        {"mem scores (1 seq)", 'n', 256, 256, dm, false}, {"mem read (1 seq)", 't', 256, dm, 256, false},
    };
    const std::vector<Shape3> bolt_shapes = {
        {"head logits (x16, packed E)", 'n', R, V, D, false},  {"head dh (x16, packed E)", 'N', R, D, V, false},
        {"head dE (x16)", 't', V, D, R, true},       {"fwd mixer.up", 'n', M, 2 * D, D, false},
        {"fwd mixer.down", 'n', M, D, D, false},     {"fwd glu gate/up", 'n', M, H, D, false},
        {"fwd glu down", 'n', M, D, H, false},       {"dx mixer.up", 'N', M, D, 2 * D, true},
        {"dx mixer.down", 'N', M, D, D, true},       {"dx glu gate/up", 'N', M, D, H, true},
        {"dx glu down", 'N', M, H, D, true},         {"dW mixer.up", 't', 2 * D, D, M, true},
        {"dW mixer.down", 't', D, D, M, true},       {"dW glu gate/up", 't', H, D, M, true},
        {"dW glu down", 't', D, H, M, true},
    };
    // --supernova2: SUPERNOVA II b16×256 (dim 384, d_ffn 768, d_reason 128, top-2 of 4 experts, so an
    // expert serves about M/2 rows): the experts' products, gate and up also as one product of 2F rows,
    // and the parallel sub-layer's (ops/parallel_branch_residual.hpp) as one product and as seven.
    const int64_t Ds = 384, Fs = 768, Rs = 128, E = M / 2;
    const std::vector<Shape3> supernova2_shapes = {
        {"fwd expert gate/up", 'n', E, Fs, Ds, false},   {"fwd expert gate+up as one", 'n', E, 2 * Fs, Ds, false},
        {"fwd expert down", 'n', E, Ds, Fs, false},      {"dx expert gate/up", 'N', E, Ds, Fs, true},
        {"dx expert gate+up as one", 'N', E, Ds, 2 * Fs, true}, {"dx expert down", 'N', E, Fs, Ds, false},
        {"dW expert gate/up", 't', Fs, Ds, E, false},    {"dW expert gate+up as one", 't', 2 * Fs, Ds, E, false},
        {"dW expert down", 't', Ds, Fs, E, false},       {"fwd branch proj (x6)", 'n', M, Rs, Ds, false},
        {"fwd branch in as one", 'n', M, 6 * Rs + Ds, Ds, false}, {"fwd branch out as one", 'n', M, Ds, 2 * Rs + Ds, false},
        {"dx branch in as one", 'N', M, Ds, 6 * Rs + Ds, false}, {"dW branch in as one", 't', 6 * Rs + Ds, Ds, M, false},
        {"fwd temporal mix", 'n', M, Ds, Ds, false},     {"fwd temporal gate", 'n', M, Ds, 2 * Ds, false},
        {"dx temporal mix", 'N', M, Ds, Ds, true},       {"dW temporal mix", 't', Ds, Ds, M, false},
    };
    // --nova-diff: nova-diff b16×256 (dim 288, attention width 2·288 for q and k, experts 288 → 576 → 288,
    // top-1 of 6 routed experts, so one serves about M/6 rows; untied head of 5120 rows, whole logits).
    const int64_t Dn = 288, Fn = 576, Vn = 5120, En = M / 6;
    const std::vector<Shape3> nova_diff_shapes = {
        {"fwd W_q/W_k", 'n', M, 2 * Dn, Dn, false},     {"fwd W_v/W_o", 'n', M, Dn, Dn, false},
        {"fwd shared up", 'n', M, Fn, Dn, false},       {"fwd shared down", 'n', M, Dn, Fn, false},
        {"fwd routed up", 'n', En, Fn, Dn, false},      {"fwd routed down", 'n', En, Dn, Fn, false},
        {"fwd head", 'n', M, Vn, Dn, false},            {"dx W_q/W_k", 'N', M, Dn, 2 * Dn, true},
        {"dx W_v/W_o", 'N', M, Dn, Dn, true},           {"dx shared up", 'N', M, Dn, Fn, true},
        {"dx shared down", 'N', M, Fn, Dn, true},       {"dx routed up", 'N', En, Dn, Fn, true},
        {"dx routed down", 'N', En, Fn, Dn, true},      {"dx head", 'N', M, Dn, Vn, true},
        {"dW W_q/W_k", 't', 2 * Dn, Dn, M, true},       {"dW W_v/W_o", 't', Dn, Dn, M, true},
        {"dW shared up", 't', Fn, Dn, M, true},         {"dW shared down", 't', Dn, Fn, M, true},
        {"dW routed up", 't', Fn, Dn, En, true},        {"dW routed down", 't', Dn, Fn, En, true},
        {"dW head", 't', Vn, Dn, M, true},
    };
    const std::vector<Shape3>& shapes = cortex       ? cortex_shapes
                                        : supernova2 ? supernova2_shapes
                                        : nova_diff  ? nova_diff_shapes
                                                     : bolt_shapes;
    int64_t big = std::max(V * R + M * H, Vn * M);
    for (const auto& s : shapes) big = std::max({big, s.m * s.k, s.n * s.k, s.m * s.n});
    const size_t nab = size_t(big), nc = size_t(std::max(big, V * D + M * H));
    std::vector<float> a(nab), b(nab), c(nc), c_eigen(nc);
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 7) - 3) * 0.01f, b[i] = float(int(i % 5) - 2) * 0.01f;
    const double peak = peak_gflops(threads);
    std::printf("threads %d (%s time), FP32 FMA peak %.1f GFLOP/s\n", threads, g_cpu_time ? "CPU" : "wall", peak);
    std::printf("%-27s %s %6s %6s %6s  %9s %7s %6s  %9s %7s %6s  %6s  %8s\n", "role", "  ", "M", "N", "K", "eigen ms",
                "GFLOP/s", "%peak", "f32 ms", "GFLOP/s", "%peak", "ratio", "max rel");
    // The head's logits and dh products use E packed once per step (ops/tied_head_ce.hpp): packed here once
    // per kernel, outside the timing.
    kernels::PackedB<float> packed[2];
    for (const auto& s : shapes) {
        if (!only.empty() && std::string(s.role).find(only) == std::string::npos) continue;
        const bool head = s.role[0] == 'h' && s.kind != 't';
        for (int which = 0; which < 2 && head; ++which) {
            kernels::set_f32_kernel(which == 1 && have_f32);
            if (s.kind == 'n') kernels::pack_b_nt(packed[which], s.m, s.n, s.k, b.data(), s.acc);
            else kernels::pack_b_nn(packed[which], s.m, s.n, s.k, b.data(), s.acc);
        }
        auto run = [&](float* out) {
            const kernels::PackedB<float>& p = packed[kernels::f32_kernel_enabled() ? 1 : 0];
            if (s.kind == 'n' && head) kernels::gemm_nt_packed(s.m, s.n, s.k, a.data(), b.data(), out, s.acc, p);
            else if (s.kind == 'N' && head) kernels::gemm_nn_packed(s.m, s.n, s.k, a.data(), b.data(), out, s.acc, p);
            else if (s.kind == 'n') kernels::gemm_nt(s.m, s.n, s.k, a.data(), b.data(), out, s.acc);
            else if (s.kind == 'N') kernels::gemm_nn(s.m, s.n, s.k, a.data(), b.data(), out, s.acc);
            else kernels::gemm_tn(s.m, s.n, s.k, a.data(), b.data(), out, s.acc);
        };
        // The same C before each compared call (accumulating shapes add into it).
        const size_t cn = size_t(s.m * s.n);
        std::fill(c.begin(), c.begin() + long(cn), 0.5f);
        std::fill(c_eigen.begin(), c_eigen.begin() + long(cn), 0.5f);
        kernels::set_f32_kernel(false);
        run(c_eigen.data());
        kernels::set_f32_kernel(have_f32);
        run(c.data());
        double max_rel = 0;
        for (size_t i = 0; i < cn; ++i)
            max_rel = std::max(max_rel, double(std::abs(c[i] - c_eigen[i])) / std::max(1e-3, double(std::abs(c_eigen[i]))));
        double best_e = 1e30, best_f = 1e30;
        for (int r = 0; r < reps; ++r) {
            for (int which = 0; which < 2; ++which) {
                kernels::set_f32_kernel(which == 1 && have_f32);
                const double t0 = now_s();
                run(which ? c.data() : c_eigen.data());
                const double t = now_s() - t0;
                (which ? best_f : best_e) = std::min(which ? best_f : best_e, t);
            }
        }
        const double flop = 2.0 * double(s.m * s.n * s.k);
        const double ge = flop / best_e * 1e-9, gf = flop / best_f * 1e-9;
        std::printf("%-27s %s %6lld %6lld %6lld  %9.3f %7.1f %5.1f%%  %9.3f %7.1f %5.1f%%  %5.2fx  %8.1e", s.role,
                    s.kind == 'n' ? "nt" : s.kind == 'N' ? "nn" : "tn", (long long)s.m, (long long)s.n, (long long)s.k,
                    best_e * 1e3, ge, 100.0 * ge / peak, best_f * 1e3, gf, 100.0 * gf / peak, gf / ge, max_rel);
#if defined(__AVX512F__)
        if (hand_kernel && s.n % 16 == 0) {
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
            const double hand_gf = 2.0 * double(s.m * s.n * s.k) / hb * 1e-9;
            std::printf("   packing-free %6.1f GFLOP/s", hand_gf);
        }
#else
        (void)hand_kernel;
#endif
        std::printf("\n");
    }
    return 0;
}
