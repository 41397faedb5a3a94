# v6.1 C-engine kernels: popcount GEMM paths vs Eigen float GEMM, scatter-add dW vs gemm_tn (supernova2-engine shapes).
include_guard(GLOBAL)
add_executable(bench_popcount bench_popcount.cpp)
target_link_libraries(bench_popcount PRIVATE flashlm::flashlm flashlm_warnings benchmark::benchmark)
flashlm_add_kernels(bench_popcount)
