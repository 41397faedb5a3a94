#pragma once
// Shape: up to 4 dimensions, held by value so views and tape nodes stay allocation-free.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace flashlm {

struct Shape {
    static constexpr int max_rank = 4;
    std::array<int64_t, max_rank> dims{};
    int rank = 0;

    Shape() = default;
    Shape(std::initializer_list<int64_t> d) {
        if (d.size() > max_rank) throw std::invalid_argument("Shape: rank > 4");
        for (int64_t v : d) {
            if (v < 0) throw std::invalid_argument("Shape: negative dimension");
            dims[rank++] = v;
        }
    }
    int64_t operator[](int i) const { return dims[i < 0 ? rank + i : i]; }
    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < rank; ++i) n *= dims[i];
        return n;
    }
    // Rows when the tensor is seen as a matrix [numel / last, last].
    int64_t rows() const { return rank == 0 ? 1 : numel() / (dims[rank - 1] ? dims[rank - 1] : 1); }
    int64_t cols() const { return rank == 0 ? 1 : dims[rank - 1]; }
    bool operator==(const Shape& o) const {
        if (rank != o.rank) return false;
        for (int i = 0; i < rank; ++i)
            if (dims[i] != o.dims[i]) return false;
        return true;
    }
    bool operator!=(const Shape& o) const { return !(*this == o); }
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
        return s + "]";
    }
};

}  // namespace flashlm
