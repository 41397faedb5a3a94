# Ternary matvec: scalar vs each SIMD path vs Eigen's float GEMV on the dequantised weights.
include_guard(GLOBAL)
add_executable(bench_kernels bench_kernels.cpp)
target_link_libraries(bench_kernels PRIVATE flashlm::flashlm flashlm_warnings benchmark::benchmark)
flashlm_add_kernels(bench_kernels)
