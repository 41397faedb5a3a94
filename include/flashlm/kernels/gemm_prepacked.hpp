#pragma once
// Eigen's sequential blocked GEMM loop (Eigen/src/Core/products/GeneralMatrixMatrix.h, column-major result)
// with its lhs panels packed once and kept. kernels::gemm_rows multiplies a thread's rows of C in chunks (to
// keep the zeroed C in L2), and Eigen packs the whole lhs — in row-major terms the weight B — again for every
// chunk: a [512, 192] weight was packed 16 times per forward GEMM on one thread. Here a thread packs it once
// per call. The micro-kernel sees the same packed panels, depths and widths as in Eigen's own loop, so every
// element is summed in the same order: results are bit-identical to general_matrix_matrix_product::run.
#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "flashlm/core/parallel.hpp"
#include "flashlm/core/storage.hpp"

namespace flashlm::kernels::detail {

// Eigen's column-major view of a row-major product: C[m, n] = A · B is run as Cᵀ[n, m] = Bᵀ · Aᵀ, so the
// packed lhs is B (rows = n, depth = k) and the rhs is A.
template <class T, int LhsOrder, int RhsOrder>
struct EigenView {
    using Traits = Eigen::internal::gebp_traits<T, T>;
    static constexpr int lhs_order = RhsOrder == Eigen::RowMajor ? Eigen::ColMajor : Eigen::RowMajor;
    static constexpr int rhs_order = LhsOrder == Eigen::RowMajor ? Eigen::ColMajor : Eigen::RowMajor;
    using LhsMapper = Eigen::internal::const_blas_data_mapper<T, Eigen::Index, lhs_order>;
    using RhsMapper = Eigen::internal::const_blas_data_mapper<T, Eigen::Index, rhs_order>;
    using ResMapper = Eigen::internal::blas_data_mapper<T, Eigen::Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
    using PackLhs = Eigen::internal::gemm_pack_lhs<T, Eigen::Index, LhsMapper, Traits::mr, Traits::LhsProgress,
                                                   typename Traits::LhsPacket4Packing, lhs_order>;
    using PackRhs = Eigen::internal::gemm_pack_rhs<T, Eigen::Index, RhsMapper, Traits::nr, rhs_order>;
    using Gebp = Eigen::internal::gebp_kernel<T, T, Eigen::Index, ResMapper, Traits::mr, Traits::nr, false, false>;
};

// All lhs panels of one product, in the order Eigen's loop visits them: row block i2 (mc rows), then depth
// block k2 (kc). Eigen stores packed panels with aligned vector stores, so each panel starts on 64 bytes.
// The panels live in `own`, or in memory the caller lends (the tied head keeps E packed in the tape
// workspace for a whole forward).
template <class T>
struct PackedLhs {
    Storage<T> own;
    T* data = nullptr;
    Eigen::Index rows = 0, depth = 0, mc = 0, kc = 0;
    bool ready = false;
    bool f32 = false;  // packed by the f32 kernel (gemm_f32_api.hpp: panels of 32 columns), not for Eigen
};

inline constexpr Eigen::Index k_panel_align = 64;
template <class T>
Eigen::Index panel_floats(Eigen::Index rows, Eigen::Index depth) {
    constexpr Eigen::Index a = k_panel_align / Eigen::Index(sizeof(T));
    return (rows * depth + a - 1) / a * a;
}
// Offset of panel (row block bi, depth block bk): every earlier row block is full (mc rows).
template <class T>
Eigen::Index panel_offset(Eigen::Index bi, Eigen::Index bk, Eigen::Index rows, Eigen::Index depth, Eigen::Index mc,
                          Eigen::Index kc) {
    const Eigen::Index depth_blocks = (depth + kc - 1) / kc, last_kc = depth - (depth_blocks - 1) * kc;
    const Eigen::Index full_row_block = (depth_blocks - 1) * panel_floats<T>(mc, kc) + panel_floats<T>(mc, last_kc);
    const Eigen::Index amc = std::min(bi * mc + mc, rows) - bi * mc;
    return bi * full_row_block + bk * panel_floats<T>(amc, kc);
}
// Elements the panels of a rows × depth lhs take with blocking (mc, kc).
template <class T>
Eigen::Index packed_size(Eigen::Index rows, Eigen::Index depth, Eigen::Index mc, Eigen::Index kc) {
    const Eigen::Index row_blocks = (rows + mc - 1) / mc, depth_blocks = (depth + kc - 1) / kc;
    const Eigen::Index last_mc = rows - (row_blocks - 1) * mc, last_kc = depth - (depth_blocks - 1) * kc;
    return panel_offset<T>(row_blocks - 1, depth_blocks - 1, rows, depth, mc, kc) + panel_floats<T>(last_mc, last_kc);
}

// Packs every panel; with `threads`, the panels are split over the OpenMP team (parallel_for). `into` must
// be 64-byte aligned and hold packed_size elements.
template <class T, int LhsOrder, int RhsOrder>
void pack_lhs_all(PackedLhs<T>& p, const T* lhs, Eigen::Index ld, Eigen::Index rows, Eigen::Index depth, Eigen::Index mc,
                  Eigen::Index kc, T* into = nullptr, bool threads = false) {
    using V = EigenView<T, LhsOrder, RhsOrder>;
    typename V::LhsMapper map(lhs, ld);
    if (!into) {
        const size_t need = size_t(packed_size<T>(rows, depth, mc, kc));
        if (p.own.size() < need) p.own.resize_uninitialized(need);
        into = p.own.data();
    }
    const Eigen::Index row_blocks = (rows + mc - 1) / mc, depth_blocks = (depth + kc - 1) / kc;
    auto pack_range = [&](int64_t b, int64_t e) {
        typename V::PackLhs pack;
        for (int64_t panel = b; panel < e; ++panel) {
            const Eigen::Index bi = panel / depth_blocks, bk = panel % depth_blocks;
            const Eigen::Index i2 = bi * mc, k2 = bk * kc;
            const Eigen::Index amc = std::min(i2 + mc, rows) - i2, akc = std::min(k2 + kc, depth) - k2;
            pack(into + panel_offset<T>(bi, bk, rows, depth, mc, kc), map.getSubMapper(i2, k2), akc, amc);
        }
    };
    if (threads)
        parallel_for(row_blocks * depth_blocks, rows * depth, pack_range);
    else
        pack_range(0, row_blocks * depth_blocks);
    p.data = into, p.rows = rows, p.depth = depth, p.mc = mc, p.kc = kc, p.ready = true;
}

// Column-major res[rows, cols] += alpha · lhs · rhs with lhs from `p` (packed with the same mc and kc) and
// rhs[depth, cols] packed here into block_b (kc · nc floats). The loop is Eigen's sequential one.
template <class T, int LhsOrder, int RhsOrder>
void run_prepacked(const PackedLhs<T>& p, Eigen::Index cols, const T* rhs, Eigen::Index rhs_stride, T* res,
                   Eigen::Index res_stride, T alpha, Eigen::Index nc_blocking, T* block_b) {
    using V = EigenView<T, LhsOrder, RhsOrder>;
    typename V::RhsMapper rmap(rhs, rhs_stride);
    typename V::ResMapper cmap(res, res_stride, 1);
    typename V::PackRhs pack_rhs;
    typename V::Gebp gebp;
    const Eigen::Index rows = p.rows, depth = p.depth, kc = p.kc;
    const Eigen::Index mc = std::min(rows, p.mc), nc = std::min(cols, nc_blocking);
    const bool pack_rhs_once = mc != rows && kc == depth && nc == cols;
    for (Eigen::Index i2 = 0; i2 < rows; i2 += mc) {
        const Eigen::Index amc = std::min(i2 + mc, rows) - i2;
        for (Eigen::Index k2 = 0; k2 < depth; k2 += kc) {
            const Eigen::Index akc = std::min(k2 + kc, depth) - k2;
            const T* block_a = p.data + panel_offset<T>(i2 / mc, k2 / kc, rows, depth, mc, kc);
            for (Eigen::Index j2 = 0; j2 < cols; j2 += nc) {
                const Eigen::Index anc = std::min(j2 + nc, cols) - j2;
                if (!pack_rhs_once || i2 == 0) pack_rhs(block_b, rmap.getSubMapper(k2, j2), akc, anc);
                gebp(cmap.getSubMapper(i2, j2), block_a, block_b, amc, akc, anc, alpha);
            }
        }
    }
}

}  // namespace flashlm::kernels::detail
