# Ternary packing and the dispatched matvec/matmul kernels (every SIMD path against the scalar one).
include_guard(GLOBAL)
add_executable(test_kernels test_kernels.cpp)
target_link_libraries(test_kernels PRIVATE flashlm::flashlm flashlm_warnings doctest::doctest flashlm_test_main)
target_include_directories(test_kernels PRIVATE ${PROJECT_SOURCE_DIR})  # tests/test_random.hpp
flashlm_add_kernels(test_kernels)
add_test(NAME kernels COMMAND test_kernels)
# The same binary with the scalar path forced through the environment, as a user would.
add_test(NAME kernels_isa_env COMMAND test_kernels --test-case=*FLASHLM_ISA*)
set_tests_properties(kernels_isa_env PROPERTIES ENVIRONMENT FLASHLM_ISA=scalar)
# The AArch64 (NEON, sdot) kernels, cross-compiled and run under qemu-user on an x86-64 host
# (tests/neon/test_neon.sh; g++-aarch64-linux-gnu and qemu-user come with scripts/install-deps.sh --test).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  add_test(NAME kernels_neon COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/neon/test_neon.sh ${PROJECT_SOURCE_DIR}
           ${PROJECT_BINARY_DIR}/neon ${XSIMD_INCLUDE_DIR} ${EIGEN3_INCLUDE_DIRS}
           "$<TARGET_PROPERTY:doctest::doctest,INTERFACE_INCLUDE_DIRECTORIES>")
endif()
# v6.1 C-engine kernels: bit planes, popcount GEMM paths, transpose scatter-add (FLASHLM_ISA case included).
target_sources(test_kernels PRIVATE test_popcount.cpp)
target_sources(test_kernels PRIVATE test_ternary_gemm_i8.cpp)  # int8 training forward (train --quant int8)
# bf16 GEMM of `flashlm train --matmul bf16`: kernels against the scalar reference (FLASHLM_ISA case included).
target_sources(test_kernels PRIVATE test_gemm_bf16.cpp)
target_sources(test_kernels PRIVATE test_gemm_prepacked.cpp)  # B packed once per gemm_rows call (kernels/gemm_prepacked.hpp)
target_sources(test_kernels PRIVATE test_gemm_f32.cpp)  # the AVX-512F f32 GEMM behind float gemm_nt/nn/tn
target_sources(test_kernels PRIVATE test_ternary_add_gemm.cpp)  # the add kernel for f32 ternary products (training)
