// Packed ternary weights and the dispatched kernels: the packing against the training quantizer, every
// SIMD path the CPU has against the scalar path, the scalar path against a naive float GEMM.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

#include "tests/test_random.hpp"
#include "flashlm/kernels/dense.hpp"
#include "flashlm/kernels/ternary_matmul.hpp"
#include "flashlm/kernels/ternary_tiles.hpp"
#include "flashlm/ops/bitlinear.hpp"
#include "flashlm/optim/clip.hpp"
#include "flashlm/train/sampler.hpp"

using namespace flashlm::kernels;
using flashlm::test::randn;

namespace {

struct Shape {
    int64_t rows, cols, M;
};
// Ragged K (1, 63, 65, 1000), one row, one column, rows not a multiple of the row block, M above the
// input-row block, and shapes big enough to take the OpenMP path.
const Shape k_shapes[] = {{1, 1, 1},   {1, 1000, 1}, {7, 1, 3},     {7, 1000, 1},  {7, 63, 2},   {7, 64, 1},
                          {33, 65, 5}, {1, 128, 70}, {384, 192, 1}, {192, 512, 3}, {100, 1000, 70}};

struct Case {
    PackedTernary W;
    std::vector<float> x, wq;  // inputs, dequantised weights
};

Case make_case(const Shape& s, unsigned seed) {
    Case c;
    const auto w = randn(s.rows * s.cols, seed, 0.05f);
    c.W = pack_ternary(w.data(), s.rows, s.cols);
    c.x = randn(s.M * s.cols, seed + 1);
    c.wq.resize(w.size());
    unpack_ternary(c.W, c.wq.data());
    return c;
}

std::vector<float> run_exact(const Case& c, int64_t M) {
    std::vector<float> y(size_t(M * c.W.rows), NAN);
    if (M == 1)
        ternary_matvec(c.W, c.x.data(), y.data());
    else
        ternary_matmul(c.W, c.x.data(), M, y.data());
    return y;
}

std::vector<float> run_int8(const Case& c, int64_t M) {
    std::vector<int8_t> q(c.x.size());
    std::vector<float> s(static_cast<size_t>(M)), y(size_t(M * c.W.rows), NAN);
    quantize_activations_int8(c.x.data(), M, c.W.cols, q.data(), s.data());
    if (M == 1)
        ternary_matvec_int8(c.W, q.data(), s[0], y.data());
    else
        ternary_matmul_int8(c.W, q.data(), s.data(), M, y.data());
    return y;
}

// Bound for reorderings of a float sum: relative to Σ|terms| rather than to the (possibly cancelled) sum.
double term_magnitude(const Case& c, int64_t m, int64_t r) {
    double s = 0;
    for (int64_t k = 0; k < c.W.cols; ++k) s += std::abs(double(c.wq[r * c.W.cols + k]) * c.x[m * c.W.cols + k]);
    return s;
}

}  // namespace

// First test case in the file, so it is the first to ask for the ISA: ctest runs it alone with
// FLASHLM_ISA=scalar (kernels_isa_env), plain runs check the automatic choice.
TEST_CASE("FLASHLM_ISA picks the path at start-up") {
    const auto avail = available_isas();
    REQUIRE(!avail.empty());
    CHECK(avail.front() == "scalar");
    if (const char* env = std::getenv("FLASHLM_ISA"))
        CHECK(active_isa() == env);
    else
        CHECK(active_isa() == avail.back());
    MESSAGE("active ISA " << active_isa() << ", available: " << avail.size() << " paths, best " << avail.back());
}

TEST_CASE("set_isa forces a path and refuses unknown names") {
    CHECK_FALSE(set_isa("mmx"));
#if defined(__x86_64__) || defined(__i386__)
    CHECK_FALSE(set_isa("neon"));
#else
    CHECK_FALSE(set_isa("avx2"));
#endif
    CHECK(set_isa("scalar"));
    CHECK(active_isa() == "scalar");
    for (const auto& name : available_isas()) {
        CHECK(set_isa(name));
        CHECK(active_isa() == name);
    }
    CHECK(set_isa("auto"));
    CHECK(active_isa() == available_isas().back());
}

