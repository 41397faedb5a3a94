# flashlm_add_kernels(<target>): compiles flashlm's runtime-dispatched SIMD kernels into <target>.
#
# The library is header-only, but each SIMD path must be compiled with its own ISA flags while the code
# that calls it is not (it has to run on any x86-64 CPU until the dispatcher has looked at the CPU).
# So the per-ISA kernels ship as .cpp files next to the headers and every target that includes
# <flashlm/kernels/ternary_matmul.hpp> adds them with this function. Each file gets flags that also switch
# off anything newer, so a target built with -march=native keeps, e.g., AVX-512 out of the AVX2 path.
#
# In-tree this file is included by the top-level CMakeLists.txt; installed consumers use
#   find_package(flashlm REQUIRED)
#   include(${flashlm_DIR}/FlashlmKernels.cmake)
#   flashlm_add_kernels(my_app)
include_guard(GLOBAL)

# Where the kernel sources live: <root>/include/flashlm/kernels/arch, found by walking up from this
# file (<root>/cmake in the source tree, <prefix>/<libdir>/cmake/flashlm once installed).
set(_flashlm_dir "${CMAKE_CURRENT_LIST_DIR}")
set(FLASHLM_KERNELS_SOURCE_DIR "")
foreach(_flashlm_level RANGE 5)
  get_filename_component(_flashlm_dir "${_flashlm_dir}" DIRECTORY)
  if(EXISTS "${_flashlm_dir}/include/flashlm/kernels/arch/ternary_avx2.cpp")
    set(FLASHLM_KERNELS_SOURCE_DIR "${_flashlm_dir}/include/flashlm/kernels/arch")
    break()
  endif()
endforeach()
if(NOT FLASHLM_KERNELS_SOURCE_DIR)
  message(FATAL_ERROR "FlashlmKernels.cmake: cannot find include/flashlm/kernels/arch above ${CMAKE_CURRENT_LIST_DIR}")
endif()

function(flashlm_add_kernels target)
  # Inside the flashlm project the kernels are compiled once (the top-level CMakeLists.txt's
  # flashlm_kernel_objects) and every binary links those objects.
  if(TARGET flashlm_kernel_objects AND NOT target STREQUAL "flashlm_kernel_objects")
    target_link_libraries(${target} PRIVATE flashlm_kernel_objects)
    return()
  endif()
  set(_dir "${FLASHLM_KERNELS_SOURCE_DIR}")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    # Armv8.0 Advanced SIMD for every AArch64 CPU, sdot for those that report it (HWCAP_ASIMDDP).
    target_sources(${target} PRIVATE "${_dir}/ternary_neon.cpp" "${_dir}/ternary_neon_dotprod.cpp")
    set_source_files_properties("${_dir}/ternary_neon.cpp" TARGET_DIRECTORY ${target}
      PROPERTIES COMPILE_OPTIONS "-march=armv8-a")
    set_source_files_properties("${_dir}/ternary_neon_dotprod.cpp" TARGET_DIRECTORY ${target}
      PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod")
    _flashlm_kernels_alone(${target} "${_dir}/ternary_neon.cpp" "${_dir}/ternary_neon_dotprod.cpp")
    return()
  endif()
  if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i.86)$")
    return()  # the dispatcher is scalar-only off x86-64 and AArch64
  endif()
  target_sources(${target} PRIVATE "${_dir}/ternary_sse2.cpp" "${_dir}/ternary_avx2.cpp" "${_dir}/ternary_avx512.cpp")
  # The bf16 GEMM of --matmul bf16 (target-attribute kernels, checked at run time; no per-file flags).
  target_sources(${target} PRIVATE "${_dir}/gemm_bf16.cpp")
  # The AVX-512F f32 GEMM behind float gemm_nt/nn/tn (target attributes + a run-time check, as above).
  target_sources(${target} PRIVATE "${_dir}/gemm_f32.cpp")
  # Source-file options come after the target's own (e.g. -march=native), so the -mno-* switches win.
  set_source_files_properties("${_dir}/ternary_sse2.cpp" TARGET_DIRECTORY ${target}
    PROPERTIES COMPILE_OPTIONS "-msse2;-mno-sse3")
  set_source_files_properties("${_dir}/ternary_avx2.cpp" TARGET_DIRECTORY ${target}
    PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mno-avx512f")
  set_source_files_properties("${_dir}/ternary_avx512.cpp" TARGET_DIRECTORY ${target}
    PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mavx512f;-mavx512bw;-mavx512dq;-mavx512vl;-mavx512vnni")
  _flashlm_kernels_alone(${target} "${_dir}/ternary_sse2.cpp" "${_dir}/ternary_avx2.cpp" "${_dir}/ternary_avx512.cpp"
    "${_dir}/gemm_bf16.cpp" "${_dir}/gemm_f32.cpp")
endfunction()

# A target with a precompiled header or a unity build must compile the kernel files alone: with the
# header forced in (or the target's other files pasted in), inline library code compiled with, e.g.,
# -mavx512f could become the copy the linker keeps for the whole program.
function(_flashlm_kernels_alone target)
  set_source_files_properties(${ARGN} TARGET_DIRECTORY ${target}
    PROPERTIES SKIP_PRECOMPILE_HEADERS ON SKIP_UNITY_BUILD_INCLUSION ON)
endfunction()

# Ship this file with the package so that installed consumers get flashlm_add_kernels() too (the .cpp
# files are installed with the headers). Only the flashlm project itself installs it.
if(EXISTS "${CMAKE_CURRENT_LIST_DIR}/flashlmConfig.cmake.in")
  include(GNUInstallDirs)
  install(FILES "${CMAKE_CURRENT_LIST_FILE}" DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flashlm)
endif()
