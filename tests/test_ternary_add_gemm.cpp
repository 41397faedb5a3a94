// The add kernel for f32 products with a ternary operand (kernels/ternary_add_gemm.hpp): forward
// (y = x Wᵀ) and input gradient (dx = dy W) against a double reference, with per-tensor and per-row
// scales, ragged shapes, several depth blocks, accumulation as C + Σ, the same bits for 1 and 2 threads;
// the weights it must refuse; and the ternary ops that call it (ops/ternary_linear.hpp) against the FMA
// GEMM they ran before.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "flashlm/kernels/ternary_add_gemm.hpp"
#include "flashlm/ops/bitlinear.hpp"
#include "flashlm/ops/bitlinear_rows.hpp"
#include "tests/test_random.hpp"

using namespace flashlm;
using namespace flashlm::kernels;

namespace {

// Restores the switch and the thread count whatever a test does.
struct Restore {
    bool on = ternary_add_enabled();
    int threads = max_threads();
    ~Restore() {
        set_ternary_add(on);
        set_threads(threads);
    }
};

// N rows of K entries in {-1, 0, 1} (a third each), row n scaled by scale(n). varied: the share of
// zeros follows the row (even rows) or the column (odd rows), from none to ~97 %, so that the lists of W
// and of Wᵀ differ in length from row to row and the kernel's grouping by length reorders them.
template <class F>
std::vector<float> ternary(int64_t N, int64_t K, unsigned seed, F scale, bool varied = false) {
    const auto r = test::randn(N * K, seed);
    static constexpr float cut[5] = {0.0f, 0.43f, 1.0f, 2.0f, 0.2f};
    std::vector<float> w(r.size());
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
            const float v = r[size_t(n * K + k)], c = varied ? cut[(n % 2 ? k : n / 2) % 5] : 0.43f;
            w[size_t(n * K + k)] = (v > c ? 1.0f : v < -c ? -1.0f : 0.0f) * scale(n);
        }
    return w;
}

// |got − want| within float rounding of the sum of |terms| (a table entry sums up to three terms before the row's sum).
void check_close(const std::vector<double>& want, const std::vector<double>& mag, const std::vector<float>& got) {
    REQUIRE(got.size() == want.size());
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i)
        if (!(std::abs(double(got[i]) - want[i]) <= 4e-6 * mag[i] + 1e-6)) ++bad;
    CHECK(bad == 0);
}

}  // namespace

