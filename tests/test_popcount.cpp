// The v6.1 C engine's kernels (kernels/ternary_bitplane.hpp, kernels/popcount_gemm.hpp): the bit-plane
// format, the two Q4 quantizers, every popcount GEMM path against the byte-wise definition and a float
// GEMM of the unpacked values, and the transpose scatter-add against a dense reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/kernels/popcount_gemm.hpp"

using namespace flashlm::kernels;
using flashlm::test::randn;

namespace {

std::vector<int8_t> random_ternary(int64_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> d(-1, 1);
    std::vector<int8_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = int8_t(d(rng));
    return v;
}

struct Planes {
    std::vector<uint8_t> v, s;
};

Planes pack(const std::vector<int8_t>& q, int64_t rows, int64_t K) {
    Planes p{std::vector<uint8_t>(size_t(rows * bitplane_bytes(K))), {}};
    p.s.resize(p.v.size());
    pack_bitplanes(q.data(), rows, K, p.v.data(), p.s.data());
    return p;
}

struct GemmShape {
    int64_t M, N, K;
};
// K not a multiple of 8 or 64 (1, 7, 9, 63, 65, 200), one row, one column, N around the column steps
// (16 / 32), K past 31 words (the byte-count flush of the AVX2/NEON paths), and the model's shapes.
const GemmShape k_gemm_shapes[] = {{1, 1, 1},    {1, 1, 7},     {3, 1, 9},    {1, 5, 63},    {4, 17, 65},
                                   {5, 33, 64},  {2, 31, 200},  {9, 16, 8},   {3, 40, 2049}, {70, 384, 192},
                                   {64, 192, 384}, {1, 384, 192}};

}  // namespace

TEST_CASE("bit planes: MSB-first bytes, ceil(K/8) per row, exact round trip") {
    // Row [+1, -1, 0, 0, 0, 0, 0, +1 | -1]: val 0b11000001 0b10000000, sign 0b01000000 0b10000000.
    const std::vector<int8_t> q = {1, -1, 0, 0, 0, 0, 0, 1, -1};
    Planes p = pack(q, 1, 9);
    REQUIRE(p.v.size() == 2);
    CHECK(p.v[0] == 0xC1);
    CHECK(p.v[1] == 0x80);
    CHECK(p.s[0] == 0x40);
    CHECK(p.s[1] == 0x80);
    for (int64_t K : {1, 7, 8, 9, 63, 64, 65, 200}) {
        CAPTURE(K);
        const auto t = random_ternary(3 * K, unsigned(K));
        Planes pk = pack(t, 3, K);
        CHECK(pk.v.size() == size_t(3 * ((K + 7) / 8)));
        std::vector<float> back(t.size());
        unpack_bitplanes(pk.v.data(), pk.s.data(), 3, K, back.data());
        for (size_t i = 0; i < t.size(); ++i) REQUIRE(back[i] == float(t[i]));
        // The padding bits past K stay zero in both planes.
        if (K % 8) {
            const uint8_t pad = uint8_t(0xFFu >> (K % 8));
            for (int r = 0; r < 3; ++r) {
                CHECK((pk.v[size_t(r * bitplane_bytes(K) + K / 8)] & pad) == 0);
                CHECK((pk.s[size_t(r * bitplane_bytes(K) + K / 8)] & pad) == 0);
            }
        }
    }
}

TEST_CASE("Q4 quantizers: activation row threshold 0.6745 mean|x|, weight threshold 0.5 (mean|W| + 1e-8)") {
    const int64_t M = 3, K = 13;
    auto x = randn(M * K, 5);
    x[0] = 0;  // zeros stay zero
    Planes p{std::vector<uint8_t>(size_t(M * bitplane_bytes(K))), {}};
    p.s.resize(p.v.size());
    std::vector<float> mean(M), t(size_t(M * K));
    requantize_rows(x.data(), M, K, p.v.data(), p.s.data(), mean.data());
    unpack_bitplanes(p.v.data(), p.s.data(), M, K, t.data());
    int nonzero = 0;
    for (int64_t i = 0; i < M; ++i) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += std::abs(x[size_t(i * K + k)]);
        CHECK(mean[size_t(i)] == doctest::Approx(s / K).epsilon(1e-6));
        const float tau = 0.6745f * mean[size_t(i)];
        for (int64_t k = 0; k < K; ++k) {
            const float e = x[size_t(i * K + k)], want = std::abs(e) > tau ? (e > 0 ? 1.0f : -1.0f) : 0.0f;
            CHECK(t[size_t(i * K + k)] == want);
            nonzero += want != 0;
        }
    }
    CHECK(nonzero > 0);
    CHECK(nonzero < M * K);

    auto w = randn(5 * K, 6);
    Planes pw{std::vector<uint8_t>(size_t(5 * bitplane_bytes(K))), {}};
    pw.s.resize(pw.v.size());
    const float s = quantize_weight_planes(w.data(), 5, K, pw.v.data(), pw.s.data());
    double sum = 0;
    for (float e : w) sum += std::abs(e);
    CHECK(s == doctest::Approx(sum / double(w.size()) + 1e-8).epsilon(1e-6));
    std::vector<float> tw(w.size());
    unpack_bitplanes(pw.v.data(), pw.s.data(), 5, K, tw.data());
    for (size_t i = 0; i < w.size(); ++i) CHECK(tw[i] == (w[i] / s > 0.5f ? 1.0f : (w[i] / s < -0.5f ? -1.0f : 0.0f)));
}