TEST_CASE("pack_ternary reproduces the Q1 quantizer exactly") {
    for (const Shape& s : k_shapes) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        const auto w = randn(s.rows * s.cols, 7, 0.02f);
        std::vector<float> ref(w.size()), got(w.size());
        const float alpha = flashlm::ops::quantize_absmean(w.data(), ref.data(), int64_t(w.size()));
        const PackedTernary p = pack_ternary(w.data(), s.rows, s.cols);
        CHECK(p.scale == alpha);
        CHECK(p.cols_padded % 64 == 0);
        CHECK(p.cols_padded - p.cols < 64);
        CHECK(p.planes.size() == size_t(p.rows * p.cols_padded / 32));  // 2 bits per (padded) weight
        unpack_ternary(p, got.data());
        // Equal as floats; a weight rounded to zero may be -0 in ref and is +0 after unpacking.
        int64_t mismatches = 0;
        for (size_t i = 0; i < w.size(); ++i) mismatches += got[i] != ref[i];
        CHECK(mismatches == 0);
        for (int64_t r = 0; r < p.rows; ++r) {
            double sum = 0;
            for (int64_t k = 0; k < p.cols; ++k) sum += ref[size_t(r * p.cols + k)] / alpha;
            CHECK(p.row_sums[size_t(r)] == int32_t(std::lround(sum)));
        }
    }
}

TEST_CASE("pack_ternary rounds half to even and clamps") {
    // α = 10 / 8 = 1.25 (α + 1e-8 rounds back to 1.25): W / α = 0.4, -0.4, 1.2, -1.2, 2.4, -2.4, 0, 0.
    const float w[8] = {0.5f, -0.5f, 1.5f, -1.5f, 3.0f, -3.0f, 0.0f, 0.0f};
    const PackedTernary p = pack_ternary(w, 2, 4);
    CHECK(p.scale == 1.25f);
    std::vector<float> out(8);
    unpack_ternary(p, out.data());
    const float expect[8] = {0, 0, 1.25f, -1.25f, 1.25f, -1.25f, 0, 0};
    for (int i = 0; i < 8; ++i) CHECK(out[size_t(i)] == expect[i]);
    CHECK(p.row_sums[0] == 0);
    CHECK(p.row_sums[1] == 0);

    const float half[4] = {0.5f, -0.5f, 1.5f, 1.5f};  // α = 1 exactly
    const PackedTernary h = pack_ternary(half, 1, 4);
    CHECK(h.scale == 1.0f);
    unpack_ternary(h, out.data());
    CHECK(out[0] == 0.0f);  // round-half-away would give +1
    CHECK(out[1] == 0.0f);
    CHECK(out[2] == 1.0f);
    CHECK(out[3] == 1.0f);
}

TEST_CASE("pack_ternary_codes: layout, padding and validation") {
    const int8_t q[2 * 70] = {1, -1, 0, 1};  // row 0 starts +1 -1 0 +1, the rest (and row 1) is zero
    std::vector<int8_t> codes(q, q + 140);
    codes[69] = -1;   // row 0, block 1, bit 5
    codes[70] = 1;    // row 1, k = 0
    const PackedTernary p = pack_ternary_codes(codes.data(), 2, 70, 0.5f);
    CHECK(p.cols_padded == 128);
    CHECK(p.blocks() == 2);
    CHECK(p.row(0)[0] == 0b1011u);  // nonzero plane
    CHECK(p.row(0)[1] == 0b0010u);  // negative plane
    CHECK(p.row(0)[2] == (uint64_t(1) << 5));
    CHECK(p.row(0)[3] == (uint64_t(1) << 5));
    CHECK(p.row(1)[0] == 1u);
    CHECK(p.row_sums[0] == 0);
    CHECK(p.row_sums[1] == 1);
    std::vector<float> out(140);
    unpack_ternary(p, out.data());
    CHECK(out[0] == 0.5f);
    CHECK(out[1] == -0.5f);
    CHECK(out[69] == -0.5f);
    CHECK(out[70] == 0.5f);
    codes[3] = 2;
    CHECK_THROWS_AS(pack_ternary_codes(codes.data(), 2, 70, 0.5f), std::invalid_argument);
}

