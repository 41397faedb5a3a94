# Training-step throughput of Bolt small against Eigen's GEMM and a measured FMA peak (bench_train_step),
# and a one-config CLI (bench_train_step_cli) that bench/compare_pytorch.sh times against PyTorch.
include_guard(GLOBAL)
add_executable(bench_train_step ${CMAKE_CURRENT_LIST_DIR}/train_step.cpp)
add_executable(bench_train_step_cli ${CMAKE_CURRENT_LIST_DIR}/train_step_cli.cpp)
foreach(t bench_train_step bench_train_step_cli)
  target_link_libraries(${t} PRIVATE flashlm::flashlm flashlm_warnings)
  # For "examples/…" and "bench/…".
  target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR})
endforeach()
target_link_libraries(bench_train_step PRIVATE benchmark::benchmark)
target_link_libraries(bench_train_step_cli PRIVATE flashlm_models)
target_link_libraries(bench_train_step PRIVATE flashlm_models)
