// bf16 GEMM (kernels/gemm_bf16.hpp, `flashlm train --matmul bf16`): rounding, every kernel the CPU has
// against the scalar reference on ragged shapes and all operand layouts, against the f32 GEMM within the
// bf16 bound, and the f32/bf16 switch of kernels::gemm_nt/nn/tn. Cases skip (with a message) on a CPU
// without AVX512_BF16.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <bit>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/kernels/gemm.hpp"
#include "flashlm/kernels/gemm_bf16.hpp"
#include "flashlm/ops/tied_head_ce.hpp"

using namespace flashlm::kernels;
using flashlm::test::randn;

namespace {

std::vector<Bf16Kernel> kernels_here() {
    std::vector<Bf16Kernel> ks;
    const Bf16Kernel best = bf16_kernel();
    if (best == Bf16Kernel::amx) ks = {Bf16Kernel::avx512, Bf16Kernel::amx};
    if (best == Bf16Kernel::avx512) ks = {Bf16Kernel::avx512};
    return ks;
}

struct Dims {
    int64_t M, N, K;
};
// One row, one column, K = 1 and odd, nothing a multiple of a tile (8/32 rows, 32 columns, 16/32 k).
const Dims k_dims[] = {{1, 1, 1}, {1, 33, 7}, {9, 31, 17}, {17, 65, 193}, {70, 40, 300}, {33, 1, 64}, {40, 96, 2}};

// Random operands of one product in layout lay (0: nt, 1: nn, 2: tn, as gemm_nt/nn/tn pass them).
struct Operands {
    KLayout la, lb;
    int64_t lda, ldb;
    std::vector<float> A, B, C0;
};
Operands random_operands(const Dims& d, int lay, unsigned& seed) {
    Operands o;
    o.la = lay == 2 ? KLayout::k_outer : KLayout::k_inner;
    o.lb = lay == 0 ? KLayout::k_inner : KLayout::k_outer;
    o.lda = o.la == KLayout::k_inner ? d.K : d.M;
    o.ldb = o.lb == KLayout::k_inner ? d.K : d.N;
    o.A = randn(d.M * d.K, seed++), o.B = randn(d.N * d.K, seed++), o.C0 = randn(d.M * d.N, seed++);
    return o;
}

}  // namespace

