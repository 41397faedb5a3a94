add_executable(bench_generate ${CMAKE_CURRENT_LIST_DIR}/bench_generate.cpp)
target_include_directories(bench_generate PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(bench_generate PRIVATE flashlm::flashlm flashlm_models flashlm_warnings benchmark::benchmark)
flashlm_add_kernels(bench_generate)