TEST_CASE("quantize_activations_int8: per-row absmax, half to even") {
    const float x[8] = {1.0f, -2.0f, 0.5f, 0.0f, 0, 0, 0, 0};
    int8_t q[8];
    float s[2];
    quantize_activations_int8(x, 2, 4, q, s);
    CHECK(s[0] == 63.5f);
    CHECK(q[0] == 64);  // 63.5 rounds to even
    CHECK(q[1] == -127);
    CHECK(q[2] == 32);  // 31.75
    CHECK(q[3] == 0);
    CHECK(s[1] == doctest::Approx(127.0f / 1e-5f));  // all-zero row: clamped max, zero codes
    for (int i = 4; i < 8; ++i) CHECK(q[i] == 0);
    // A NaN: the row's scale is NaN (so are its outputs), its codes a defined -127, the next row untouched.
    const float xn[6] = {1.0f, NAN, 2.0f, 0.5f, -1.0f, 0.25f};
    int8_t qn[6];
    float sn[2];
    quantize_activations_int8(xn, 2, 3, qn, sn);
    CHECK(std::isnan(sn[0]));
    for (int i = 0; i < 3; ++i) CHECK(qn[i] == -127);
    CHECK(sn[1] == 127.0f);
    CHECK(qn[3] == 64);  // 63.5 to even
    CHECK(qn[4] == -127);
    CHECK(qn[5] == 32);  // 31.75
}

TEST_CASE("quantize_activations_int8: same codes and scales as the std::nearbyint reference") {
    // The vectorisable form (bit-pattern absmax, 1.5·2^23 rounding) against the formula it replaced,
    // on random rows and on rows built to land on x·s = n + 0.5 ties and on the ±127 clamp.
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    int ties = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const int64_t K = 1 + trial % 300;
        std::vector<float> x(static_cast<size_t>(K));
        for (auto& v : x) v = nd(rng) * (trial % 3 == 0 ? 1e-3f : 3.0f);
        if (trial % 2) {  // amax = 127 makes s = 1: halves become exact ties
            x[0] = 127.0f;
            for (int64_t k = 1; k < K; ++k) x[size_t(k)] = std::round(x[size_t(k)] * 20.0f) + 0.5f;
        }
        std::vector<int8_t> q(static_cast<size_t>(K));
        float s = 0;
        quantize_activations_int8(x.data(), 1, K, q.data(), &s);
        float amax = 0;
        for (float v : x) amax = std::max(amax, std::abs(v));
        const float ref_s = 127.0f / std::max(amax, 1e-5f);
        REQUIRE(s == ref_s);
        for (int64_t k = 0; k < K; ++k) {
            const float v = x[size_t(k)] * ref_s;
            ties += v == std::floor(v) + 0.5f;
            REQUIRE(int(q[size_t(k)]) == int(std::clamp(std::nearbyint(v), -127.0f, 127.0f)));
        }
    }
    CHECK(ties > 1000);
}

TEST_CASE("train::argmax: the index std::max_element gives, ties to the first") {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t n : {1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 10000, 10007}) {
        std::vector<float> z(static_cast<size_t>(n));
        for (int trial = 0; trial < 20; ++trial) {
            for (auto& v : z) v = trial % 4 == 3 ? std::round(nd(rng)) : nd(rng);  // rounded: many ties
            if (trial % 5 == 4)  // the maximum in the ragged tail / at the very end
                z[size_t(n - 1)] = 100.0f;
            CAPTURE(n);
            CAPTURE(trial);
            CHECK(flashlm::train::argmax(z.data(), n) == std::max_element(z.begin(), z.end()) - z.begin());
        }
        std::fill(z.begin(), z.end(), -0.0f);
        z[size_t(n / 2)] = 0.0f;  // -0 == +0: the first one wins
        CHECK(flashlm::train::argmax(z.data(), n) == 0);
    }
}

