// kernels/gemm_prepacked.hpp: Eigen's blocked GEMM loop with the lhs (the row-major product's B) packed once
// for several row chunks must give the same bits as Eigen's own loop on each chunk, for the three operand
// layouts of gemm_nt/nn/tn, and kernels::gemm_* (which takes that path when a thread has several chunks)
// must match a double-precision reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/core/parallel.hpp"
#include "flashlm/kernels/gemm.hpp"

using namespace flashlm::kernels;

namespace {

// Row-major C[m, n] += A · B over row chunks [c0, c1): once with Eigen's run per chunk, once with B packed once.
template <class T, int LhsOrder, int RhsOrder>
void check_prepacked_bits(int64_t m, int64_t n, int64_t k, int64_t chunk) {
    const int64_t lda = LhsOrder == Eigen::RowMajor ? k : m, ldb = RhsOrder == Eigen::RowMajor ? n : k;
    const int64_t row_step = LhsOrder == Eigen::RowMajor ? lda : 1;
    const std::vector<float> af = flashlm::test::randn(size_t(m * k), 1), bf = flashlm::test::randn(size_t(k * n), 2);
    const std::vector<T> a(af.begin(), af.end()), b(bf.begin(), bf.end());
    std::vector<T> ref(size_t(m * n), T(0.5)), got(size_t(m * n), T(0.5));
    detail::Workspace<T> ws;
    for (int64_t c0 = 0; c0 < m; c0 += chunk) {
        const int64_t c1 = std::min(m, c0 + chunk);
        detail::gemm_acc<T, LhsOrder, RhsOrder>(c1 - c0, n, k, a.data() + c0 * row_step, lda, b.data(), ldb,
                                                    ref.data() + c0 * n, n, T(1), 0);
        detail::Blocking<T> blocking(c1 - c0, n, k, ws);
        const Eigen::Index mc = std::min<Eigen::Index>(n, blocking.mc()), kc = blocking.kc();
        if (!ws.lhs.ready || ws.lhs.mc != mc || ws.lhs.kc != kc)
            detail::pack_lhs_all<T, LhsOrder, RhsOrder>(ws.lhs, b.data(), ldb, n, k, mc, kc);
        detail::run_prepacked<T, LhsOrder, RhsOrder>(ws.lhs, c1 - c0, a.data() + c0 * row_step, lda,
                                                         got.data() + c0 * n, n, T(1), blocking.nc(), blocking.blockB());
    }
    CHECK(std::memcmp(ref.data(), got.data(), ref.size() * sizeof(T)) == 0);
    CHECK(ref[size_t(m * n - 1)] != T(0.5));
}

}  // namespace

TEST_CASE("gemm_prepacked: B packed once gives Eigen's bits on every chunk, all three layouts") {
    // Ragged sizes: n not a multiple of Eigen's 48-row panel, a last chunk shorter than the others, depths
    // below and above Eigen's kc (several depth blocks), and a wide n (several lhs row blocks).
    const int64_t shapes[][4] = {{300, 77, 192, 128}, {257, 200, 1000, 64}, {130, 700, 40, 48}, {64, 33, 3, 16}};
    for (const auto& s : shapes) {
        CAPTURE(s[0]);
        check_prepacked_bits<float, Eigen::RowMajor, Eigen::ColMajor>(s[0], s[1], s[2], s[3]);  // nt
        check_prepacked_bits<float, Eigen::RowMajor, Eigen::RowMajor>(s[0], s[1], s[2], s[3]);  // nn
        check_prepacked_bits<float, Eigen::ColMajor, Eigen::RowMajor>(s[0], s[1], s[2], s[3]);  // tn
        check_prepacked_bits<double, Eigen::RowMajor, Eigen::ColMajor>(s[0], s[1], s[2], s[3]);  // f64 (gradcheck)
        check_prepacked_bits<double, Eigen::ColMajor, Eigen::RowMajor>(s[0], s[1], s[2], s[3]);
    }
}

