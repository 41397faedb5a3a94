#pragma once
// GEMM for row-major float/double matrices: Eigen's packed GEBP kernels, driven by flashlm.
// Eigen's own OpenMP GEMM allocates its packing buffers on the heap on every call; here each thread
// owns a packing workspace that grows once (first step) and is reused, and threads take disjoint row
// ranges of C, so a training step allocates nothing and the result is deterministic.
#include <algorithm>
#include <utility>
#include <type_traits>
#include <vector>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"
#include "flashlm/core/tensor.hpp"
#include "flashlm/kernels/gemm_bf16_api.hpp"
#include "flashlm/kernels/gemm_f32_api.hpp"
#include "flashlm/kernels/gemm_prepacked.hpp"

namespace flashlm::kernels {

namespace detail {

template <class T>
struct Workspace {
    Storage<T> a, b;
    PackedLhs<T> lhs;  // B packed once for all chunks of one gemm_rows call (gemm_prepacked.hpp)
};

template <class T>
Workspace<T>& workspace(int tid) {
    static std::vector<Workspace<T>> ws(k_max_threads);
    return ws[size_t(tid)];
}

// Packing buffers for one call of Eigen's blocked product, provided by us instead of malloc.
template <class T>
struct Blocking : Eigen::internal::level3_blocking<T, T> {
    Blocking(Eigen::Index m, Eigen::Index n, Eigen::Index k, Workspace<T>& ws) {
        // The row-major product is run by Eigen as the transposed column-major one: m and n swap.
        this->m_mc = n, this->m_nc = m, this->m_kc = k;
        Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc, Eigen::Index(1));
        const size_t sa = size_t(this->m_mc * this->m_kc), sb = size_t(this->m_kc * this->m_nc);
        if (ws.a.size() < sa) ws.a.resize(sa);
        if (ws.b.size() < sb) ws.b.resize(sb);
        this->m_blockA = ws.a.data();
        this->m_blockB = ws.b.data();
    }
};

// C[m, n] (row-major, leading dim ldc) += A · B where A is [m, k] and B is [k, n]; LhsOrder/RhsOrder say
// how A and B are stored (RowMajor: leading dim = row length; ColMajor: = column length).
template <class T, int LhsOrder, int RhsOrder>
void gemm_acc(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
              T alpha, int tid) {
    using Gemm = Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, LhsOrder, false, T, RhsOrder, false,
                                                                 Eigen::RowMajor, 1>;
    Blocking<T> blocking(m, n, k, workspace<T>(tid));
    Gemm::run(m, n, k, a, lda, b, ldb, c, 1, ldc, alpha, blocking, nullptr);
}

// Eigen's kernel adds into C, so an overwrite zeroes C first. Zeroing a thread's whole range at once
// wrote megabytes that the GEMM then read back from memory; zeroing row chunks of about 512 KiB just
// before each is multiplied keeps them in L2. Chunks of at least 128 rows keep the repacking of the
// activation operand (once per chunk) small. Eigen's depth blocking depends on k alone, so every element
// sees the same additions in the same order as one call over the whole range.
template <class T>
int64_t chunk_rows(int64_t m, int64_t n, bool accumulate) {
    return accumulate ? m : std::max<int64_t>(128, (int64_t(512 << 10) / int64_t(sizeof(T)) / std::max<int64_t>(n, 1)) / 16 * 16);
}

// The (mc, kc) of Eigen's loop for a chunk of `rows` rows of C[., n] with depth k (Blocking, without buffers).
template <class T>
std::pair<Eigen::Index, Eigen::Index> chunk_mc_kc(int64_t rows, int64_t n, int64_t k) {
    Eigen::Index kc = k, mc = n, nc = rows;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(kc, mc, nc, Eigen::Index(1));
    return {std::min<Eigen::Index>(n, mc), kc};
}

// Threads split the rows of C. Row r of A starts at a + r·row_step (row-major: lda; column-major: 1).
// `shared`: B already packed (pack_b_shared) for every chunk whose blocking matches; else, when a thread has
// several chunks, it packs B once for all of them (gemm_prepacked.hpp; bit-identical to packing per chunk).
template <class T, int LhsOrder, int RhsOrder>
void gemm_rows(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, bool accumulate,
               const PackedLhs<T>* shared = nullptr) {
    const int64_t row_step = LhsOrder == Eigen::RowMajor ? lda : 1;
    // Row blocks of at least 16 keep Eigen's micro-kernel busy.
    const int64_t blocks = (m + 15) / 16;
    const int64_t chunk = chunk_rows<T>(m, n, accumulate);
    parallel_for_tid(blocks, 2 * m * n * k, [&](int64_t b0, int64_t b1, int tid) {
        const int64_t r0 = b0 * 16, r1 = std::min(m, b1 * 16);
        // B up to 4 MiB is packed once per thread and call when the thread runs several chunks.
        const bool own = !shared && r1 - r0 > chunk && n * k * int64_t(sizeof(T)) <= (int64_t(4) << 20);
        if (k > 0 && (shared || own)) {
            Workspace<T>& ws = workspace<T>(tid);
            if (own) ws.lhs.ready = false;
            for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
                const int64_t c1 = std::min(r1, c0 + chunk);
                if (!accumulate) std::fill(c + c0 * n, c + c1 * n, T(0));
                Blocking<T> blocking(c1 - c0, n, k, ws);
                const Eigen::Index mc = std::min<Eigen::Index>(n, blocking.mc()), kc = blocking.kc();
                if (own && (!ws.lhs.ready || ws.lhs.mc != mc || ws.lhs.kc != kc))
                    pack_lhs_all<T, LhsOrder, RhsOrder>(ws.lhs, b, ldb, n, k, mc, kc);
                const PackedLhs<T>& p = own ? ws.lhs : *shared;
                if (p.mc == mc && p.kc == kc && p.rows == n && p.depth == k)
                    run_prepacked<T, LhsOrder, RhsOrder>(p, c1 - c0, a + c0 * row_step, lda, c + c0 * n, n, T(1),
                                                         blocking.nc(), blocking.blockB());
                else  // this chunk's blocking differs from the shared packing: Eigen's own loop
                    gemm_acc<T, LhsOrder, RhsOrder>(c1 - c0, n, k, a + c0 * row_step, lda, b, ldb, c + c0 * n, n, T(1), tid);
            }
            return;
        }
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
            const int64_t c1 = std::min(r1, c0 + chunk);
            if (!accumulate) std::fill(c + c0 * n, c + c1 * n, T(0));
            if (k > 0) gemm_acc<T, LhsOrder, RhsOrder>(c1 - c0, n, k, a + c0 * row_step, lda, b, ldb, c + c0 * n, n, T(1), tid);
        }
    });
}

