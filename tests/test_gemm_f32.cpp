// The AVX-512F f32 GEMM (kernels/gemm_f32.hpp) behind float gemm_nt/nn/tn: against a double-precision
// reference on ragged shapes (M, N, K not multiples of the 14 × 32 tile, several depth blocks, both
// thread splits), overwrite and accumulate, the packed-B path of the tied head, equal bits for 1 and 2
// threads, accumulation as C + Σ, and FLASHLM_ISA hiding it (ctest kernels_isa_env).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/kernels/gemm.hpp"

using namespace flashlm::kernels;
using flashlm::test::randn;

namespace {

// (M, N, K): one element; ragged everything; K over two and three depth blocks (kc ≤ 512); more panels
// than row tiles (threads split columns); M = 4096-like row counts in miniature.
struct Shape3 {
    int64_t M, N, K;
};
// M = 1024: tn's K-strided A has lda = 1024 there, the one case the kernel still packs (gemm_f32.hpp).
// N = 2100: nn's and tn's K-strided B is read in place but for its last, partial panel, which lies in a
// thread's second group of panels (2 depth blocks of 260, 31 panels a group, 66 panels split by column).
const Shape3 k_shapes[] = {{1, 1, 1},       {13, 33, 17},  {29, 65, 300},  {15, 31, 600},    {130, 70, 1100},
                           {30, 200, 40},   {301, 97, 192}, {1024, 35, 70}, {40, 2100, 520}};

enum class Kind { nt, nn, tn };

// A(i, k) and B(k, j) as each product stores them.
double a_at(Kind kind, const std::vector<float>& A, int64_t M, int64_t K, int64_t i, int64_t k) {
    return kind == Kind::tn ? A[size_t(k * M + i)] : A[size_t(i * K + k)];
}
double b_at(Kind kind, const std::vector<float>& B, int64_t N, int64_t K, int64_t k, int64_t j) {
    return kind == Kind::nt ? B[size_t(j * K + k)] : B[size_t(k * N + j)];
}

void run(Kind kind, const Shape3& s, const std::vector<float>& A, const std::vector<float>& B, std::vector<float>& C,
         bool acc) {
    if (kind == Kind::nt) gemm_nt<float>(s.M, s.N, s.K, A.data(), B.data(), C.data(), acc);
    else if (kind == Kind::nn) gemm_nn<float>(s.M, s.N, s.K, A.data(), B.data(), C.data(), acc);
    else gemm_tn<float>(s.M, s.N, s.K, A.data(), B.data(), C.data(), acc);
}

// |C - reference| within a few roundings of the sum of |products| (one f32 sum of K fused products).
void check_reference(Kind kind, const Shape3& s, const std::vector<float>& A, const std::vector<float>& B,
                     const std::vector<float>& C0, const std::vector<float>& C, bool acc) {
    int bad = 0;
    for (int64_t i = 0; i < s.M; ++i)
        for (int64_t j = 0; j < s.N; ++j) {
            double ref = acc ? C0[size_t(i * s.N + j)] : 0.0, mag = std::abs(ref);
            for (int64_t k = 0; k < s.K; ++k) {
                const double p = a_at(kind, A, s.M, s.K, i, k) * b_at(kind, B, s.N, s.K, k, j);
                ref += p, mag += std::abs(p);
            }
            const double err = std::abs(double(C[size_t(i * s.N + j)]) - ref);
            if (err > 1e-30 + 2.0 * double(s.K + 1) * 6e-8 * mag && ++bad <= 3)
                FAIL_CHECK("M " << s.M << " N " << s.N << " K " << s.K << " (" << i << ", " << j << "): " << C[size_t(i * s.N + j)]
                                << " vs " << ref);
        }
    CHECK(bad == 0);
}

// A test that switches the kernel on or off (FLASHLM_F32_GEMM=eigen turns it off) switches it back.
struct Restore {
    bool prev = f32_kernel_enabled();
    ~Restore() { set_f32_kernel(prev); }
};

}  // namespace

TEST_CASE("gemm_f32: nt / nn / tn against a double reference, overwrite and accumulate, equal for 1 and 2 threads") {
    const Restore restore;
    if (!set_f32_kernel(true)) {
        MESSAGE("skipped: the f32 kernel cannot run here (no AVX-512F or FLASHLM_ISA hides it)");
        return;
    }
    const int threads = omp_get_max_threads();
    unsigned seed = 100;
    for (const Shape3& s : k_shapes)
        for (Kind kind : {Kind::nt, Kind::nn, Kind::tn})
            for (bool acc : {false, true}) {
                const auto A = randn(s.M * s.K, ++seed), B = randn(s.N * s.K, ++seed), C0 = randn(s.M * s.N, ++seed);
                std::vector<float> c1 = C0, c2 = C0, again = C0;
                omp_set_num_threads(1);
                run(kind, s, A, B, c1, acc);
                omp_set_num_threads(2);
                run(kind, s, A, B, c2, acc);
                run(kind, s, A, B, again, acc);
                omp_set_num_threads(threads);
                check_reference(kind, s, A, B, C0, c1, acc);
                CHECK(c1 == c2);     // one ordered sum per element, whatever the split
                CHECK(c2 == again);  // and run to run
            }
}

