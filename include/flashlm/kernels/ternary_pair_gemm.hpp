#pragma once
// f32 training products with a ternary operand, by additions alone: C[M, N] (+)= A[M, K] · Tᵀ where every
// row n of T[N, K] is s_n · {-1, 0, +1} (times a per-column scale c_k, for dx through a per-row-scaled W).
// BitLinear's forward (y = x W̃ᵀ) and its input gradient (dx = dy W̃, T = W̃ᵀ) are such products.
//
// Why not the FMA kernel (gemm_f32.hpp): a ternary weight makes each product term ±a or nothing, so a
// row of C needs only additions of A's columns. Zen 4 runs 512-bit additions on two pipes (FP2/FP3) that
// the FMA kernel leaves idle; one addition with a 64-byte memory operand issues each ~0.37 ns (the load
// is the limit), against ~0.28 ns per FMA. Skipping zeros alone (a third of an absmean ternary weight)
// then only breaks even. So the kernel adds pairs: for a block of 32 tokens and each pair of depths
// (k, k+1) it builds a table of a_k, a_{k+1}, a_k + a_{k+1} and a_k − a_{k+1} (32 floats each), and a
// row of T picks one entry per pair, added or subtracted (8 of the 9 sign pairs; (0, 0) picks nothing).
// That is 0.44 additions per depth per 16 outputs where the FMA kernel does 1 FMA: measured 1.24–1.39x
// the FMA kernel per Bolt product, 1.04–1.33x where K needs several depth blocks (docs/training-speed.md,
// Session 24).
//
// Layout: T's rows are lists of table offsets, built per call (one pass over T, vector compress):
// for each group of k_rows rows and depth block, a "plus" and a "minus" list per row, padded to the
// group's longest with the table's zero entry so the group's k_rows × 2 accumulator chains run in
// lockstep. A thread takes 32 tokens at a time: it transposes their A values into the table (16 × 16
// register transposes), runs every row group over it, and transposes the 32 × N result into C.
//
// Sums run in another order than the FMA kernel's (and pair sums round once more), so results differ from
// it in the last bits; each element's order depends on T alone, so results do not depend on the thread
// count. A T whose rows are not of that form (a dense weight, a NaN anywhere) is refused: the callers
// then run the GEMM.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"
#include "flashlm/core/x86_intrinsics.hpp"
#include "flashlm/kernels/avx512_transpose.hpp"
#include "flashlm/kernels/cpu_features.hpp"