TEST_CASE("ternary_add: nt and nn against a double reference, overwrite and accumulate, equal for 1 and 2 threads") {
    const Restore restore;
    if (!set_ternary_add(true)) {
        MESSAGE("skipped: the add kernel cannot run here (no AVX-512F or FLASHLM_ISA hides it)");
        return;
    }
    struct S {
        int64_t M, N, K;
        bool rows;            // per-row scales (else one per tensor)
        bool varied = false;  // zeros from none to most, by row and by column
    };
    // Token tails (M % 32), row tails (N % 4, N % 16), K not a multiple of 3 or 48, K over one depth block
    // (96) and over several (500, 1000), an N whose transposed list has several depth blocks in dx, and
    // lists of very different lengths.
    const S shapes[] = {{64, 32, 32, false},       {100, 50, 37, false},      {256, 512, 192, true},
                        {77, 192, 500, true},      {130, 33, 250, false},     {65, 401, 1000, false},
                        {96, 203, 97, true, true}, {70, 66, 301, false, true}};
    unsigned seed = 100;
    for (const S& s : shapes) {
        CAPTURE(s.M);
        CAPTURE(s.N);
        CAPTURE(s.K);
        CAPTURE(s.rows);
        CAPTURE(s.varied);
        const auto W = ternary(
            s.N, s.K, ++seed, [&](int64_t n) { return s.rows ? 0.5f + 0.01f * float(n) : 0.37f; }, s.varied);
        const auto x = test::randn(s.M * s.K, ++seed), dy = test::randn(s.M * s.N, ++seed);
        for (const bool acc : {false, true}) {
            CAPTURE(acc);
            std::vector<double> y_ref(size_t(s.M * s.N)), y_mag(y_ref.size()), dx_ref(size_t(s.M * s.K)),
                dx_mag(dx_ref.size());
            for (int64_t m = 0; m < s.M; ++m)
                for (int64_t n = 0; n < s.N; ++n) {
                    double a = acc ? 1.5 : 0.0, g = acc ? 1.5 : 0.0;
                    for (int64_t k = 0; k < s.K; ++k) {
                        const double t = double(x[size_t(m * s.K + k)]) * W[size_t(n * s.K + k)];
                        a += t, g += std::abs(t);
                    }
                    y_ref[size_t(m * s.N + n)] = a, y_mag[size_t(m * s.N + n)] = g;
                }
            for (int64_t m = 0; m < s.M; ++m)
                for (int64_t k = 0; k < s.K; ++k) {
                    double a = acc ? -2.0 : 0.0, g = acc ? 2.0 : 0.0;
                    for (int64_t n = 0; n < s.N; ++n) {
                        const double t = double(dy[size_t(m * s.N + n)]) * W[size_t(n * s.K + k)];
                        a += t, g += std::abs(t);
                    }
                    dx_ref[size_t(m * s.K + k)] = a, dx_mag[size_t(m * s.K + k)] = g;
                }
            std::vector<float> y1, y2, dx1, dx2;
            for (const int threads : {1, 2}) {
                set_threads(threads);
                std::vector<float> y(y_ref.size(), acc ? 1.5f : NAN), dx(dx_ref.size(), acc ? -2.0f : NAN);
                CHECK(ternary_add_nt(s.M, s.N, s.K, x.data(), W.data(), y.data(), acc));
                CHECK(ternary_add_nn(s.M, s.K, s.N, dy.data(), W.data(), dx.data(), acc));
                check_close(y_ref, y_mag, y);
                check_close(dx_ref, dx_mag, dx);
                (threads == 1 ? y1 : y2) = y;
                (threads == 1 ? dx1 : dx2) = dx;
            }
            CHECK(y1 == y2);
            CHECK(dx1 == dx2);
        }
    }
}

TEST_CASE("ternary_add: refuses weights that are not scale × {-1, 0, 1} per row, and writes nothing then") {
    const Restore restore;
    if (!set_ternary_add(true)) {
        MESSAGE("skipped: the add kernel cannot run here");
        return;
    }
    const int64_t M = 64, N = 40, K = 48;
    const auto x = test::randn(M * K, 7);
    auto W = ternary(N, K, 8, [](int64_t) { return 0.25f; });
    std::vector<float> y(size_t(M * N), 3.0f);
    auto refused = [&](const std::vector<float>& w) {
        std::fill(y.begin(), y.end(), 3.0f);
        const bool nt = ternary_add_nt(M, N, K, x.data(), w.data(), y.data(), false);
        const bool nn = ternary_add_nn(M, N, K, x.data(), w.data(), y.data(), true);  // dx of a [K, N] weight
        return !nt && !nn && std::all_of(y.begin(), y.end(), [](float v) { return v == 3.0f; });
    };
    CHECK(!refused(W));
    CHECK(refused(test::randn(N * K, 9)));  // dense
    auto two = W;
    two[5] = two[5] != 0.0f ? two[5] * 2 : 0.5f;  // a second magnitude in row 0
    CHECK(refused(two));
    auto nan = W;
    nan[size_t(3 * K + 7)] = NAN;
    CHECK(refused(nan));
    auto inf = W;
    inf[size_t(N * K - 1)] = -INFINITY;
    CHECK(refused(inf));
    // too few tokens for a block pair: the GEMM is cheaper
    CHECK(!ternary_add_nt(M / 4, N, K, x.data(), W.data(), y.data(), false));
    // switched off
    set_ternary_add(false);
    CHECK(!ternary_add_nt(M, N, K, x.data(), W.data(), y.data(), false));
}

