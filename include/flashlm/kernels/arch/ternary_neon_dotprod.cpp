// AArch64 int8 kernels with the Armv8.2 dot product (vdotq_s32 / sdot). Compiled with
// -march=armv8.2-a+dotprod by flashlm_add_kernels(); the dispatcher only calls them when the kernel
// reports HWCAP_ASIMDDP. The exact family and the dense float head need no dotprod and stay in
// ternary_neon.cpp (neon64_dotprod derives from neon64, so those jobs resolve to its overloads).
#if defined(__aarch64__)
#include "flashlm/kernels/arch/ternary_neon_impl.hpp"

namespace flashlm::kernels::detail {

void TernaryRows::operator()(neon64_dotprod, const I8Job& j) const noexcept { i8_job<true>(j); }
void TernaryRows::operator()(neon64_dotprod, const DenseI8Job& j) const noexcept { dense_i8<true>(j); }

}  // namespace flashlm::kernels::detail
#endif
