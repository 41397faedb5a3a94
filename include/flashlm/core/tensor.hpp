#pragma once
// Tensor<T>: a non-owning view (data, optional gradient, shape) over contiguous row-major memory that
// lives in an Arena (activations), a ParamStore (parameters) or a Storage (tests, tools). Views and
// reshapes copy three words; ownership stays with the allocator, so tensors are free to pass by value.
// g++ 12 reports false -W(maybe-)uninitialized warnings from its own AVX-512 intrinsics
// (_mm512_undefined_ps/pd) when they are inlined into Eigen's packet code; diagnostics are
// location-based, so silencing them around the first inclusion of those headers keeps the project's
// warning-free build honest elsewhere (core/x86_intrinsics.hpp; Eigen's own headers stay wrapped too).
#include "flashlm/core/x86_intrinsics.hpp"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include <stdexcept>
#include <string>

#include "flashlm/core/shape.hpp"

namespace flashlm {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned>;
template <class T>
using VecMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

template <class T>
struct Tensor {
    T* data = nullptr;
    T* grad = nullptr;  // null when no gradient flows into this tensor
    Shape shape;

    Tensor() = default;
    Tensor(T* d, T* g, Shape s) : data(d), grad(g), shape(s) {}

    int64_t numel() const { return shape.numel(); }
    int64_t rows() const { return shape.rows(); }
    int64_t cols() const { return shape.cols(); }
    int64_t dim(int i) const { return shape[i]; }
    bool requires_grad() const { return grad != nullptr; }
    bool defined() const { return data != nullptr; }

    Tensor reshape(Shape s) const {
        if (s.numel() != shape.numel())
            throw std::invalid_argument("reshape " + shape.str() + " -> " + s.str() + ": element count differs");
        return Tensor(data, grad, s);
    }
    // Rows [r0, r1) of the tensor seen as a matrix; still contiguous.
    Tensor row_slice(int64_t r0, int64_t r1) const {
        int64_t c = cols();
        return Tensor(data + r0 * c, grad ? grad + r0 * c : nullptr, Shape{r1 - r0, c});
    }
    T& operator[](int64_t i) const { return data[i]; }

    MatMap<T> mat() const { return MatMap<T>(data, rows(), cols()); }
    MatMap<T> grad_mat() const { return MatMap<T>(grad, rows(), cols()); }
    VecMap<T> vec() const { return VecMap<T>(data, numel()); }
    VecMap<T> grad_vec() const { return VecMap<T>(grad, numel()); }
};

// Shape checks build their message only on failure: ops run every step and must not allocate.
#define FLASHLM_CHECK(cond, msg)                            \
    do {                                                    \
        if (!(cond)) throw std::invalid_argument(msg);      \
    } while (0)

}  // namespace flashlm