namespace flashlm::kernels {

namespace pair_detail {
inline bool available() {
#if defined(__x86_64__)
    if (isa_env_hides_avx512()) return false;
    return cpu_features().avx512f;
#else
    return false;
#endif
}
inline std::atomic<bool>& slot() {
    static std::atomic<bool> s{[] {
        const char* env = std::getenv("FLASHLM_TERNARY_GEMM");
        return available() && !(env && std::string(env) == "fma");
    }()};
    return s;
}
}  // namespace pair_detail

// Whether float ternary products (ops::ternary_linear_forward, ternary_linear_dx) run this kernel: by
// default wherever AVX-512F is; FLASHLM_TERNARY_GEMM=fma keeps the FMA GEMM.
inline bool ternary_pair_enabled() { return pair_detail::slot().load(std::memory_order_relaxed); }
// Switches it (benchmarks, tests); false if it cannot run here. Only while no product runs.
inline bool set_ternary_pair(bool on) {
    const bool ok = !on || pair_detail::available();
    if (ok) pair_detail::slot().store(on, std::memory_order_relaxed);
    return ok;
}

#if defined(__x86_64__)
namespace pair_detail {

inline constexpr int64_t k_tb = 32;            // tokens per block: two zmm per accumulator
inline constexpr int64_t k_rows = 4;           // rows of T summed side by side: 8 accumulator chains
inline constexpr int64_t k_entry_bytes = 128;  // one table entry: 32 floats
inline constexpr int64_t k_max_pairs = 96;     // depths per block / 2: table 48 KiB (+ the zero entry)

// Lists of one product: for group g (rows g·k_rows ...) and depth block b, slot (g · blocks + b) holds
// the plus lists of its k_rows rows (cap entries each), then their minus lists; len holds the two padded
// lengths. The zero entry sits at 4 · pairs.
struct Lists {
    int64_t n = 0, k = 0, pairs = 0, blocks = 0, groups = 0, cap = 0;
    float uniform = 1;                 // every row's scale, when row_scale is null
    const float* row_scale = nullptr;  // [n], or null
    const float* col_scale = nullptr;  // [k], or null
    Storage<int32_t> off, len;
    Storage<float> scales;
    int32_t zero_offset() const { return int32_t(4 * pairs * k_entry_bytes); }
};

template <class T>
void grow(Storage<T>& s, int64_t n) {
    if (int64_t(s.size()) < n) s.resize_uninitialized(size_t(n));
}

// Per-row magnitudes of W rows [r0, r1) (of [n, k]): s[r] = max |w|, and every w is 0 or ±s[r] (a row of
// zeros gets 0). False when some row is not of that form (or holds a NaN or an infinity).
__attribute__((target("avx512f"))) inline bool magnitudes(const float* W, int64_t k, int64_t r0, int64_t r1, float* s) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t r = r0; r < r1; ++r) {
        const float* w = W + r * k;
        __m512 mx = _mm512_setzero_ps();
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - i)) - 1);
            mx = _mm512_maskz_max_ps(0xffff, mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, w + i)));
        }
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, mx);
        const float a = *std::max_element(lanes, lanes + 16);
        if (!std::isfinite(a)) return false;
        const __m512 va = _mm512_set1_ps(a);
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 m = k - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (k - i)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(m, w + i);
            // a NaN lane is neither 0 nor ±a (max_ps drops NaNs, so the check above does not see them)
            const __mmask16 good =
                _mm512_cmp_ps_mask(v, zero, _CMP_EQ_OQ) | _mm512_cmp_ps_mask(_mm512_abs_ps(v), va, _CMP_EQ_OQ);
            if (uint16_t(good & m) != uint16_t(m)) return false;
        }
        s[r] = a;
    }
    return true;
}
inline bool row_magnitudes(const float* W, int64_t n, int64_t k, float* s) {
    std::atomic<bool> ok{true};
    parallel_for(n, n * k, [&](int64_t r0, int64_t r1) {
        if (ok.load(std::memory_order_relaxed) && !magnitudes(W, k, r0, r1, s)) ok.store(false);
    });
    return ok.load();
}

// Tiles [b0, b1) of W [n, k] -> wt [k, n], 16 × 16 each (tile t: rows 16 (t / tn), columns 16 (t % tn)).
__attribute__((target("avx512f"))) inline void transpose_tiles(const float* W, int64_t n, int64_t k, float* wt,
                                                               int64_t b0, int64_t b1, int64_t tn) {
    for (int64_t t = b0; t < b1; ++t) {
        const int64_t k0 = 16 * (t / tn), n0 = 16 * (t % tn);
        const int64_t kw = std::min<int64_t>(16, k - k0), nw = std::min<int64_t>(16, n - n0);
        const __mmask16 km = kw == 16 ? __mmask16(0xffff) : __mmask16((1u << kw) - 1);
        const __mmask16 nm = nw == 16 ? __mmask16(0xffff) : __mmask16((1u << nw) - 1);
        __m512i r[16];
        for (int64_t i = 0; i < 16; ++i)
            r[i] = i < nw ? _mm512_maskz_loadu_epi32(km, W + (n0 + i) * k + k0) : _mm512_setzero_si512();
        avx512::transpose16(r);
        for (int64_t j = 0; j < kw; ++j) _mm512_mask_storeu_epi32(wt + (k0 + j) * n + n0, nm, r[j]);
    }
}