TEST_CASE("gemm_f32: accumulating adds the finished sum to C (C + Σ), so two products add into C in either order") {
    const Restore restore;
    if (!set_f32_kernel(true)) {
        MESSAGE("skipped: the f32 kernel cannot run here");
        return;
    }
    // K = 700: two depth blocks, the partial sums kept apart from C; K = 40: one.
    for (const int64_t K : {int64_t(700), int64_t(40)}) {
        const int64_t M = 31, N = 45;
        const auto x = randn(M * K, 51), w1 = randn(N * K, 52), w2 = randn(N * K, 53);
        std::vector<float> c12(size_t(M * N), 0.0f), c21(c12.size(), 0.0f);
        gemm_nt<float>(M, N, K, x.data(), w1.data(), c12.data(), true);
        gemm_nt<float>(M, N, K, x.data(), w2.data(), c12.data(), true);
        gemm_nt<float>(M, N, K, x.data(), w2.data(), c21.data(), true);
        gemm_nt<float>(M, N, K, x.data(), w1.data(), c21.data(), true);
        CHECK(c12 == c21);
    }
}

TEST_CASE("gemm_f32: B packed once (the tied head's E) gives the unpacked call's bits") {
    const Restore restore;
    if (!set_f32_kernel(true)) {
        MESSAGE("skipped: the f32 kernel cannot run here");
        return;
    }
    const int64_t M = 45, V = 75, D = 19;  // logits z = h Eᵀ, then dh = z E
    const auto h = randn(M * D, 31), E = randn(V * D, 32), z0 = randn(M * V, 33);
    std::vector<float> store(size_t(packed_b_size<float>(M, V, D, false) + packed_b_size<float>(M, D, V, false)) + 16);
    float* into = store.data() + (16 - (reinterpret_cast<uintptr_t>(store.data()) / sizeof(float)) % 16) % 16;  // 64 B
    PackedB<float> e_nt, e_nn;
    pack_b_nt<float>(e_nt, M, V, D, E.data(), false, into);
    pack_b_nn<float>(e_nn, M, D, V, E.data(), false, into + packed_b_size<float>(M, V, D, false));
    CHECK(e_nt.f32);
    std::vector<float> z(size_t(M * V)), z_ref(z.size()), dh(size_t(M * D)), dh_ref(dh.size());
    for (int rep = 0; rep < 2; ++rep) {  // reused across calls, as across the head's row blocks
        gemm_nt_packed<float>(M, V, D, h.data(), E.data(), z.data(), false, e_nt);
        gemm_nt<float>(M, V, D, h.data(), E.data(), z_ref.data(), false);
        CHECK(z == z_ref);
        gemm_nn_packed<float>(M, D, V, z0.data(), E.data(), dh.data(), false, e_nn);
        gemm_nn<float>(M, D, V, z0.data(), E.data(), dh_ref.data(), false);
        CHECK(dh == dh_ref);
    }
    check_reference(Kind::nt, {M, V, D}, h, E, z_ref, z, false);
}

TEST_CASE("gemm_f32: FLASHLM_ISA below avx512 hides it, and Eigen runs the product") {
    const Restore restore;
    const char* env = std::getenv("FLASHLM_ISA");
    const bool hidden = env && *env && std::string(env) != "avx512";
    if (!hidden) {
        const char* opt = std::getenv("FLASHLM_F32_GEMM");  // on by default; other tests restore what they switch
        if (!(opt && std::string(opt) == "eigen")) CHECK(f32_kernel_enabled() == (f32_hooks().gemm != nullptr && cpu_features().avx512f));
        CHECK(set_f32_kernel(true) == (f32_hooks().gemm != nullptr && cpu_features().avx512f));
        MESSAGE("FLASHLM_ISA not set below avx512: the automatic choice checked (ctest kernels_isa_env hides it)");
        return;
    }
    CHECK(!f32_kernel_enabled());
    CHECK(!set_f32_kernel(true));
    const Shape3 s{29, 65, 300};
    const auto A = randn(s.M * s.K, 41), B = randn(s.N * s.K, 42);
    std::vector<float> C(size_t(s.M * s.N));
    run(Kind::nt, s, A, B, C, false);
    check_reference(Kind::nt, s, A, B, C, C, false);
}