TEST_CASE("gemm_prepacked: gemm_nt/nn/tn over several chunks against a double reference") {
    // M = 1000 rows of N = 512 columns: chunks of 256 rows, so one thread runs four on the prepacked path.
    const int64_t M = 1000, N = 512, K = 96;
    const std::vector<float> x = flashlm::test::randn(size_t(M * K), 3), w = flashlm::test::randn(size_t(N * K), 4);
    std::vector<float> y(size_t(M * N), 7.0f);
    gemm_nt<float>(M, N, K, x.data(), w.data(), y.data(), false);
    std::vector<float> dx(size_t(M * K), 7.0f);
    gemm_nn<float>(M, K, N, y.data(), w.data(), dx.data(), false);
    double worst_y = 0, worst_dx = 0;
    for (int64_t i = 0; i < M; i += 37) {
        for (int64_t j = 0; j < N; ++j) {
            double r = 0, mag = 0;
            for (int64_t p = 0; p < K; ++p) r += double(x[size_t(i * K + p)]) * w[size_t(j * K + p)], mag += std::fabs(double(x[size_t(i * K + p)]) * w[size_t(j * K + p)]);
            worst_y = std::max(worst_y, std::fabs(r - y[size_t(i * N + j)]) / (mag + 1e-30));
        }
        for (int64_t p = 0; p < K; ++p) {
            double r = 0, mag = 0;
            for (int64_t j = 0; j < N; ++j) r += double(y[size_t(i * N + j)]) * w[size_t(j * K + p)], mag += std::fabs(double(y[size_t(i * N + j)]) * w[size_t(j * K + p)]);
            worst_dx = std::max(worst_dx, std::fabs(r - dx[size_t(i * K + p)]) / (mag + 1e-30));
        }
    }
    CHECK(worst_y < 1e-5);
    CHECK(worst_dx < 1e-5);
}

TEST_CASE("gemm_nt_packed / gemm_nn_packed: B packed once gives gemm_nt / gemm_nn's bits, also for other row counts") {
    // The tied head's shapes, scaled down: row blocks of R rows against a wide B; the last block is shorter,
    // so its blocking may differ from the packed one and it must fall back to Eigen's own loop.
    const int64_t R = 256, V = 1500, D = 40;
    const std::vector<float> h = flashlm::test::randn(R * D, 5), e = flashlm::test::randn(V * D, 6);
    const int64_t nz = packed_b_size<float>(R, V, D, false), ndh = packed_b_size<float>(R, D, V, false);
    CHECK(nz >= V * D);
    CHECK(nz % 16 == 0);
    flashlm::Storage<float> panels(size_t(nz + ndh));  // 64-byte aligned, as Eigen's packed stores need
    PackedB<float> pz, pdh;
    pack_b_nt(pz, R, V, D, e.data(), false, panels.data());
    pack_b_nn(pdh, R, D, V, e.data(), false, panels.data() + nz);
    for (const int64_t r : {R, int64_t(100), int64_t(17)}) {
        CAPTURE(r);
        std::vector<float> z(size_t(r * V)), z2(size_t(r * V)), dh(size_t(r * D)), dh2(size_t(r * D));
        gemm_nt<float>(r, V, D, h.data(), e.data(), z.data(), false);
        gemm_nt_packed<float>(r, V, D, h.data(), e.data(), z2.data(), false, pz);
        CHECK(std::memcmp(z.data(), z2.data(), z.size() * sizeof(float)) == 0);
        gemm_nn<float>(r, D, V, z.data(), e.data(), dh.data(), false);
        gemm_nn_packed<float>(r, D, V, z.data(), e.data(), dh2.data(), false, pdh);
        CHECK(std::memcmp(dh.data(), dh2.data(), dh.size() * sizeof(float)) == 0);
    }
    CHECK(pz.data == panels.data());
    CHECK(pz.rows == V);
    CHECK(pdh.depth == V);
}
