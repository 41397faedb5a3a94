# Gated delta rule (bolt-deltanet's mixer): sequential vs chunkwise-parallel forward, and forward+backward.
include_guard(GLOBAL)
add_executable(bench_gated_delta bench_gated_delta.cpp)
target_link_libraries(bench_gated_delta PRIVATE flashlm::flashlm flashlm_warnings benchmark::benchmark)