// Packs B of gemm_rows(m, n, k, ...) once, for many calls with the same B and m (into: n·k floats, or null
// for p's own buffer), with the blocking gemm_rows' first chunk will use; the threads share the packing.
template <class T>
std::pair<Eigen::Index, Eigen::Index> shared_mc_kc(int64_t m, int64_t n, int64_t k, bool accumulate) {
    const int64_t blocks = (m + 15) / 16;
    const int64_t team = go_parallel(blocks, 2 * m * n * k) ? max_threads() : 1;
    const int64_t rows = std::max<int64_t>(1, std::min({m, chunk_rows<T>(m, n, accumulate), blocks / team * 16}));
    return chunk_mc_kc<T>(rows, n, k);
}
template <class T, int LhsOrder, int RhsOrder>
void pack_b_shared(PackedLhs<T>& p, int64_t m, int64_t n, int64_t k, const T* b, int64_t ldb, bool accumulate, T* into) {
    const auto [mc, kc] = shared_mc_kc<T>(m, n, k, accumulate);
    pack_lhs_all<T, LhsOrder, RhsOrder>(p, b, ldb, n, k, mc, kc, into, true);
}

// `--matmul bf16` (gemm_bf16_api.hpp): float products go to the bf16 kernel, except inside a parallel region
// (its packing buffers are shared).
template <class T>
bool use_bf16() {
    if constexpr (std::is_same_v<T, float>)
        return matmul_mode() == Matmul::bf16 && !omp_in_parallel();
    else
        return false;
}

// Float products run flashlm's AVX-512F kernel (gemm_f32_api.hpp) where it is enabled (the default on
// AVX-512F; FLASHLM_F32_GEMM=eigen keeps Eigen), except inside a parallel region (as use_bf16); doubles and
// other CPUs run Eigen.
template <class T>
bool use_f32() {
    if constexpr (std::is_same_v<T, float>)
        return f32_kernel_enabled() && !omp_in_parallel();
    else
        return false;
}

}  // namespace detail

// C[M,N] (+)= A[M,K] · B[N,K]ᵀ   (linear forward: y = x Wᵀ)
template <class T>
void gemm_nt(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate) {
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_bf16<T>()) return gemm_bf16_nt(M, N, K, A, B, C, accumulate);
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_f32<T>())
            return gemm_f32_nt(M, N, K, A, B, C, accumulate);
    detail::gemm_rows<T, Eigen::RowMajor, Eigen::ColMajor>(M, N, K, A, K, B, K, C, accumulate);
}
// C[M,N] (+)= A[M,K] · B[K,N]   (linear backward: dx = dy W)
template <class T>
void gemm_nn(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate) {
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_bf16<T>()) return gemm_bf16_nn(M, N, K, A, B, C, accumulate);
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_f32<T>())
            return gemm_f32_nn(M, N, K, A, B, C, accumulate);
    detail::gemm_rows<T, Eigen::RowMajor, Eigen::RowMajor>(M, N, K, A, K, B, N, C, accumulate);
}
// C[M,N] (+)= A[K,M]ᵀ · B[K,N]   (linear backward: dW = dyᵀ x)
template <class T>
void gemm_tn(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate) {
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_bf16<T>()) return gemm_bf16_tn(M, N, K, A, B, C, accumulate);
    if constexpr (std::is_same_v<T, float>)
        if (detail::use_f32<T>())
            return gemm_f32_tn(M, N, K, A, B, C, accumulate);
    detail::gemm_rows<T, Eigen::ColMajor, Eigen::RowMajor>(M, N, K, A, M, B, N, C, accumulate);
}

