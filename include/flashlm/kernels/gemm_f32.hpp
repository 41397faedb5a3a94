#pragma once
// f32 GEMM for AVX-512F (vfmadd231ps), the float product behind kernels::gemm_nt/nn/tn when the CPU has it:
//
//   C[M,N] (+)= A·B,  A: [M,K] row-major (k_inner) or [K,M] (k_outer, dyᵀ of dW = dyᵀ x),
//                     B: [N,K] (k_inner, xWᵀ's W) or [K,N] (k_outer), or packed once by the caller.
//
// The micro-kernel keeps a 14 × 32 tile of C in 28 zmm registers; per k it loads two vectors of a B panel
// and broadcasts 14 elements of A. Operands are packed so that both are read as one contiguous stream:
//  - B into panels of 32 columns, zero past N (k_inner sources transposed 16 × 16 in registers): per
//    thread, a group of panels at one depth block ([panel][kc][32]) just before use, or once by the
//    caller for many products ([panel][K][32], pack_b; the tied head's E). A k_outer B already holds a
//    panel's 32 values of one k side by side: its full panels are read in place (stride ldb), and only a
//    last partial panel is copied.
//  - A, per thread, in chunks of up to mc rows and one depth block: [tile][kc][14]; a K-strided A is read
//    in place instead (its 14 values per k are already adjacent; see compute).
// Depth is blocked (kc ≤ k_kc_max, a function of K alone) so that a B panel slice (kc × 32 floats) stays
// in L1 while the tiles of an A chunk (in L2) stream past it. Each C element is one ordered f32 sum over
// k = 0..K-1 (a later depth block resumes from the stored partial sum), added to C when accumulating
// (C + Σ, as Eigen), whatever the thread count or the split: results are deterministic and equal for any
// number of threads.
// Threads take disjoint, even row ranges of C, or column panels when C has more panels than tiles, in one
// OpenMP region without barriers. Workspaces grow once and are kept.
// This header is the kernel: include it only where it is compiled (kernels/arch/gemm_f32.cpp, and tests
// or benchmarks that call f32_detail directly); everything else includes gemm_f32_api.hpp.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "flashlm/core/x86_intrinsics.hpp"
#if defined(__x86_64__) || defined(__i386__)
#define FLASHLM_F32_X86 1
#define FLASHLM_F32_TARGET __attribute__((target("avx512f")))
#else
#define FLASHLM_F32_X86 0
#endif

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"
#include "flashlm/kernels/avx512_transpose.hpp"
#include "flashlm/kernels/gemm_f32_api.hpp"

namespace flashlm::kernels {

#if FLASHLM_F32_X86
namespace f32_detail {

inline constexpr int k_mr = 14;           // rows of the C tile (28 accumulators + 2 B vectors + 1 broadcast)
inline constexpr int64_t k_nr = k_f32_nr;  // columns of the C tile and of a B panel (2 zmm)
// Depth block. bench_gemm_shapes (1 thread): 512 beat 256 on the K = 512 and K = 4096 shapes and tied
// elsewhere (a B panel slice of 512 × 32 floats is 64 KiB, above L1d, but the A tiles stream from L2
// either way). Tunable by the benchmark (--kc); results depend on it, so nothing else sets it.
inline int64_t& kc_max() {
    static int64_t v = 512;
    return v;
}
// Rows of an A chunk: kc × mc floats of packed A, kept in L2 while every panel of B passes.
inline int64_t& a_chunk_floats() {
    static int64_t v = int64_t(128) << 10;
    return v;
}
inline int64_t depth_block(int64_t K) {
    const int64_t blocks = (K + kc_max() - 1) / kc_max();
    return (K + blocks - 1) / blocks;
}

using avx512::transpose16;  // kernels/avx512_transpose.hpp, shared with the bf16 kernel

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }

// K-contiguous source rows (row i at src + i·ld, i < rows ≤ 16), depth [k0, k0 + kc) ->
// dst[k·w + i] for k < kc, i < width (rows past `rows` are zero): a transpose in 16 × 16 blocks.
FLASHLM_F32_TARGET inline void pack_k_inner(const float* src, int64_t ld, int64_t rows, int64_t k0, int64_t kc,
                                            float* dst, int64_t w, int width) {
    const __mmask16 out = lanes(width);
    __m512i v[16];
    for (int64_t kk = 0; kk < kc; kk += 16) {
        const __mmask16 mk = lanes(kc - kk);
        for (int i = 0; i < 16; ++i)
            v[i] = i < rows ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mk, src + i * ld + k0 + kk)) : _mm512_setzero_si512();
        transpose16(v);
        const int64_t n = std::min<int64_t>(16, kc - kk);
        for (int64_t l = 0; l < n; ++l) _mm512_mask_storeu_ps(dst + (kk + l) * w, out, _mm512_castsi512_ps(v[l]));
    }
}
// K-strided source (element (i, k) at src[k·ld + i], i < cols ≤ 16), depth [k0, k0 + kc) ->
// dst[k·w + i] for i < width (zero past cols).
FLASHLM_F32_TARGET inline void pack_k_outer(const float* src, int64_t ld, int64_t cols, int64_t k0, int64_t kc,
                                            float* dst, int64_t w, int width) {
    const __mmask16 in = lanes(cols), out = lanes(width);
    for (int64_t k = 0; k < kc; ++k)
        _mm512_mask_storeu_ps(dst + k * w, out, _mm512_maskz_loadu_ps(in, src + (k0 + k) * ld));
}

