// The AVX-512F f32 GEMM behind float kernels::gemm_nt/nn/tn (kernels/gemm_f32.hpp), compiled once per program
// and reached through gemm_f32_api.hpp's pointers, which this file fills before main. The kernel is made of
// target-attribute functions run only after a run-time CPUID check, so this file needs no ISA flags.
#include "flashlm/kernels/gemm_f32.hpp"

namespace {
[[maybe_unused]] const bool registered = flashlm::kernels::register_f32_kernels();
}  // namespace