TEST_CASE("ternary row tiles: int8 matvec bit-identical to the row-major int8 kernels, every path") {
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> code(-1, 1), xv(-127, 127);
    const std::pair<int64_t, int64_t> shapes[] = {{1, 4}, {7, 8}, {16, 64}, {17, 192}, {33, 100}, {384, 192},
                                                  {192, 512}, {100, 1000}, {5, 4096}, {3, 4100}};
    for (const auto& shape : shapes) {
        const int64_t rows = shape.first, cols = shape.second;  // not a structured binding: clang 14 cannot capture those
        CAPTURE(rows);
        CAPTURE(cols);
        std::vector<int8_t> q(static_cast<size_t>(rows * cols));
        for (auto& v : q) v = int8_t(code(rng));
        q[0] = -1;  // extremes: a row of all -1 against x = -127
        const PackedTernary p = pack_ternary_codes(q.data(), rows, cols, 0.37f);
        const PackedTernaryTiles t = pack_ternary_tiles(p);
        std::vector<int8_t> x(static_cast<size_t>(p.cols_padded), 0);
        for (int64_t k = 0; k < cols; ++k) x[size_t(k)] = int8_t(xv(rng));
        x[0] = -127;
        const float xs = 3.1f;
        REQUIRE(set_isa("scalar"));
        std::vector<float> ref(static_cast<size_t>(rows));
        ternary_matvec_int8(p, x.data(), xs, ref.data());
        for (const std::string& isa : available_isas()) {
            CAPTURE(isa);
            REQUIRE(set_isa(isa));
            std::vector<float> y(static_cast<size_t>(rows + 16), -99.0f);
            ternary_tiles_matvec_int8(t, x.data(), xs, y.data());
            for (int64_t r = 0; r < rows; ++r) REQUIRE(std::memcmp(&y[size_t(r)], &ref[size_t(r)], 4) == 0);
            for (int64_t r = rows; r < rows + 16; ++r) CHECK(y[size_t(r)] == -99.0f);  // nothing past the last row
        }
    }
    set_isa("auto");
}

TEST_CASE("train::top_k_indices: the first k of a partial_sort by (logit desc, index asc)") {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::vector<int32_t> out, cand;
    std::vector<float> maxima;
    int checked = 0;
    for (int64_t V : {1, 10, 255, 256, 257, 1000, 4096, 10000, 10007})
        for (int64_t k : {1, 2, 5, 16, 50, 100, 600, 5000}) {
            if (k > V) continue;
            for (int t = 0; t < 6; ++t) {
                std::vector<float> z(static_cast<size_t>(V));
                for (int64_t i = 0; i < V; ++i) {
                    const float v = nd(rng);
                    // plain, rounded (ties), coarse (many ties), 0/1 pattern, ascending (the top k at the end)
                    z[size_t(i)] = t == 0 ? v : t == 1 ? std::round(v) : t == 2 ? float(int(v * 0.2f)) : t == 3 ? float(i % 7 == 0) : v;
                }
                if (t == 4) std::sort(z.begin(), z.end());
                if (t == 5) std::sort(z.begin(), z.end(), std::greater<float>());
                flashlm::train::top_k_indices(z.data(), V, k, out, maxima, cand);
                std::vector<int32_t> ref(static_cast<size_t>(V));
                std::iota(ref.begin(), ref.end(), 0);
                std::partial_sort(ref.begin(), ref.begin() + k, ref.end(), [&](int32_t a, int32_t b) {
                    return z[size_t(a)] > z[size_t(b)] || (z[size_t(a)] == z[size_t(b)] && a < b);
                });
                ref.resize(size_t(k));
                CAPTURE(V);
                CAPTURE(k);
                CAPTURE(t);
                CHECK(out == ref);
                ++checked;
            }
        }
    CHECK(checked == 6 * 52);
}

TEST_CASE("exact family: scalar path against a naive float GEMM") {
    REQUIRE(set_isa("scalar"));
    unsigned seed = 100;
    for (const Shape& s : k_shapes) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        CAPTURE(s.M);
        const Case c = make_case(s, seed += 2);
        const auto y = run_exact(c, s.M);
        for (int64_t m = 0; m < s.M; ++m)
            for (int64_t r = 0; r < s.rows; ++r) {
                double ref = 0;
                for (int64_t k = 0; k < s.cols; ++k) ref += double(c.x[m * s.cols + k]) * c.wq[r * s.cols + k];
                REQUIRE(std::abs(y[m * s.rows + r] - ref) <= 1e-5 * term_magnitude(c, m, r) + 1e-30);
            }
    }
    CHECK(set_isa("auto"));
}

