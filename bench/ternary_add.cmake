# The add kernel for f32 ternary products against the f32 FMA GEMM on a training step's BitLinear shapes.
include_guard(GLOBAL)
add_executable(bench_ternary_add ${CMAKE_CURRENT_LIST_DIR}/ternary_add.cpp)
target_link_libraries(bench_ternary_add PRIVATE flashlm::flashlm flashlm_warnings)
target_include_directories(bench_ternary_add PRIVATE ${PROJECT_SOURCE_DIR})
flashlm_add_kernels(bench_ternary_add)  # kernels/arch/gemm_f32.cpp: the FMA GEMM it compares with