TEST_CASE("ternary_add: rows of zeros, and a weight of zeros, give zeros (a zero row scale in dx)") {
    const Restore restore;
    if (!set_ternary_add(true)) {
        MESSAGE("skipped: the add kernel cannot run here");
        return;
    }
    const int64_t M = 70, N = 36, K = 40;
    auto W = ternary(N, K, 11, [](int64_t n) { return 1.0f + float(n); });
    for (int64_t k = 0; k < K; ++k) W[size_t(5 * K + k)] = 0.0f;  // row 5 all zero: its scale is 0
    const auto x = test::randn(M * K, 12), dy = test::randn(M * N, 13);
    std::vector<float> y(size_t(M * N)), dx(size_t(M * K));
    REQUIRE(ternary_add_nt(M, N, K, x.data(), W.data(), y.data(), false));
    REQUIRE(ternary_add_nn(M, K, N, dy.data(), W.data(), dx.data(), false));
    for (int64_t m = 0; m < M; ++m) CHECK(y[size_t(m * N + 5)] == 0.0f);
    for (int64_t k = 0; k < K; ++k) {  // dx[0, k] = Σ_n dy[0, n] W[n, k] (row 5 adds nothing)
        double a = 0;
        for (int64_t n = 0; n < N; ++n) a += double(dy[size_t(n)]) * W[size_t(n * K + k)];
        CHECK(dx[size_t(k)] == doctest::Approx(a).epsilon(1e-5));
    }
    const std::vector<float> zeros(size_t(N * K), 0.0f);
    REQUIRE(ternary_add_nt(M, N, K, x.data(), zeros.data(), y.data(), false));
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("ternary_add: BitLinear forward and gradients through it match the FMA GEMM's") {
    const Restore restore;
    if (!set_ternary_add(true)) {
        MESSAGE("skipped: the add kernel cannot run here");
        return;
    }
    const int64_t M = 120, K = 96, N = 80;
    const auto xv = test::randn(M * K, 21), wv = test::randn(N * K, 22, 0.05f), gv = test::randn(M * N, 23);
    // absmean (one scale) and Q2 rows (a scale per row): both take the add kernel
    for (const bool rows : {false, true}) {
        CAPTURE(rows);
        std::vector<float> y[2], dx[2], dw[2];
        for (const bool add : {false, true}) {
            set_ternary_add(add);
            std::vector<float> x = xv, w = wv, gx(x.size(), 0.0f), gw(w.size(), 0.0f);
            Tape<float> tape;
            tape.set_retain_grads(true);  // the output gradient is seeded by hand
            const Tensor<float> X(x.data(), gx.data(), Shape{M, K}), W(w.data(), gw.data(), Shape{N, K});
            const Tensor<float> out = rows ? ops::bitlinear_rows(tape, X, W) : ops::bitlinear(tape, X, W);
            REQUIRE(out.grad);
            std::copy(gv.begin(), gv.end(), out.grad);
            tape.run_backward();
            y[add].assign(out.data, out.data + M * N);
            dx[add] = gx;
            dw[add] = gw;
        }
        for (size_t i = 0; i < y[0].size(); ++i) REQUIRE(y[1][i] == doctest::Approx(y[0][i]).epsilon(1e-5).scale(1.0));
        for (size_t i = 0; i < dx[0].size(); ++i)
            REQUIRE(dx[1][i] == doctest::Approx(dx[0][i]).epsilon(1e-5).scale(1.0));
        CHECK(dw[1] == dw[0]);  // dW = dyᵀ x reads no weight: the same GEMM
        CHECK(y[1] != y[0]);    // the add kernel did run (its sums round differently)
        CHECK(dx[1] != dx[0]);
    }
}

TEST_CASE("ternary_add: FLASHLM_ISA below avx512 hides it") {
    const Restore restore;
    const char* env = std::getenv("FLASHLM_ISA");
    const bool hidden = env && *env && std::string(env) != "avx512";
    if (!hidden) {
        const char* opt = std::getenv("FLASHLM_TERNARY_GEMM");
        if (!(opt && std::string(opt) == "fma")) CHECK(ternary_add_enabled() == cpu_features().avx512f);
        MESSAGE("FLASHLM_ISA not set below avx512: the automatic choice checked (ctest kernels_isa_env hides it)");
        return;
    }
    CHECK(!ternary_add_enabled());
    CHECK(!set_ternary_add(true));
    const int64_t M = 64, N = 32, K = 32;
    const auto x = test::randn(M * K, 31);
    const auto W = ternary(N, K, 32, [](int64_t) { return 1.0f; });
    std::vector<float> y(size_t(M * N));
    CHECK(!ternary_add_nt(M, N, K, x.data(), W.data(), y.data(), false));
}
