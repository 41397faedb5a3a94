# GFLOP/s of kernels::gemm_* on a Bolt b16x256 step's GEMM shapes against the measured FMA peak.
include_guard(GLOBAL)
add_executable(bench_gemm_shapes ${CMAKE_CURRENT_LIST_DIR}/gemm_shapes.cpp)
target_link_libraries(bench_gemm_shapes PRIVATE flashlm::flashlm flashlm_warnings)
target_include_directories(bench_gemm_shapes PRIVATE ${PROJECT_SOURCE_DIR})
flashlm_add_kernels(bench_gemm_shapes)  # kernels/arch/gemm_f32.cpp: the f32 kernel it compares with Eigen