TEST_CASE("gemm_bf16: round to nearest even, NaN and infinity kept") {
    CHECK(round_bf16(1.0f) == 1.0f);
    CHECK(round_bf16(1.0f + 0x1p-8f) == 1.0f);                 // tie, to even
    CHECK(round_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);   // tie, to even (up)
    CHECK(round_bf16(1.0f + 0x1p-8f + 0x1p-12f) == 1.0f + 0x1p-7f);
    CHECK(round_bf16(-0.3f) == -0.30078125f);
    CHECK(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
    CHECK(std::isnan(from_bf16(to_bf16(std::bit_cast<float>(0x7f800001u)))));  // a NaN whose payload rounds away
    CHECK(round_bf16(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
    CHECK(round_bf16(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());  // past the largest bf16
    CHECK(to_bf16(0x1p-130f) == 0x0000u);  // subnormals become zero of their sign, as vcvtne2ps2bf16 makes them
    CHECK(to_bf16(-std::bit_cast<float>(0x007fffffu)) == 0x8000u);  // (rounding would have reached the smallest normal)
    CHECK(to_bf16(0x1p-126f) == 0x0080u);  // the smallest normal stays
}

TEST_CASE("gemm_bf16: the packing's vector conversion gives to_bf16's bits, pairs in both layouts") {
    if (!bf16_detail::cpu_has_avx512_bf16()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    // Ties both ways, subnormals, NaN, infinities, the largest float, and random values; 2 × 48 of them.
    std::vector<float> v = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -0.3f, 0x1p-130f, -std::bit_cast<float>(0x007fffffu),
                            0x1p-126f, std::numeric_limits<float>::quiet_NaN(), std::bit_cast<float>(0x7f800001u),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::max(), 0.0f, -0.0f};
    const std::vector<float> r = flashlm::test::randn(96, 5);
    v.insert(v.end(), r.begin(), r.begin() + (96 - int64_t(v.size())));
    const int64_t K = 96, kp = K / 2;
    std::vector<uint32_t> rows(kp), lanes(48);
    bf16_detail::pack_row_pairs(v.data(), K, rows.data(), kp);  // K-contiguous: pairs of neighbours
    for (int64_t p = 0; p < kp; ++p) CHECK(rows[p] == (uint32_t(to_bf16(v[2 * p])) | uint32_t(to_bf16(v[2 * p + 1])) << 16));
    bf16_detail::pack_interleave(v.data(), 48, 2, 0, 48, lanes.data(), 1);  // K-strided: rows 0 and 1 lane by lane
    for (int64_t i = 0; i < 48; ++i) CHECK(lanes[i] == (uint32_t(to_bf16(v[i])) | uint32_t(to_bf16(v[48 + i])) << 16));
}

TEST_CASE("gemm_bf16: every kernel against the scalar reference and the f32 GEMM, ragged shapes, all layouts") {
    const auto ks = kernels_here();
    if (ks.empty()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    const Bf16Kernel best = bf16_kernel();
    unsigned seed = 1;
    for (Bf16Kernel k : ks) {
        REQUIRE(set_bf16_kernel(k));
        int64_t exact = 0, total = 0;
        for (const Dims& d : k_dims)
            for (int lay = 0; lay < 3; ++lay)  // nt, nn, tn
                for (bool acc : {false, true}) {
                    const std::string kernel = bf16_kernel_name(k);
                    CAPTURE(kernel);
                    CAPTURE(d.M);
                    CAPTURE(d.N);
                    CAPTURE(d.K);
                    CAPTURE(lay);
                    CAPTURE(acc);
                    const auto [la, lb, lda, ldb, A, B, C0] = random_operands(d, lay, seed);
                    const float alpha = acc ? 0.5f : 1.0f;
                    std::vector<float> C = C0, R = C0;
                    gemm_bf16(d.M, d.N, d.K, A.data(), lda, la, B.data(), ldb, lb, C.data(), d.N, acc, alpha);
                    gemm_bf16_reference(d.M, d.N, d.K, A.data(), lda, la, B.data(), ldb, lb, R.data(), d.N, acc, alpha);
                    for (int64_t m = 0; m < d.M; ++m)
                        for (int64_t n = 0; n < d.N; ++n) {
                            // Σ|a·b| bounds every partial sum: the kernels differ from the reference only in the
                            // f32 rounding of the sum (order within a pair), the f32 GEMM also in the operands.
                            double mag = 0, f32 = 0;
                            for (int64_t kk = 0; kk < d.K; ++kk) {
                                const double a = operand_at(A.data(), lda, la, m, kk), b = operand_at(B.data(), ldb, lb, n, kk);
                                mag += std::abs(a * b);
                                f32 += a * b;
                            }
                            const double c0 = acc ? double(C0[size_t(m * d.N + n)]) : 0.0;
                            const double got = C[size_t(m * d.N + n)], ref = R[size_t(m * d.N + n)];
                            CHECK(std::abs(got - ref) <= 1e-6 * (alpha * mag + std::abs(c0)) + 1e-30);
                            CHECK(std::abs(got - (c0 + alpha * f32)) <= 0x1p-7 * alpha * mag + 1e-6 * std::abs(c0));
                            exact += got == ref;
                            ++total;
                        }
                }
        MESSAGE(std::string(bf16_kernel_name(k)) << ": " << exact << " of " << total << " results bit-identical to the reference");
    }
    set_bf16_kernel(best);
}

TEST_CASE("gemm_bf16: the thread count, depth blocks, A chunks and a B packed once leave every bit unchanged") {
    const auto ks = kernels_here();
    if (ks.empty()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    const Bf16Kernel best = bf16_kernel();
    const int threads0 = flashlm::max_threads();
    auto& kc = bf16_detail::kc_pairs_max();
    auto& chunk = bf16_detail::a_chunk_pairs();
    auto& deep = bf16_detail::deep_b_bytes();
    const int64_t kc0 = kc, chunk0 = chunk, deep0 = deep;
    // The first configuration (defaults, one thread: these B are small, so one depth block) is the
    // baseline. Then avx512 in depth blocks of 7 pairs or fewer (even ones, a ragged last tile row and
    // panel) with 8-tile, 2-tile or 1-tile A chunks (a K-strided A is packed chunk by chunk from 64 rows,
    // else whole); amx ignores the sizes. Rows split (N <= M) and columns split (N > M), deep enough
    // (K = 600) for the threads to fork.
    struct Cfg {
        int64_t kc, chunk, deep;
        int threads;
    };
    const Cfg cfgs[] = {{kc0, chunk0, deep0, 1}, {kc0, chunk0, deep0, 2}, {kc0, chunk0, deep0, 3},
                        {7, 7 * 64, 0, 2},       {7, 7 * 16, 0, 1},       {7, 7 * 16, 0, 2},
                        {3, 1, 0, 3}};
    const Dims dims[] = {{300, 70, 600}, {37, 200, 600}, {70, 33, 129}, {9, 40, 1}};
    unsigned seed = 100;
    for (Bf16Kernel k : ks) {
        REQUIRE(set_bf16_kernel(k));
        for (const Dims& d : dims)
            for (int lay = 0; lay < 3; ++lay)
                for (bool acc : {false, true}) {
                    const std::string kernel = bf16_kernel_name(k);
                    CAPTURE(kernel);
                    CAPTURE(d.M);
                    CAPTURE(d.N);
                    CAPTURE(d.K);
                    CAPTURE(lay);
                    CAPTURE(acc);
                    const auto [la, lb, lda, ldb, A, B, C0] = random_operands(d, lay, seed);
                    std::vector<float> base;
                    for (const Cfg& c : cfgs) {
                        CAPTURE(c.kc);
                        CAPTURE(c.chunk);
                        CAPTURE(c.threads);
                        kc = c.kc, chunk = c.chunk, deep = c.deep;
                        flashlm::set_threads(c.threads);
                        std::vector<float> C = C0, P = C0;
                        gemm_bf16(d.M, d.N, d.K, A.data(), lda, la, B.data(), ldb, lb, C.data(), d.N, acc, 0.75f);
                        if (base.empty()) base = C;
                        CHECK(C == base);
                        Bf16PackedB bp;  // B packed once, as the tied head's E
                        pack_bf16_b(B.data(), ldb, lb, d.N, d.K, bp);
                        gemm_bf16_packed(d.M, A.data(), lda, la, bp, P.data(), d.N, acc, 0.75f);
                        CHECK(P == base);
                    }
                }
    }
    kc = kc0, chunk = chunk0, deep = deep0;
    flashlm::set_threads(threads0);
    set_bf16_kernel(best);
}

TEST_CASE("gemm_bf16: --matmul switches kernels::gemm_nt/nn/tn for float, MatmulScope restores f32") {
    if (!bf16_available()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        CHECK_THROWS(set_matmul(Matmul::bf16));
        return;
    }
    const int64_t M = 37, N = 45, K = 70;
    const auto A = randn(M * K, 11), B = randn(N * K, 12), G = randn(M * N, 13);
    std::vector<float> f32(size_t(M * N)), bf(size_t(M * N)), direct(size_t(M * N));
    gemm_nt<float>(M, N, K, A.data(), B.data(), f32.data(), false);
    gemm_bf16_nt(M, N, K, A.data(), B.data(), direct.data(), false);
    {
        const MatmulScope scope(Matmul::bf16);
        CHECK(matmul_mode() == Matmul::bf16);
        gemm_nt<float>(M, N, K, A.data(), B.data(), bf.data(), false);
        CHECK(bf == direct);
        // nn and tn go the same way: dx = dy W and dW = dyᵀ x.
        std::vector<float> dx(size_t(M * K)), dx_ref(size_t(M * K)), dw(size_t(N * K)), dw_ref(size_t(N * K));
        gemm_nn<float>(M, K, N, G.data(), B.data(), dx.data(), false);
        gemm_bf16_nn(M, K, N, G.data(), B.data(), dx_ref.data(), false);
        CHECK(dx == dx_ref);
        gemm_tn<float>(N, K, M, G.data(), A.data(), dw.data(), false);
        gemm_bf16_tn(N, K, M, G.data(), A.data(), dw_ref.data(), false);
        CHECK(dw == dw_ref);
    }
    CHECK(matmul_mode() == Matmul::f32);
    CHECK(bf != f32);  // the operands were rounded: the two modes really differ
    std::vector<float> again(size_t(M * N));
    gemm_nt<float>(M, N, K, A.data(), B.data(), again.data(), false);
    CHECK(again == f32);
    CHECK_THROWS_AS(parse_matmul("fp16"), std::invalid_argument);
}

TEST_CASE("gemm_bf16: FLASHLM_ISA below avx512 hides it and --matmul bf16 fails with a message") {
    const char* env = std::getenv("FLASHLM_ISA");
    if (!env || std::string(env).empty() || std::string(env) == "avx512") {
        MESSAGE("FLASHLM_ISA not set below avx512: nothing to check here (ctest kernels_isa_env sets it)");
        return;
    }
    CHECK(!bf16_available());
    try {
        set_matmul(Matmul::bf16);
        FAIL("set_matmul(bf16) did not throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("AVX512_BF16") != std::string::npos);
    }
    CHECK(matmul_mode() == Matmul::f32);
}

TEST_CASE("gemm_bf16: a B packed once (the tied head's) gives the same numbers as packing per call") {
    if (!bf16_available()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    const int64_t M = 21, V = 75, D = 19;  // logits z = h Eᵀ, then dh = z E
    const auto h = randn(M * D, 21), E = randn(V * D, 22), z0 = randn(M * V, 23);
    Bf16PackedB e_nt, e_nn;
    pack_bf16_b(E.data(), D, KLayout::k_inner, V, D, e_nt);
    pack_bf16_b(E.data(), D, KLayout::k_outer, D, V, e_nn);
    std::vector<float> z(size_t(M * V)), z_ref(size_t(M * V)), dh(size_t(M * D)), dh_ref(size_t(M * D));
    for (int rep = 0; rep < 2; ++rep) {  // reused across calls, as across row blocks
        gemm_bf16_packed(M, h.data(), D, KLayout::k_inner, e_nt, z.data(), V, false);
        gemm_bf16_nt(M, V, D, h.data(), E.data(), z_ref.data(), false);
        CHECK(z == z_ref);
        gemm_bf16_packed(M, z0.data(), V, KLayout::k_inner, e_nn, dh.data(), D, false);
        gemm_bf16_nn(M, D, V, z0.data(), E.data(), dh_ref.data(), false);
        CHECK(dh == dh_ref);
    }
}

TEST_CASE("gemm_bf16: the tied head + cross-entropy under --matmul bf16 is the f32 one within bf16 error") {
    if (!bf16_available()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    // More rows than one 256-row block, so that the packed embedding is reused across blocks.
    const int64_t M = 300, D = 40, V = 70;
    const auto h = randn(M * D, 31), E = randn(V * D, 32);
    std::vector<int32_t> targets(static_cast<size_t>(M), 0);
    for (int64_t i = 0; i < M; ++i) targets[size_t(i)] = int32_t((i * 7 + 3) % V);
    struct Result {
        float loss;
        std::vector<float> dh, dE;
    };
    auto run = [&](Matmul mode) {
        const MatmulScope scope(mode);
        flashlm::Tape<float> tape;
        std::vector<float> hv = h, ev = E, hg(h.size()), eg(E.size());
        flashlm::Tensor<float> ht(hv.data(), hg.data(), flashlm::Shape{M, D}), et(ev.data(), eg.data(), flashlm::Shape{V, D});
        flashlm::Tensor<float> loss = flashlm::ops::tied_head_cross_entropy(tape, ht, et, targets.data());
        tape.backward(loss);
        return Result{loss.data[0], hg, eg};
    };
    const Result f = run(Matmul::f32), b = run(Matmul::bf16);
    CHECK(b.loss != f.loss);
    CHECK(std::abs(b.loss - f.loss) < 1e-2f * std::abs(f.loss));
    auto rel = [](const std::vector<float>& x, const std::vector<float>& y) {
        double num = 0, den = 0;
        for (size_t i = 0; i < x.size(); ++i) num += double(x[i] - y[i]) * (x[i] - y[i]), den += double(y[i]) * y[i];
        return std::sqrt(num / den);
    };
    CHECK(rel(b.dh, f.dh) < 2e-2);
    CHECK(rel(b.dE, f.dE) < 2e-2);
    MESSAGE("loss f32 " << f.loss << ", bf16 " << b.loss << "; relative L2 error dh " << rel(b.dh, f.dh) << ", dE "
                        << rel(b.dE, f.dE));
}