TEST_CASE("int8 family: scalar path against integer arithmetic") {
    REQUIRE(set_isa("scalar"));
    unsigned seed = 200;
    for (const Shape& s : k_shapes) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        const Case c = make_case(s, seed += 2);
        std::vector<int8_t> q(c.x.size());
        std::vector<float> xs(static_cast<size_t>(s.M));
        quantize_activations_int8(c.x.data(), s.M, s.cols, q.data(), xs.data());
        const auto y = run_int8(c, s.M);
        int64_t mismatches = 0;
        for (int64_t m = 0; m < s.M; ++m)
            for (int64_t r = 0; r < s.rows; ++r) {
                int32_t dot = 0;
                for (int64_t k = 0; k < s.cols; ++k)
                    dot += int32_t(std::lround(c.wq[r * s.cols + k] / c.W.scale)) * q[m * s.cols + k];
                mismatches += y[m * s.rows + r] != float(dot) * c.W.scale / xs[m];
            }
        CHECK(mismatches == 0);
        // Float-input overload = quantise, then the int8 kernel.
        std::vector<float> y2(y.size());
        ternary_matmul_int8(c.W, c.x.data(), s.M, y2.data());
        CHECK(std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)) == 0);
    }
    CHECK(set_isa("auto"));
}

TEST_CASE("every SIMD path agrees with the scalar path") {
    const auto isas = available_isas();
    unsigned seed = 300;
    for (const Shape& s : k_shapes) {
        const Case c = make_case(s, seed += 2);
        REQUIRE(set_isa("scalar"));
        const auto ref_exact = run_exact(c, s.M), ref_int8 = run_int8(c, s.M);
        for (const auto& isa : isas) {
            CAPTURE(isa);
            CAPTURE(s.rows);
            CAPTURE(s.cols);
            CAPTURE(s.M);
            REQUIRE(set_isa(isa));
            const auto y = run_exact(c, s.M), yi = run_int8(c, s.M);
            CHECK(std::memcmp(yi.data(), ref_int8.data(), yi.size() * sizeof(float)) == 0);
            double worst = 0;  // largest error in units of Σ|terms|
            for (int64_t m = 0; m < s.M; ++m)
                for (int64_t r = 0; r < s.rows; ++r) {
                    const double mag = term_magnitude(c, m, r);
                    if (mag > 0) worst = std::max(worst, std::abs(y[m * s.rows + r] - ref_exact[m * s.rows + r]) / mag);
                    else CHECK(y[m * s.rows + r] == 0.0f);
                }
            CHECK(worst <= 1e-5);
        }
    }
    CHECK(set_isa("auto"));
}

TEST_CASE("all-zero weights and a single column") {
    std::vector<float> w(3 * 5, 0.0f), x(5, 1.0f), y(3, NAN);
    const PackedTernary p = pack_ternary(w.data(), 3, 5);
    CHECK(p.scale == 0.0f);
    for (const auto& isa : available_isas()) {
        REQUIRE(set_isa(isa));
        ternary_matvec(p, x.data(), y.data());
        for (float v : y) CHECK(v == 0.0f);
        ternary_matvec_int8(p, x.data(), y.data());
        for (float v : y) CHECK(v == 0.0f);
    }
    // K = 1, three rows: y = q · scale · x exactly.
    const float w1[3] = {2.0f, -2.0f, 0.1f}, x1 = 3.0f;
    const PackedTernary p1 = pack_ternary(w1, 3, 1);
    const float a = p1.scale;
    for (const auto& isa : available_isas()) {
        REQUIRE(set_isa(isa));
        ternary_matvec(p1, &x1, y.data());
        CHECK(y[0] == a * 3.0f);
        CHECK(y[1] == a * -3.0f);
        CHECK(y[2] == 0.0f);
    }
    CHECK(set_isa("auto"));
}

// ---- dense head kernels (dense.hpp) -------------------------------------------------------------------

namespace {
// One row, 7 rows, a partial last tile, K ragged against 4, 16 and 64, and shapes that split over threads.
const std::pair<int64_t, int64_t> k_dense_shapes[] = {{1, 1},   {1, 192},  {7, 1},     {7, 63},    {7, 130},
                                                      {16, 64}, {33, 65},  {17, 1000}, {100, 193}, {1000, 192}};
}  // namespace

