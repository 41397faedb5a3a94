# SUPERNOVA II sparse top-2 experts against running every expert (bench_moe).
include_guard(GLOBAL)
add_executable(bench_moe ${CMAKE_CURRENT_LIST_DIR}/bench_moe.cpp)
target_link_libraries(bench_moe PRIVATE flashlm::flashlm flashlm_models flashlm_warnings)
target_include_directories(bench_moe PRIVATE ${PROJECT_SOURCE_DIR})
flashlm_add_kernels(bench_moe)
