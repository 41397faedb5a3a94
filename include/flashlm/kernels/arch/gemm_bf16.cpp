// The bf16 GEMM kernels of `--matmul bf16` (kernels/gemm_bf16.hpp), compiled once per program and reached
// through gemm_bf16_api.hpp's pointers, which this file fills before main. The kernels are
// target-attribute functions chosen at run time, so this file needs no ISA flags of its own.
#include "flashlm/kernels/gemm_bf16.hpp"

namespace {
[[maybe_unused]] const bool registered = flashlm::kernels::register_bf16_kernels();
}  // namespace