TEST_CASE("pack_int8_rows: per-row absmax codes in the VNNI tile layout") {
    for (const auto& shape : k_dense_shapes) {
        const int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        auto w = randn(rows * cols, 40, 0.05f);
        if (rows > 2)
            for (int64_t k = 0; k < cols; ++k) w[size_t(2 * cols + k)] = 0.0f;  // an all-zero row
        const PackedInt8Rows p = pack_int8_rows(w.data(), rows, cols);
        CHECK(p.cols_padded % 4 == 0);
        CHECK(p.cols_padded - p.cols < 4);
        CHECK(int64_t(p.w.size()) == p.tiles() * 16 * p.cols_padded);
        int64_t bad = 0;
        for (int64_t r = 0; r < rows; ++r) {
            float amax = 0;
            for (int64_t k = 0; k < cols; ++k) amax = std::max(amax, std::abs(w[size_t(r * cols + k)]));
            bad += p.scale[size_t(r)] != amax / 127.0f;
            int32_t sum = 0;
            for (int64_t k = 0; k < cols; ++k) {
                const float v = w[size_t(r * cols + k)];
                const int expect = amax > 0 ? int(std::nearbyint(v * (127.0f / amax))) : 0;
                bad += p.q(r, k) != expect;
                bad += std::abs(v - p.q(r, k) * p.scale[size_t(r)]) > 0.5f * p.scale[size_t(r)] * 1.0001f;
                sum += p.q(r, k);
            }
            for (int64_t k = cols; k < p.cols_padded; ++k) bad += p.q(r, k) != 0;
            bad += p.row_sums[size_t(r)] != sum;
        }
        CHECK(bad == 0);
    }
}

TEST_CASE("int8 head: scalar path against integer arithmetic, every SIMD path bit-exact") {
    unsigned seed = 500;
    for (const auto& shape : k_dense_shapes) {
        const int64_t rows = shape.first, cols = shape.second;
        CAPTURE(rows);
        CAPTURE(cols);
        const auto w = randn(rows * cols, seed += 2, 0.05f);
        const auto x = randn(cols, seed + 1);
        const PackedInt8Rows p = pack_int8_rows(w.data(), rows, cols);
        std::vector<int8_t> xq(size_t(p.cols_padded), 99);  // garbage padding: the float overload clears it
        REQUIRE(set_isa("scalar"));
        std::vector<float> ref(size_t(rows), NAN);
        int8_rows_matvec(p, x.data(), ref.data(), xq.data());
        float xs = 0;
        std::vector<int8_t> xq2(static_cast<size_t>(cols));
        quantize_activations_int8(x.data(), 1, cols, xq2.data(), &xs);
        int64_t mismatches = 0;
        for (int64_t k = 0; k < cols; ++k) mismatches += xq[size_t(k)] != xq2[size_t(k)];
        for (int64_t k = cols; k < p.cols_padded; ++k) mismatches += xq[size_t(k)] != 0;
        for (int64_t r = 0; r < rows; ++r) {
            int32_t dot = 0;
            for (int64_t k = 0; k < cols; ++k) dot += int32_t(p.q(r, k)) * xq2[size_t(k)];
            mismatches += ref[size_t(r)] != float(dot) * p.scale[size_t(r)] / xs;
        }
        CHECK(mismatches == 0);
        for (const auto& isa : available_isas()) {
            CAPTURE(isa);
            REQUIRE(set_isa(isa));
            std::vector<float> y(size_t(rows) + 1, NAN);
            y[size_t(rows)] = 12345.0f;  // nothing is written past the last row
            int8_rows_matvec(p, xq.data(), xs, y.data());
            CHECK(std::memcmp(y.data(), ref.data(), size_t(rows) * sizeof(float)) == 0);
            CHECK(y[size_t(rows)] == 12345.0f);
        }
    }
    // Extreme codes: every q = ±127 against x = ±127 (the AVX2 pairs reach 2 · 127², no saturation).
    std::vector<float> w(size_t(3 * 256)), x(256);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 3 == 0) ? -1.0f : 1.0f;
    for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 == 0) ? -1.0f : 1.0f;
    const PackedInt8Rows p = pack_int8_rows(w.data(), 3, 256);
    std::vector<int8_t> xq(256);
    std::vector<float> ref(3), y(3);
    REQUIRE(set_isa("scalar"));
    int8_rows_matvec(p, x.data(), ref.data(), xq.data());
    for (const auto& isa : available_isas()) {
        REQUIRE(set_isa(isa));
        int8_rows_matvec(p, x.data(), y.data(), xq.data());
        CHECK(std::memcmp(y.data(), ref.data(), 3 * sizeof(float)) == 0);
    }
    CHECK(set_isa("auto"));
}