// Whether callers that split the work over the threads themselves (one sequence per thread, say) may call
// gemm_f32_nt/nn/tn on each thread: the kernel is on and --matmul bf16 is off (the bf16 kernel's buffers
// are shared, so under it such callers stay serial and let gemm_* split inside).
inline bool local_f32_gemm() { return f32_kernel_enabled() && matmul_mode() != Matmul::bf16; }

// B packed once for many products with the same B and row count (the tied head: E over its row blocks).
// Numbers are bit-identical to the unpacked calls. The f32 path only: under --matmul bf16 these forward to
// the bf16 kernels, which pack B themselves.
template <class T>
using PackedB = detail::PackedLhs<T>;
// Elements (64-byte aligned start required) that `into` of pack_b_nt / pack_b_nn must hold.
template <class T>
int64_t packed_b_size(int64_t M, int64_t N, int64_t K, bool accumulate) {
    if (detail::use_f32<T>()) return f32_packed_b_size(N, K);
    const auto [mc, kc] = detail::shared_mc_kc<T>(M, N, K, accumulate);
    return detail::packed_size<T>(N, K, mc, kc);
}
namespace detail {
// B ([K,N] as the product sees it, layout lb) packed for the f32 kernel (use_f32), into `into` or p's own.
template <class T>
void pack_b_f32(PackedB<T>& p, int64_t N, int64_t K, const T* B, int64_t ldb, KLayout lb, T* into) {
    if constexpr (std::is_same_v<T, float>) {
        if (!into) {
            if (int64_t(p.own.size()) < f32_packed_b_size(N, K)) p.own.resize_uninitialized(size_t(f32_packed_b_size(N, K)));
            into = p.own.data();
        }
        pack_f32_b(B, ldb, lb, N, K, into);
        p.data = into, p.rows = N, p.depth = K, p.mc = 0, p.kc = 0, p.ready = true, p.f32 = true;
    } else {
        (void)p, (void)N, (void)K, (void)B, (void)ldb, (void)lb, (void)into;
    }
}
}  // namespace detail
template <class T>
void pack_b_nt(PackedB<T>& p, int64_t M, int64_t N, int64_t K, const T* B, bool accumulate, T* into = nullptr) {
    if (detail::use_f32<T>()) return detail::pack_b_f32(p, N, K, B, K, KLayout::k_inner, into);
    p.f32 = false;
    detail::pack_b_shared<T, Eigen::RowMajor, Eigen::ColMajor>(p, M, N, K, B, K, accumulate, into);
}
template <class T>
void pack_b_nn(PackedB<T>& p, int64_t M, int64_t N, int64_t K, const T* B, bool accumulate, T* into = nullptr) {
    if (detail::use_f32<T>()) return detail::pack_b_f32(p, N, K, B, N, KLayout::k_outer, into);
    p.f32 = false;
    detail::pack_b_shared<T, Eigen::RowMajor, Eigen::RowMajor>(p, M, N, K, B, N, accumulate, into);
}
// A B packed for the f32 kernel is used by it (the kernel then runs even where use_f32 would not choose it).
template <class T>
void gemm_nt_packed(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate, const PackedB<T>& p) {
    if constexpr (std::is_same_v<T, float>) {
        if (detail::use_bf16<T>()) return gemm_bf16_nt(M, N, K, A, B, C, accumulate);
        if (p.f32) return gemm_f32(M, N, K, A, K, KLayout::k_inner, B, K, KLayout::k_inner, C, N, accumulate, p.data);
    }
    detail::gemm_rows<T, Eigen::RowMajor, Eigen::ColMajor>(M, N, K, A, K, B, K, C, accumulate, &p);
}
template <class T>
void gemm_nn_packed(int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, bool accumulate, const PackedB<T>& p) {
    if constexpr (std::is_same_v<T, float>) {
        if (detail::use_bf16<T>()) return gemm_bf16_nn(M, N, K, A, B, C, accumulate);
        if (p.f32) return gemm_f32(M, N, K, A, K, KLayout::k_inner, B, N, KLayout::k_outer, C, N, accumulate, p.data);
    }
    detail::gemm_rows<T, Eigen::RowMajor, Eigen::RowMajor>(M, N, K, A, K, B, N, C, accumulate, &p);
}

}  // namespace flashlm::kernels
