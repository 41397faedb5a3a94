#pragma once
// f32 training products with a ternary operand, by additions alone: C[M, N] (+)= A[M, K] · Tᵀ where every
// row n of T[N, K] is s_n · {-1, 0, +1} (times a per-column scale c_k, for dx through a per-row-scaled W).
// BitLinear's forward (y = x W̃ᵀ) and its input gradient (dx = dy W̃, T = W̃ᵀ) are such products.
//
// Why not the FMA kernel (gemm_f32.hpp): a ternary weight makes each product term ±a or nothing, so a
// row of C needs only additions of A's columns. Zen 4 runs 512-bit additions on two pipes (FP2/FP3) that
// the FMA kernel leaves idle; one addition with a 64-byte memory operand issues each ~0.37 ns (the load
// is the limit), against ~0.28 ns per FMA. Skipping zeros alone (a third of an absmean ternary weight)
// then only breaks even. So the kernel adds triples: for a block of 32 tokens and each triple of depths
// (k, k+1, k+2) it builds a table of the 13 sums ±a_k ± a_{k+1} ± a_{k+2} of one to three terms whose
// first sign is + (32 floats each), and a row of T picks one entry per triple, added or subtracted (26 of
// the 27 sign patterns; (0, 0, 0) picks nothing). That is ~0.33 additions per depth per 16 outputs where
// the FMA kernel does 1 FMA: measured 1.45–1.79x the FMA kernel per Bolt product (docs/training-speed.md,
// Session 25). Pairs of depths (a 4-entry table, 0.50 additions per depth with padding) gave 1.24–1.39x.
//
// Layout: T's rows are lists of table offsets, built per call (one pass over T, vector compress): per
// row and depth block a "plus" and a "minus" list. Rows go in groups of k_rows whose 2 × k_rows
// accumulator chains run in lockstep, so each group's lists are padded (with the table's zero entry) to
// its longest; grouping the rows by list length keeps that padding to ~3 % of the entries. A thread
// takes 32 tokens at a time: it transposes their A values (16 × 16 register transposes) and builds the
// table, runs every row group over it, and transposes the 32 × N result into C. Depth blocks of up to 96
// depths keep the table at 52 KiB (larger ones ran slower).
//
// Sums run in another order than the FMA kernel's (and table entries round once or twice more), so
// results differ from it in the last bits; each element's order depends on T alone, so results do not
// depend on the thread count. A T whose rows are not of that form (a dense weight, a NaN anywhere) is
// refused: the callers then run the GEMM.
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

namespace add_detail {
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
}  // namespace add_detail

// Whether float ternary products (ops::ternary_linear_forward, ternary_linear_dx) run this kernel: by
// default wherever AVX-512F is; FLASHLM_TERNARY_GEMM=fma keeps the FMA GEMM.
inline bool ternary_add_enabled() { return add_detail::slot().load(std::memory_order_relaxed); }
// Switches it (benchmarks, tests); false if it cannot run here. Only while no product runs.
inline bool set_ternary_add(bool on) {
    const bool ok = !on || add_detail::available();
    if (ok) add_detail::slot().store(on, std::memory_order_relaxed);
    return ok;
}