// Panels [j0, j1) of B ([K,N] as the product sees it), depth [k0, k0 + kc) -> dst + (j - j0)·stride, each
// kc × 32 floats.
FLASHLM_F32_TARGET inline void pack_b_panels(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t j0, int64_t j1,
                                             int64_t k0, int64_t kc, float* dst, int64_t stride) {
    for (int64_t j = j0; j < j1; ++j)
        for (int64_t h = 0; h < 2; ++h) {
            const int64_t c0 = j * k_nr + 16 * h, cols = std::min<int64_t>(16, N - c0);
            float* d = dst + (j - j0) * stride + 16 * h;
            if (lb == KLayout::k_inner)
                pack_k_inner(B + std::min(c0, N) * ldb, ldb, std::max<int64_t>(cols, 0), k0, kc, d, k_nr, 16);
            else
                pack_k_outer(B + std::min(c0, N), ldb, cols, k0, kc, d, k_nr, 16);
        }
}

// Rows [i0, i1) of A, depth [k0, k0 + kc) -> tiles [t][kc][14] (rows past i1 zero).
FLASHLM_F32_TARGET inline void pack_a_chunk(const float* A, int64_t lda, KLayout la, int64_t i0, int64_t i1, int64_t k0,
                                            int64_t kc, float* dst) {
    for (int64_t i = i0, t = 0; i < i1; i += k_mr, ++t) {
        const int64_t rows = std::min<int64_t>(k_mr, i1 - i);
        float* d = dst + t * kc * k_mr;
        if (la == KLayout::k_inner)
            pack_k_inner(A + i * lda, lda, rows, k0, kc, d, k_mr, k_mr);
        else
            pack_k_outer(A + i, lda, rows, k0, kc, d, k_mr, k_mr);
    }
}

// out tile (R rows, columns < ncols ≤ 32) = (out +) init + Σ_k a[k·as + r] · b[k·32 + c]: the sum starts
// from `init` (a partial sum of earlier depth blocks; null: zero) and is added to `out` when add_out.
// as: 14 for a packed A tile, or lda for a K-strided A read where it lies.
template <int R>
FLASHLM_F32_TARGET inline void micro(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, const float* init,
                                     int64_t ild, float* out, int64_t ldo, int64_t ncols, bool add_out) {
    const __mmask16 m0 = lanes(ncols), m1 = lanes(ncols - 16);
    // Unrolled: as a plain loop GCC turned the zero start into two memset calls on a stack copy of the
    // accumulators (a call per tile and depth block, ~2.5 % of a nova-diff step in perf).
    __m512 c0[R], c1[R];
    if (init) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            c0[r] = _mm512_maskz_loadu_ps(m0, init + r * ild);
            c1[r] = _mm512_maskz_loadu_ps(m1, init + r * ild + 16);
        }
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; ++k, a += as, b += bs) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(a[r]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    // Unrolled too: as a loop it kept the accumulators in a stack copy (28 stores and loads per call).
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        float* o = out + r * ldo;
        if (add_out) {
            c0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), c1[r]);
        }
        _mm512_mask_storeu_ps(o, m0, c0[r]);
        _mm512_mask_storeu_ps(o + 16, m1, c1[r]);
    }
}

template <int... R>
FLASHLM_F32_TARGET inline void micro_rows(int rows, int64_t kc, const float* a, int64_t as, const float* b, int64_t bs,
                                          const float* init, int64_t ild, float* out, int64_t ldo, int64_t ncols,
                                          bool add_out, std::integer_sequence<int, R...>) {
    ((rows == R + 1 ? micro<R + 1>(kc, a, as, b, bs, init, ild, out, ldo, ncols, add_out) : void()), ...);
}