TEST_CASE("popcount GEMM: every path equals the byte-wise definition and the float product, bit for bit") {
    const auto paths = available_popcount_paths();
    REQUIRE(paths.front() == PopcountPath::scalar);
    std::string names;
    for (auto p : paths) names += popcount_path_name(p) + " ";
    MESSAGE("popcount paths here: " << names << "| active: " << popcount_path_name(active_popcount_path()));
    for (const auto& sh : k_gemm_shapes) {
        CAPTURE(sh.M);
        CAPTURE(sh.N);
        CAPTURE(sh.K);
        const auto xq = random_ternary(sh.M * sh.K, unsigned(sh.M * 7 + sh.K));
        const auto wq = random_ternary(sh.N * sh.K, unsigned(sh.N * 11 + sh.K));
        const Planes x = pack(xq, sh.M, sh.K), w = pack(wq, sh.N, sh.K);
        const int64_t KB = bitplane_bytes(sh.K);
        std::vector<int32_t> ref(size_t(sh.M * sh.N));
        ternary_matmul_popcount_reference(x.v.data(), x.s.data(), w.v.data(), w.s.data(), ref.data(), sh.M, sh.N, KB);
        // The definition against the plain integer product of the unpacked values.
        for (int64_t i = 0; i < sh.M; ++i)
            for (int64_t j = 0; j < sh.N; ++j) {
                int32_t d = 0;
                for (int64_t k = 0; k < sh.K; ++k) d += xq[size_t(i * sh.K + k)] * wq[size_t(j * sh.K + k)];
                REQUIRE(ref[size_t(i * sh.N + j)] == d);
            }
        const OwnedPopcountPanel panel(w.v.data(), w.s.data(), sh.N, KB);
        for (auto p : paths) {
            CAPTURE(popcount_path_name(p));
            std::vector<int32_t> c(size_t(sh.M * sh.N), -12345);
            popcount_gemm(p, x.v.data(), x.s.data(), sh.M, panel.view, c.data(), sh.N);
            CHECK(c == ref);
        }
        std::vector<int32_t> c(size_t(sh.M * sh.N), -12345);
        ternary_matmul_popcount(x.v.data(), x.s.data(), w.v.data(), w.s.data(), c.data(), sh.M, sh.N, KB);
        CHECK(c == ref);
    }
}

// ctest's kernels_isa_env runs this with FLASHLM_ISA=scalar; a plain run checks the automatic choice.
TEST_CASE("popcount GEMM: FLASHLM_ISA chooses the path") {
    const auto paths = available_popcount_paths();
    const char* env = std::getenv("FLASHLM_ISA");
    if (env && std::string(env) == "scalar") {
        CHECK(active_popcount_path() == PopcountPath::scalar);
    } else if (!env) {
        // The best path here: VPOPCNTDQ where the float kernels run AVX-512 and the CPU has it, else AVX2, NEON.
        const PopcountPath want = paths.back() == PopcountPath::avx512 && active_isa() != "avx512" ? PopcountPath::avx2 : paths.back();
        CHECK(active_popcount_path() == want);
    }
    MESSAGE("active popcount path: " << popcount_path_name(active_popcount_path()));
}

TEST_CASE("transpose scatter-add dW[K,N] += sum_i x_i^T G_i equals the dense product") {
    for (const auto& sh : {GemmShape{1, 1, 1}, GemmShape{5, 3, 9}, GemmShape{1, 7, 63}, GemmShape{300, 40, 65},
                           GemmShape{512, 96, 192}}) {
        CAPTURE(sh.M);
        CAPTURE(sh.K);
        const auto xq = random_ternary(sh.M * sh.K, unsigned(sh.M + 3 * sh.K));
        const Planes x = pack(xq, sh.M, sh.K);
        const auto g = randn(sh.M * sh.N, unsigned(sh.N));
        std::vector<double> ref(size_t(sh.K * sh.N), 0.5);
        for (int64_t i = 0; i < sh.M; ++i)
            for (int64_t k = 0; k < sh.K; ++k)
                for (int64_t n = 0; n < sh.N; ++n)
                    ref[size_t(k * sh.N + n)] += double(xq[size_t(i * sh.K + k)]) * g[size_t(i * sh.N + n)];
        std::vector<float> dw(ref.size(), 0.5f);  // accumulates onto what is there
        ternary_transpose_matmul(x.v.data(), x.s.data(), g.data(), sh.M, sh.K, sh.N, dw.data());
        double err = 0, mag = 0;
        for (size_t e = 0; e < ref.size(); ++e) err = std::max(err, std::abs(dw[e] - ref[e])), mag = std::max(mag, std::abs(ref[e]));
        CAPTURE(err);
        CHECK(mag > 0.1);
        CHECK(err <= 1e-5 * std::max(1.0, std::sqrt(double(sh.M))) * mag);
        // double accumulates exactly what the float path sums
        std::vector<double> dwd(ref.size(), 0.5);
        std::vector<double> gd(g.begin(), g.end());
        ternary_transpose_matmul(x.v.data(), x.s.data(), gd.data(), sh.M, sh.K, sh.N, dwd.data());
        for (size_t e = 0; e < ref.size(); ++e) REQUIRE(std::abs(dwd[e] - ref[e]) <= 1e-9 * std::max(1.0, mag));
    }
}