#if defined(__x86_64__)
namespace add_detail {

inline constexpr int64_t k_tb = 32;            // tokens per block: two zmm per accumulator
inline constexpr int64_t k_rows = 4;           // rows of T summed side by side: 8 accumulator chains
inline constexpr int64_t k_entry_bytes = 128;  // one table entry: 32 floats
inline constexpr int64_t k_entries = 13;       // table entries per triple of depths
inline constexpr int64_t k_max_units = 32;     // triples per depth block: table 52 KiB (+ the zero entry)

// Lists of one product. Row r's lists for depth block b sit at off + (r · blocks + b) · 2 · cap: its plus
// list, then its minus list (cap entries each), counted in cnt[(b · rows + r) · 2 + {0, 1}]. Per depth
// block the rows are grouped by k_rows in the order perm[b · rows + ...] (by plus-list length, so a
// group's lists are near the same length), and each list is padded with the zero entry to its group's
// longest (len[(b · groups + g) · 2 + {0, 1}]). rows = groups · k_rows: rows past n have empty lists.
struct Lists {
    int64_t n = 0, k = 0, units = 0, blocks = 0, groups = 0, rows = 0, cap = 0;  // units: triples per block
    float uniform = 1;                 // every row's scale, when row_scale is null
    const float* row_scale = nullptr;  // [n], or null
    const float* col_scale = nullptr;  // [k], or null
    Storage<int32_t> off, cnt, perm, len, start;
    Storage<float> scales;
    int32_t zero_offset() const { return int32_t(k_entries * units * k_entry_bytes); }
    const int32_t* list(int64_t row, int64_t b) const { return off.data() + (row * blocks + b) * 2 * cap; }
    int32_t* list(int64_t row, int64_t b) { return off.data() + (row * blocks + b) * 2 * cap; }
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

// The entry of a triple's sign pattern (s1, s2, s3), made canonical (first nonzero sign +): 0 a, 1 b,
// 2 c, 3 a+b, 4 a-b, 5 a+c, 6 a-c, 7 b+c, 8 b-c, 9 a+b+c, 10 a+b-c, 11 a-b+c, 12 a-b-c. The LUT, indexed
// by 13 + 9 s1 + 3 s2 + s3, holds ±(entry + 1) with the pattern's sign, 0 for (0, 0, 0).
struct TripleLut {
    alignas(64) int32_t v[32] = {};
    constexpr TripleLut() {
        for (int code = 0; code < 27; ++code) {
            int s1 = code / 9 - 1, s2 = code / 3 % 3 - 1, s3 = code % 3 - 1;
            const int sg = s1 ? s1 : s2 ? s2 : s3;
            if (!sg) continue;
            s1 *= sg, s2 *= sg, s3 *= sg;
            int e = 0;
            if (s1 == 0 && s2 == 0)
                e = 2;
            else if (s1 == 0)
                e = s3 == 0 ? 1 : s3 > 0 ? 7 : 8;
            else if (s2 == 0)
                e = s3 == 0 ? 0 : s3 > 0 ? 5 : 6;
            else if (s3 == 0)
                e = s2 > 0 ? 3 : 4;
            else
                e = 9 + (s2 > 0 ? 0 : 2) + (s3 > 0 ? 0 : 1);
            v[code] = sg * (e + 1);
        }
    }
};
inline constexpr TripleLut k_triple_lut{};

// Rows [r0, r1) of T [n, k] (row stride ldt): their plus and minus lists for every depth block, from the
// signs of their entries, 16 triples (48 depths) at a time; the counts go to cnt.
__attribute__((target("avx512f"))) inline void build_rows(const float* T, int64_t ldt, Lists& L, int64_t r0,
                                                          int64_t r1) {
    const int64_t k = L.k;
    const __m512i lut_lo = _mm512_load_si512(k_triple_lut.v), lut_hi = _mm512_load_si512(k_triple_lut.v + 16);
    __m512i idx[3];
    for (int j = 0; j < 3; ++j)
        idx[j] = _mm512_setr_epi32(j, 3 + j, 6 + j, 9 + j, 12 + j, 15 + j, 18 + j, 21 + j, 24 + j, 27 + j, 30 + j,
                                   33 + j, 36 + j, 39 + j, 42 + j, 45 + j);
    const __m512i lane13 = _mm512_setr_epi32(0, 13, 26, 39, 52, 65, 78, 91, 104, 117, 130, 143, 156, 169, 182, 195);
    const __m512 zero = _mm512_setzero_ps();
    const __m512i izero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t b = 0; b < L.blocks; ++b) {
            int32_t* pl = L.list(r, b);
            int32_t* mi = pl + L.cap;
            int64_t np = 0, nm = 0;
            const int64_t k0 = b * 3 * L.units, kn = r < L.n ? std::min(3 * L.units, k - k0) : 0;
            const float* w = T + r * ldt + k0;
            for (int64_t i = 0; 3 * i < kn; i += 16) {  // triples i .. i + 15: depths 3i .. 3i + 47
                auto mask = [&](int64_t at) {
                    return kn - at >= 16 ? __mmask16(0xffff)
                           : kn <= at    ? __mmask16(0)
                                         : __mmask16((1u << (kn - at)) - 1);
                };
                const __m512 v0 = _mm512_maskz_loadu_ps(mask(3 * i), w + 3 * i);
                const __m512 v1 = _mm512_maskz_loadu_ps(mask(3 * i + 16), w + 3 * i + 16);
                const __m512 v2 = _mm512_maskz_loadu_ps(mask(3 * i + 32), w + 3 * i + 32);
                __m512i code = _mm512_set1_epi32(13);
                for (int j = 0; j < 3; ++j) {
                    // depth 3l + j of the 48: lanes whose index passes 31 come from v2
                    __m512 wj = _mm512_permutex2var_ps(v0, idx[j], v1);
                    wj = _mm512_mask_permutexvar_ps(wj, __mmask16(j == 2 ? 0xfc00 : 0xf800), idx[j], v2);
                    const __m512i wv = _mm512_set1_epi32(j == 0 ? 9 : j == 1 ? 3 : 1);
                    code = _mm512_mask_add_epi32(code, _mm512_cmp_ps_mask(wj, zero, _CMP_GT_OQ), code, wv);
                    code = _mm512_mask_sub_epi32(code, _mm512_cmp_ps_mask(wj, zero, _CMP_LT_OQ), code, wv);
                }
                const __m512i v = _mm512_permutex2var_epi32(lut_lo, code, lut_hi);
                const __mmask16 pm = _mm512_cmpgt_epi32_mask(v, izero), mm = _mm512_cmplt_epi32_mask(v, izero);
                const __m512i e = _mm512_sub_epi32(_mm512_maskz_abs_epi32(0xffff, v), one);
                const __m512i unit13 = _mm512_add_epi32(_mm512_set1_epi32(int32_t(13 * i)), lane13);
                const __m512i o = _mm512_maskz_slli_epi32(0xffff, _mm512_add_epi32(unit13, e), 7);  // × 128 bytes
                _mm512_storeu_si512(pl + np, _mm512_maskz_compress_epi32(pm, o));
                _mm512_storeu_si512(mi + nm, _mm512_maskz_compress_epi32(mm, o));
                np += __builtin_popcount(pm), nm += __builtin_popcount(mm);
            }
            int32_t* c = L.cnt.data() + (b * L.rows + r) * 2;
            c[0] = int32_t(np), c[1] = int32_t(nm);
        }
}

// Depth block b: rows in order of their plus lists' length (a counting sort: stable, so the grouping
// depends on T alone), then each group's lists padded to its longest. A plus list's length nearly fixes
// the minus list's (together they hold the ~96 % of triples that are not all zero), so sorted neighbours
// match in both: padding drops from ~19 % of the entries (rows in their own order) to a few %.
inline void group_rows(Lists& L, int64_t b) {
    const int32_t* cnt = L.cnt.data() + b * L.rows * 2;
    int32_t* perm = L.perm.data() + b * L.rows;
    grow(L.start, L.units + 2);
    int32_t* start = L.start.data();
    std::fill(start, start + L.units + 2, 0);
    for (int64_t r = 0; r < L.rows; ++r) ++start[L.units - cnt[2 * r] + 1];  // longest first
    for (int64_t i = 1; i < L.units + 2; ++i) start[i] += start[i - 1];
    for (int64_t r = 0; r < L.rows; ++r) perm[start[L.units - cnt[2 * r]]++] = int32_t(r);
    const int32_t z = L.zero_offset();
    for (int64_t g = 0; g < L.groups; ++g) {
        int32_t lp = 0, lm = 0;
        for (int64_t i = 0; i < k_rows; ++i) {
            const int32_t* c = cnt + 2 * perm[g * k_rows + i];
            lp = std::max(lp, c[0]), lm = std::max(lm, c[1]);
        }
        for (int64_t i = 0; i < k_rows; ++i) {
            const int64_t r = perm[g * k_rows + i];
            int32_t* pl = L.list(r, b);
            std::fill(pl + cnt[2 * r], pl + lp, z);
            std::fill(pl + L.cap + cnt[2 * r + 1], pl + L.cap + lm, z);
        }
        L.len.data()[(b * L.groups + g) * 2] = lp, L.len.data()[(b * L.groups + g) * 2 + 1] = lm;
    }
}

inline void build_lists(const float* T, int64_t ldt, int64_t n, int64_t k, Lists& L) {
    L.n = n, L.k = k;
    // as many triples in each block (K = 256: blocks of 29, 29 and 28, not 32, 32 and 22)
    const int64_t triples = (k + 2) / 3, blocks = (triples + k_max_units - 1) / k_max_units;
    L.units = (triples + blocks - 1) / blocks;
    L.blocks = (k + 3 * L.units - 1) / (3 * L.units);
    L.groups = (n + k_rows - 1) / k_rows;
    L.rows = L.groups * k_rows;
    L.cap = (L.units + 16 + 15) / 16 * 16;  // a compress writes 16 lanes past the list's end at most
    grow(L.off, L.rows * L.blocks * 2 * L.cap);
    grow(L.cnt, L.blocks * L.rows * 2);
    grow(L.perm, L.blocks * L.rows);
    grow(L.len, L.blocks * L.groups * 2);
    parallel_for(L.rows, n * k, [&](int64_t r0, int64_t r1) { build_rows(T, ldt, L, r0, r1); });
    for (int64_t b = 0; b < L.blocks; ++b) group_rows(L, b);
}

struct Workspace {
    Storage<float> tab, out;
};

// The table of tokens t0 .. t0 + tn, depths k0 .. k0 + kn (the depth block's triples): 48 depths at a
// time, transposed 16 × 16 into col, then the 13 entries of each triple.
__attribute__((target("avx512f"))) inline void build_table(const float* A, int64_t lda, const Lists& L, int64_t t0,
                                                           int64_t tn, int64_t k0, int64_t kn, float* tab) {
    alignas(64) float col[48][16];
    for (int64_t kk = 0; kk < kn; kk += 48) {
        const int64_t units = std::min<int64_t>(16, (kn - kk + 2) / 3);
        for (int64_t h = 0; h < 2; ++h) {
            for (int64_t q = 0; q < 3; ++q) {
                const int64_t c0 = kk + 16 * q, w = std::clamp<int64_t>(kn - c0, 0, 16);
                const __mmask16 km = w == 16 ? __mmask16(0xffff) : __mmask16((1u << w) - 1);
                __m512i r[16];
                for (int64_t i = 0; i < 16; ++i)
                    r[i] = 16 * h + i < tn && w > 0
                               ? _mm512_maskz_loadu_epi32(km, A + (t0 + 16 * h + i) * lda + k0 + c0)
                               : _mm512_setzero_si512();
                avx512::transpose16(r);
                for (int64_t j = 0; j < 16; ++j) {
                    __m512 d = _mm512_castsi512_ps(r[j]);
                    if (L.col_scale) d = _mm512_mul_ps(d, _mm512_set1_ps(j < w ? L.col_scale[k0 + c0 + j] : 0.0f));
                    _mm512_store_ps(col[16 * q + j], d);
                }
            }
            for (int64_t t = 0; t < units; ++t) {
                const __m512 a = _mm512_load_ps(col[3 * t]), b = _mm512_load_ps(col[3 * t + 1]),
                             c = _mm512_load_ps(col[3 * t + 2]);
                const __m512 ab = _mm512_add_ps(a, b), amb = _mm512_sub_ps(a, b);
                float* e = tab + k_entries * (kk / 3 + t) * k_tb + 16 * h;
                const __m512 entry[k_entries] = {a,
                                                 b,
                                                 c,
                                                 ab,
                                                 amb,
                                                 _mm512_add_ps(a, c),
                                                 _mm512_sub_ps(a, c),
                                                 _mm512_add_ps(b, c),
                                                 _mm512_sub_ps(b, c),
                                                 _mm512_add_ps(ab, c),
                                                 _mm512_sub_ps(ab, c),
                                                 _mm512_add_ps(amb, c),
                                                 _mm512_sub_ps(amb, c)};
                for (int64_t x = 0; x < k_entries; ++x) _mm512_store_ps(e + x * k_tb, entry[x]);
            }
        }
    }
}

// Token blocks [b0, b1) of C[M, n] (+)= A[M, k] · Tᵀ for T given by L, on this thread's workspace.
__attribute__((target("avx512f"))) inline void run_blocks(int64_t M, const float* A, int64_t lda, const Lists& L,
                                                          float* C, int64_t ldc, bool accumulate, int64_t b0,
                                                          int64_t b1, Workspace& ws) {
    const int64_t n = L.n, k = L.k;
    const int64_t out_rows = std::max(L.rows, (n + 15) / 16 * 16);
    const int32_t z = L.zero_offset();
    grow(ws.tab, (k_entries * L.units + 1) * k_tb);
    grow(ws.out, out_rows * k_tb);
    float *tab = ws.tab.data(), *out = ws.out.data();
    std::memset(static_cast<void*>(tab + (z / 4)), 0, k_entry_bytes);
    const char* tb = reinterpret_cast<const char*>(tab);
    for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t t0 = blk * k_tb, tn = std::min(k_tb, M - t0);
        for (int64_t b = 0; b < L.blocks; ++b) {
            const int64_t k0 = b * 3 * L.units;
            build_table(A, lda, L, t0, tn, k0, std::min(3 * L.units, k - k0), tab);
            const bool first = b == 0, last = b + 1 == L.blocks;
            const int32_t* perm = L.perm.data() + b * L.rows;
            for (int64_t g = 0; g < L.groups; ++g) {
                const int64_t lp = L.len.data()[(b * L.groups + g) * 2], lm = L.len.data()[(b * L.groups + g) * 2 + 1];
                const int32_t* plus[k_rows];
                float* o[k_rows];
                for (int64_t r = 0; r < k_rows; ++r) {
                    const int64_t row = perm[g * k_rows + r];
                    plus[r] = L.list(row, b);
                    o[r] = out + row * k_tb;
                }
                __m512 acc[k_rows][2];
                for (int64_t r = 0; r < k_rows; ++r)
                    for (int v = 0; v < 2; ++v) acc[r][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(o[r] + 16 * v);
                for (int64_t e = 0; e < lp; ++e)
                    for (int64_t r = 0; r < k_rows; ++r) {
                        const float* d = reinterpret_cast<const float*>(tb + plus[r][e]);
                        acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_load_ps(d));
                        acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_load_ps(d + 16));
                    }
                for (int64_t e = 0; e < lm; ++e)
                    for (int64_t r = 0; r < k_rows; ++r) {
                        const float* d = reinterpret_cast<const float*>(tb + plus[r][L.cap + e]);
                        acc[r][0] = _mm512_sub_ps(acc[r][0], _mm512_load_ps(d));
                        acc[r][1] = _mm512_sub_ps(acc[r][1], _mm512_load_ps(d + 16));
                    }
                for (int64_t r = 0; r < k_rows; ++r) {
                    const int64_t row = perm[g * k_rows + r];
                    const __m512 s = _mm512_set1_ps(!last         ? 1.0f
                                                    : L.row_scale ? (row < n ? L.row_scale[row] : 0.0f)
                                                                  : L.uniform);
                    for (int v = 0; v < 2; ++v)
                        _mm512_store_ps(o[r] + 16 * v, last ? _mm512_mul_ps(acc[r][v], s) : acc[r][v]);
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

}  // namespace add_detail
#endif

// y[M, N] (+)= x[M, K] · Wᵀ for a W [N, K] whose rows are s_n · {-1, 0, 1}. False (nothing written) where
// the kernel cannot run or W is not of that form; the caller then runs a GEMM.
inline bool ternary_add_nt(int64_t M, int64_t N, int64_t K, const float* x, const float* W, float* y, bool accumulate) {
#if defined(__x86_64__)
    using namespace add_detail;
    if (!ternary_add_enabled() || omp_in_parallel() || !worth(M, N, K)) return false;
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
inline bool ternary_add_nn(int64_t M, int64_t K, int64_t N, const float* dy, const float* W, float* dx,
                           bool accumulate) {
#if defined(__x86_64__)
    using namespace add_detail;
    if (!ternary_add_enabled() || omp_in_parallel() || !worth(M, K, N)) return false;
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