// Groups [g0, g1) of the lists of T [n, k] (row stride ldt), from the signs of its entries.
__attribute__((target("avx512f"))) inline void build_groups(const float* T, int64_t ldt, Lists& L, int64_t g0,
                                                            int64_t g1) {
    const int64_t n = L.n, k = L.k;
    const int32_t z = L.zero_offset();
    alignas(64) static constexpr int32_t even[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    alignas(64) static constexpr int32_t odd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    const __m512i ie = _mm512_load_si512(even), io = _mm512_load_si512(odd);
    const __m512i lane4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t g = g0; g < g1; ++g)
        for (int64_t b = 0; b < L.blocks; ++b) {
            const int64_t slot = g * L.blocks + b;
            int32_t* plus = L.off.data() + slot * 2 * k_rows * L.cap;
            int32_t* minus = plus + k_rows * L.cap;
            const int64_t k0 = b * 2 * L.pairs, kn = std::min(2 * L.pairs, k - k0);
            int64_t np[k_rows] = {}, nm[k_rows] = {};
            for (int64_t r = 0; r < k_rows && g * k_rows + r < n; ++r) {
                const float* w = T + (g * k_rows + r) * ldt + k0;
                int32_t *pl = plus + r * L.cap, *mi = minus + r * L.cap;
                for (int64_t i = 0; i < kn; i += 32) {
                    auto mask = [&](int64_t at) {
                        return kn - at >= 16 ? __mmask16(0xffff)
                               : kn <= at    ? __mmask16(0)
                                             : __mmask16((1u << (kn - at)) - 1);
                    };
                    const __m512 lo = _mm512_maskz_loadu_ps(mask(i), w + i);
                    const __m512 hi = _mm512_maskz_loadu_ps(mask(i + 16), w + i + 16);
                    const __m512 w1 = _mm512_permutex2var_ps(lo, ie, hi), w2 = _mm512_permutex2var_ps(lo, io, hi);
                    const __mmask16 p1 = _mm512_cmp_ps_mask(w1, zero, _CMP_GT_OQ),
                                    m1 = _mm512_cmp_ps_mask(w1, zero, _CMP_LT_OQ);
                    const __mmask16 p2 = _mm512_cmp_ps_mask(w2, zero, _CMP_GT_OQ),
                                    m2 = _mm512_cmp_ps_mask(w2, zero, _CMP_LT_OQ);
                    const __mmask16 z1 = __mmask16(~(p1 | m1));
                    // entry: 0 a_k (w2 = 0), 1 a_{k+1} (w1 = 0), 2 the sum (same signs), 3 the difference;
                    // its sign is w1's, or w2's where w1 = 0
                    __m512i c = _mm512_mask_mov_epi32(_mm512_setzero_si512(), z1, _mm512_set1_epi32(1));
                    c = _mm512_mask_mov_epi32(c, (p1 & p2) | (m1 & m2), _mm512_set1_epi32(2));
                    c = _mm512_mask_mov_epi32(c, (p1 & m2) | (m1 & p2), _mm512_set1_epi32(3));
                    const __m512i q4 = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * i)), lane4);  // 4 · pair
                    const __m512i o = _mm512_maskz_slli_epi32(0xffff, _mm512_add_epi32(q4, c), 7);  // × 128 bytes
                    const __mmask16 pm = p1 | (z1 & p2), mm = m1 | (z1 & m2);
                    _mm512_storeu_si512(pl + np[r], _mm512_maskz_compress_epi32(pm, o));
                    _mm512_storeu_si512(mi + nm[r], _mm512_maskz_compress_epi32(mm, o));
                    np[r] += __builtin_popcount(pm), nm[r] += __builtin_popcount(mm);
                }
            }
            const int64_t lp = *std::max_element(np, np + k_rows), lm = *std::max_element(nm, nm + k_rows);
            for (int64_t r = 0; r < k_rows; ++r) {
                std::fill(plus + r * L.cap + np[r], plus + r * L.cap + lp, z);
                std::fill(minus + r * L.cap + nm[r], minus + r * L.cap + lm, z);
            }
            L.len.data()[2 * slot] = int32_t(lp), L.len.data()[2 * slot + 1] = int32_t(lm);
        }
}
inline void build_lists(const float* T, int64_t ldt, int64_t n, int64_t k, Lists& L) {
    L.n = n, L.k = k;
    // as many pairs in each block (K = 256: two blocks of 64, not 96 and 32)
    const int64_t half = (k + 1) / 2, blocks = (half + k_max_pairs - 1) / k_max_pairs;
    L.pairs = (half + blocks - 1) / blocks;
    L.blocks = (k + 2 * L.pairs - 1) / (2 * L.pairs);
    L.groups = (n + k_rows - 1) / k_rows;
    L.cap = (L.pairs + 16 + 15) / 16 * 16;  // a compress writes 16 lanes past the list's end at most
    grow(L.off, L.groups * L.blocks * 2 * k_rows * L.cap);
    grow(L.len, L.groups * L.blocks * 2);
    parallel_for(L.groups, n * k, [&](int64_t g0, int64_t g1) { build_groups(T, ldt, L, g0, g1); });
}

struct Workspace {
    Storage<float> tab, out;
};