struct Workspace {
    Storage<float> a, b, p;  // packed A chunk, packed B group, partial sums (accumulating over depth blocks)
};
inline Workspace& workspace(int tid) {
    static std::vector<Workspace> ws(k_max_threads);
    return ws[size_t(tid)];
}
inline void grow(Storage<float>& s, int64_t n) {
    if (int64_t(s.size()) < n) s.resize_uninitialized(size_t(n));
}
// Floats of B one thread packs at a time (a group of panels at one depth block, kept in L2).
inline int64_t& b_group_floats() {
    static int64_t v = int64_t(256) << 10;
    return v;
}
inline int64_t chunk_rows(int64_t kc) { return std::max<int64_t>(k_mr, a_chunk_floats() / kc / k_mr * k_mr); }
inline int64_t group_panels(int64_t kc) { return std::max<int64_t>(1, b_group_floats() / (kc * k_nr)); }

// One thread's part of C: rows [r0, r1) × panels [j0, j1). B comes packed (bp: [panel][K][32]) or is
// packed here, one group of panels and one depth block at a time, just before it is used: a thread packs
// the B it needs itself (with rows split, every thread packs all of B: 1/M of its multiply work), so the
// threads never wait for each other and the packed slices are read back from L2, not memory.
FLASHLM_F32_TARGET inline void compute(int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B,
                                       int64_t ldb, KLayout lb, const float* bp, float* C, int64_t ldc, bool accumulate,
                                       int64_t r0, int64_t r1, int64_t j0, int64_t j1, Workspace& ws) {
    const int64_t kc = depth_block(K), mc = chunk_rows(kc), gp = group_panels(kc);
    // An accumulating product is C + Σ (the sum from zero, then added, as Eigen's), so that the order in
    // which several products add into one C does not change its bits. Over several depth blocks the partial
    // sums wait in ws.p; an overwrite keeps them in C.
    const bool partial = accumulate && K > kc;
    const int64_t pld = (j1 - j0) * k_nr;
    // A K-strided A (dyᵀ of a weight gradient, the head's zᵀ) already holds a tile's 14 values of one k side
    // by side: the micro-kernel reads them where they lie, with stride lda, instead of from a copy
    // (bench_gemm_shapes, 2 threads, three alternated sets: the head's dE +8-14 %, the dW products mostly
    // +2-8 %, once -6 %; the same k order, so the same bits). Not where lda is a multiple of 4 KiB: every k
    // of a tile would then fall in one L1 set.
    const bool direct_a = la == KLayout::k_outer && lda % 1024 != 0;
    const int64_t as = direct_a ? lda : k_mr;
    // A K-strided B (x of dW = dyᵀ x, W of dx = dy W) holds a panel's 32 values of one k side by side as
    // well: full panels are read in place, with stride ldb, and only a last partial panel is packed
    // (bench_gemm_shapes, 2 threads, best of 4 alternated: the dW products +8-10 %, dx within ±4 %; the same
    // k order, so the same bits). Not where ldb is a multiple of 2 KiB: the dW of GLU down (ldb = 512)
    // read in place lost 1-3 %, its rows falling into two L1 sets.
    const bool direct_b = !bp && lb == KLayout::k_outer && ldb % 512 != 0;
    const int64_t full_panels = N / k_nr;
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
        const int64_t akc = std::min(kc, K - k0);
        const int64_t a_step = direct_a ? k_mr : akc * k_mr;
        const bool first = k0 == 0, last = k0 + akc == K;
        for (int64_t g0 = j0; g0 < j1; g0 += gp) {
            const int64_t g1 = std::min(j1, g0 + gp);
            const float* bg = bp ? bp + g0 * K * k_nr + k0 * k_nr : ws.b.data();
            const int64_t bstride = bp ? K * k_nr : akc * k_nr;
            // Panels [p0, g1) are packed, from the buffer's start: the group, or with a direct B at most
            // its partial panel.
            const int64_t p0 = direct_b ? std::max(g0, full_panels) : g0;
            if (!bp && p0 < g1) pack_b_panels(B, ldb, lb, N, p0, g1, k0, akc, ws.b.data(), bstride);
            for (int64_t i0 = r0; i0 < r1; i0 += mc) {
                const int64_t i1 = std::min(r1, i0 + mc);
                if (!direct_a) pack_a_chunk(A, lda, la, i0, i1, k0, akc, ws.a.data());
                for (int64_t j = g0; j < g1; ++j) {
                    const bool in_place = direct_b && j < full_panels;
                    const float* b = in_place ? B + k0 * ldb + j * k_nr : bg + (j - p0) * bstride;
                    const int64_t bs = in_place ? ldb : k_nr;
                    const int64_t n0 = j * k_nr, ncols = std::min<int64_t>(k_nr, N - n0);
                    const float* a = direct_a ? A + k0 * lda + i0 : ws.a.data();
                    for (int64_t i = i0; i < i1; i += k_mr, a += a_step) {
                        float* c = C + i * ldc + n0;
                        float* p = partial ? ws.p.data() + (i - r0) * pld + (n0 - j0 * k_nr) : c;
                        const int64_t ld_p = partial ? pld : ldc;
                        const float* init = first ? nullptr : p;
                        float* out = last ? c : p;
                        const bool add_out = last && accumulate;
                        if (i + k_mr <= i1)
                            micro<k_mr>(akc, a, as, b, bs, init, ld_p, out, last ? ldc : ld_p, ncols, add_out);
                        else
                            micro_rows(int(i1 - i), akc, a, as, b, bs, init, ld_p, out, last ? ldc : ld_p, ncols,
                                       add_out, std::make_integer_sequence<int, k_mr - 1>());
                    }
                }
            }
        }
    }
}