TEST_CASE("dense f32 matvec: every path against a double GEMV, up to summation order") {
    unsigned seed = 600;
    for (const auto& shape : k_dense_shapes) {
        const int64_t rows = shape.first, cols = shape.second;
        const auto w = randn(rows * cols, seed += 2), x = randn(cols, seed + 1);
        for (const auto& isa : available_isas()) {
            CAPTURE(isa);
            CAPTURE(rows);
            CAPTURE(cols);
            REQUIRE(set_isa(isa));
            std::vector<float> y(size_t(rows) + 1, NAN);
            y[size_t(rows)] = 12345.0f;
            dense_f32_matvec(w.data(), rows, cols, x.data(), y.data());
            double worst = 0;
            for (int64_t r = 0; r < rows; ++r) {
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < cols; ++k) {
                    ref += double(w[size_t(r * cols + k)]) * x[size_t(k)];
                    mag += std::abs(double(w[size_t(r * cols + k)]) * x[size_t(k)]);
                }
                worst = std::max(worst, std::abs(y[size_t(r)] - ref) / mag);
            }
            CHECK(worst <= 1e-5);
            CHECK(y[size_t(rows)] == 12345.0f);
        }
    }
    CHECK(set_isa("auto"));
}

TEST_CASE("int8 head stays within the quantisation error bound of the float GEMV") {
    // w = q·s_r + δw with |δw| ≤ s_r / 2, x = xq / xs + δx with |δx| ≤ 1 / (2 xs), so
    // |W x − y| ≤ s_r / 2 · Σ|x| + 1 / (2 xs) · Σ|q·s_r| (+ float rounding, covered by the 1.001 factor).
    const int64_t rows = 300, cols = 192;
    const auto w = randn(rows * cols, 71, 0.02f), x = randn(cols, 72);
    const PackedInt8Rows p = pack_int8_rows(w.data(), rows, cols);
    std::vector<int8_t> xq(size_t(p.cols_padded));
    std::vector<float> y(static_cast<size_t>(rows));
    int8_rows_matvec(p, x.data(), y.data(), xq.data());
    float amax = 0, xs = 0;
    for (float v : x) amax = std::max(amax, std::abs(v));
    xs = 127.0f / amax;
    int64_t bad = 0;
    double worst_rel = 0;
    for (int64_t r = 0; r < rows; ++r) {
        double ref = 0, sx = 0, sq = 0;
        for (int64_t k = 0; k < cols; ++k) {
            ref += double(w[size_t(r * cols + k)]) * x[size_t(k)];
            sx += std::abs(double(x[size_t(k)]));
            sq += std::abs(double(p.q(r, k)) * p.scale[size_t(r)]);
        }
        const double bound = p.scale[size_t(r)] / 2 * sx + sq / (2 * double(xs));
        bad += std::abs(y[size_t(r)] - ref) > 1.001 * bound + 1e-7;
        worst_rel = std::max(worst_rel, std::abs(y[size_t(r)] - ref) / bound);
    }
    MESSAGE("int8 head: worst error / bound = " << worst_rel);
    CHECK(bad == 0);
}

// grad_norm sums in eight partial sums per thread range (optim/clip.hpp): against a long double sum, for
// lengths that leave a tail, and the clip that follows.
TEST_CASE("grad_norm: eight partial sums match a long double sum; clip_grad_norm scales to max_norm") {
    flashlm::ParamStore<float> ps;
    ps.add("a", flashlm::Shape{13}, false);
    ps.add("b", flashlm::Shape{7, 143}, true);
    ps.allocate();
    const auto g = randn(int64_t(ps.flat_size()), 91, 0.5f);
    std::copy(g.begin(), g.end(), ps.grads());
    long double ref = 0;
    for (float v : g) ref += (long double)v * v;
    const double want = double(std::sqrt(ref));
    CHECK(flashlm::optim::grad_norm(ps) == doctest::Approx(want).epsilon(1e-14));
    const double pre = flashlm::optim::clip_grad_norm(ps, 1.0);
    CHECK(pre == doctest::Approx(want).epsilon(1e-14));
    CHECK(flashlm::optim::grad_norm(ps) == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(ps.grads()[20] == doctest::Approx(g[20] / (want + 1e-6)).epsilon(1e-6));
}