// Token blocks [b0, b1) of C[M, n] (+)= A[M, k] · Tᵀ for T given by L, on this thread's workspace.
__attribute__((target("avx512f"))) inline void run_blocks(int64_t M, const float* A, int64_t lda, const Lists& L,
                                                          float* C, int64_t ldc, bool accumulate, int64_t b0,
                                                          int64_t b1, Workspace& ws) {
    const int64_t n = L.n, k = L.k;
    const int64_t out_rows = std::max(L.groups * k_rows, (n + 15) / 16 * 16);
    const int32_t z = L.zero_offset();
    grow(ws.tab, (4 * L.pairs + 1) * k_tb);
    grow(ws.out, out_rows * k_tb);
    float *tab = ws.tab.data(), *out = ws.out.data();
    std::memset(static_cast<void*>(tab + (z / 4)), 0, k_entry_bytes);
    const char* tb = reinterpret_cast<const char*>(tab);
    for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t t0 = blk * k_tb, tn = std::min(k_tb, M - t0);
        for (int64_t b = 0; b < L.blocks; ++b) {
            const int64_t k0 = b * 2 * L.pairs, kn = std::min(2 * L.pairs, k - k0);
            // the table: A's columns k0 .. k0 + kn for these tokens, 16 × 16 at a time
            for (int64_t kk = 0; kk < kn; kk += 16) {
                const int64_t w = std::min<int64_t>(16, kn - kk);
                const __mmask16 km = w == 16 ? __mmask16(0xffff) : __mmask16((1u << w) - 1);
                for (int64_t h = 0; h < 2; ++h) {
                    __m512i r[16];
                    for (int64_t i = 0; i < 16; ++i)
                        r[i] = 16 * h + i < tn ? _mm512_maskz_loadu_epi32(km, A + (t0 + 16 * h + i) * lda + k0 + kk)
                                               : _mm512_setzero_si512();
                    avx512::transpose16(r);
                    for (int64_t j = 0; j < w; j += 2) {
                        __m512 d1 = _mm512_castsi512_ps(r[j]), d2 = _mm512_castsi512_ps(r[j + 1]);
                        if (L.col_scale) {
                            d1 = _mm512_mul_ps(d1, _mm512_set1_ps(L.col_scale[k0 + kk + j]));
                            d2 = _mm512_mul_ps(d2, _mm512_set1_ps(j + 1 < w ? L.col_scale[k0 + kk + j + 1] : 0.0f));
                        }
                        float* e = tab + (2 * (kk + j)) * k_tb + 16 * h;  // entry 4 · pair
                        _mm512_store_ps(e, d1);
                        _mm512_store_ps(e + k_tb, d2);
                        _mm512_store_ps(e + 2 * k_tb, _mm512_add_ps(d1, d2));
                        _mm512_store_ps(e + 3 * k_tb, _mm512_sub_ps(d1, d2));
                    }
                }
            }
            const bool first = b == 0, last = b + 1 == L.blocks;
            for (int64_t g = 0; g < L.groups; ++g) {
                const int64_t slot = g * L.blocks + b;
                const int32_t* plus = L.off.data() + slot * 2 * k_rows * L.cap;
                const int32_t* minus = plus + k_rows * L.cap;
                const int64_t lp = L.len.data()[2 * slot], lm = L.len.data()[2 * slot + 1];
                float* o = out + g * k_rows * k_tb;
                __m512 acc[k_rows][2];
                for (int64_t r = 0; r < k_rows; ++r)
                    for (int v = 0; v < 2; ++v)
                        acc[r][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(o + r * k_tb + 16 * v);
                for (int64_t e = 0; e < lp; ++e)
                    for (int64_t r = 0; r < k_rows; ++r) {
                        const float* d = reinterpret_cast<const float*>(tb + plus[r * L.cap + e]);
                        acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_load_ps(d));
                        acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_load_ps(d + 16));
                    }
                for (int64_t e = 0; e < lm; ++e)
                    for (int64_t r = 0; r < k_rows; ++r) {
                        const float* d = reinterpret_cast<const float*>(tb + minus[r * L.cap + e]);
                        acc[r][0] = _mm512_sub_ps(acc[r][0], _mm512_load_ps(d));
                        acc[r][1] = _mm512_sub_ps(acc[r][1], _mm512_load_ps(d + 16));
                    }
                for (int64_t r = 0; r < k_rows; ++r) {
                    const int64_t row = g * k_rows + r;
                    const __m512 s = _mm512_set1_ps(!last         ? 1.0f
                                                    : L.row_scale ? (row < n ? L.row_scale[row] : 0.0f)
                                                                  : L.uniform);
                    for (int v = 0; v < 2; ++v)
                        _mm512_store_ps(o + r * k_tb + 16 * v, last ? _mm512_mul_ps(acc[r][v], s) : acc[r][v]);
                }
            }
        }
        // out [n][32 tokens] -> C [tokens][n]
        for (int64_t n0 = 0; n0 < n; n0 += 16) {
            const __mmask16 nm = n - n0 >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - n0)) - 1);
            for (int64_t h = 0; h < 2 && 16 * h < tn; ++h) {
                __m512i r[16];
                for (int64_t i = 0; i < 16; ++i) r[i] = _mm512_load_si512(out + (n0 + i) * k_tb + 16 * h);
                avx512::transpose16(r);
                for (int64_t i = 0; i < 16 && 16 * h + i < tn; ++i) {
                    float* c = C + (t0 + 16 * h + i) * ldc + n0;
                    __m512 v = _mm512_castsi512_ps(r[i]);
                    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(nm, c), v);
                    _mm512_mask_storeu_ps(c, nm, v);
                }
            }
        }
    }
}
// C[M, n] (+)= A[M, k] · Tᵀ for T given by L. Threads take blocks of 32 tokens.
inline void run(int64_t M, const float* A, int64_t lda, const Lists& L, float* C, int64_t ldc, bool accumulate) {
    parallel_for_balanced((M + k_tb - 1) / k_tb, 2 * M * L.n * L.k, [&](int64_t b0, int64_t b1, int) {
        thread_local Workspace ws;  // each OpenMP worker its own
        run_blocks(M, A, lda, L, C, ldc, accumulate, b0, b1, ws);
    });
}