inline void gemm_impl(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, KLayout la, const float* B,
                      int64_t ldb, KLayout lb, float* C, int64_t ldc, bool accumulate, const float* b_packed) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0.0f);
        return;
    }
    const int64_t tiles = (M + k_mr - 1) / k_mr, panels = (N + k_nr - 1) / k_nr;
    const bool by_rows = tiles >= panels;
    const bool team = go_parallel(by_rows ? tiles : panels, 2 * M * N * K);
    // Inside someone else's parallel region (team false) a call uses its own thread's buffers.
    const int caller = omp_in_parallel() ? thread_id() : 0;
    const int64_t kc = depth_block(K);
    const int64_t a_need = chunk_rows(kc) * kc, b_need = b_packed ? 0 : std::min(group_panels(kc), panels) * kc * k_nr;
    const int threads = std::min(max_threads(), k_max_threads);
    // Each thread grows its own buffers (once: they are kept), sized for its part of C.
    auto part = [&](Workspace& ws, int64_t r0, int64_t r1, int64_t j0, int64_t j1) {
        grow(ws.a, a_need);
        grow(ws.b, b_need);
        if (accumulate && K > kc) grow(ws.p, (r1 - r0) * (j1 - j0) * k_nr);
        compute(N, K, A, lda, la, B, ldb, lb, b_packed, C, ldc, accumulate, r0, r1, j0, j1, ws);
    };
    auto body = [&](int tid, int nt) {
        Workspace& ws = workspace(team ? tid : caller);
        if (by_rows) {
            // Even row ranges, not whole 14-row tiles: a weight gradient (M = 256 or 512 outputs, depth =
            // every token of the batch) has 19 or 37 tiles, and 9 against 10 left one thread waiting 5 %
            // of the product. A thread's last tile may be short; each row's sum is the same either way.
            const int64_t i0 = M * tid / nt, i1 = M * (tid + 1) / nt;
            if (i0 < i1) part(ws, i0, i1, 0, panels);
        } else {
            const int64_t p0 = panels * tid / nt, p1 = panels * (tid + 1) / nt;
            if (p0 < p1) part(ws, 0, M, p0, p1);
        }
    };
    if (team) {
#pragma omp parallel num_threads(threads)
        body(omp_get_thread_num(), omp_get_num_threads());
    } else {
        body(0, 1);
    }
}

inline void pack_b_impl(const float* B, int64_t ldb, KLayout lb, int64_t N, int64_t K, float* dst) {
    const int64_t panels = (N + k_nr - 1) / k_nr;
    if (N <= 0 || K <= 0) return;
    parallel_for(panels, N * K, [&](int64_t j0, int64_t j1) {
        pack_b_panels(B, ldb, lb, N, j0, j1, 0, K, dst + j0 * K * k_nr, K * k_nr);
    });
}

}  // namespace f32_detail
#endif

// Points gemm_f32_api.hpp's entry points at this kernel (kernels/arch/gemm_f32.cpp calls it during static
// initialisation). Off x86-64 nothing is registered and Eigen runs.
inline bool register_f32_kernels() {
#if FLASHLM_F32_X86
    F32Hooks& h = f32_hooks();
    h.gemm = &f32_detail::gemm_impl;
    h.pack_b = &f32_detail::pack_b_impl;
#endif
    return true;
}

}  // namespace flashlm::kernels
