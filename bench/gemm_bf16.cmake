# bf16 GEMM (--matmul bf16) against the Eigen f32 GEMM on the Bolt training shapes.
include_guard(GLOBAL)
add_executable(bench_gemm_bf16 bench_gemm_bf16.cpp)
target_link_libraries(bench_gemm_bf16 PRIVATE flashlm::flashlm flashlm_warnings)
flashlm_add_kernels(bench_gemm_bf16)  # kernels/arch/gemm_bf16.cpp: the kernels behind gemm_bf16_api.hpp