struct CallBuffers {
    Lists lists;
    Storage<float> wt;  // W transposed (dx)
};
inline CallBuffers& call_buffers() {
    thread_local CallBuffers b;
    return b;
}

// Worth it: enough tokens to fill blocks, enough rows and depth to pay for the table and the transposes.
inline bool worth(int64_t M, int64_t N, int64_t K) { return M >= 2 * k_tb && N >= 32 && K >= 32; }

}  // namespace pair_detail
#endif

// y[M, N] (+)= x[M, K] · Wᵀ for a W [N, K] whose rows are s_n · {-1, 0, 1}. False (nothing written) where
// the kernel cannot run or W is not of that form; the caller then runs a GEMM.
inline bool ternary_pair_nt(int64_t M, int64_t N, int64_t K, const float* x, const float* W, float* y,
                            bool accumulate) {
#if defined(__x86_64__)
    using namespace pair_detail;
    if (!ternary_pair_enabled() || omp_in_parallel() || !worth(M, N, K)) return false;
    CallBuffers& cb = call_buffers();
    Lists& L = cb.lists;
    grow(L.scales, N);
    if (!row_magnitudes(W, N, K, L.scales.data())) return false;
    build_lists(W, K, N, K, L);
    L.row_scale = L.scales.data(), L.col_scale = nullptr;
    run(M, x, K, L, y, N, accumulate);
    return true;
#else
    (void)M, (void)N, (void)K, (void)x, (void)W, (void)y, (void)accumulate;
    return false;
#endif
}

// dx[M, K] (+)= dy[M, N] · W for the same W [N, K]: T = Wᵀ, whose columns carry W's row scales.
inline bool ternary_pair_nn(int64_t M, int64_t K, int64_t N, const float* dy, const float* W, float* dx,
                            bool accumulate) {
#if defined(__x86_64__)
    using namespace pair_detail;
    if (!ternary_pair_enabled() || omp_in_parallel() || !worth(M, K, N)) return false;
    CallBuffers& cb = call_buffers();
    Lists& L = cb.lists;
    grow(L.scales, N);
    float* s = L.scales.data();
    if (!row_magnitudes(W, N, K, s)) return false;
    // Wᵀ [K, N], 16 × 16 at a time
    grow(cb.wt, K * N);
    float* wt = cb.wt.data();
    const int64_t tk = (K + 15) / 16, tn = (N + 15) / 16;
    parallel_for(tk * tn, K * N, [&](int64_t b0, int64_t b1) { transpose_tiles(W, N, K, wt, b0, b1, tn); });
    build_lists(wt, N, K, N, L);
    const bool same = std::all_of(s, s + N, [&](float v) { return v == s[0]; });
    L.row_scale = nullptr, L.uniform = same ? s[0] : 1.0f, L.col_scale = same ? nullptr : s;
    run(M, dy, N, L, dx, K, accumulate);
    return true;
#else
    (void)M, (void)K, (void)N, (void)dy, (void)W, (void)dx, (void)accumulate;
    return false;
#endif
}

}  // namespace flashlm::kernels
