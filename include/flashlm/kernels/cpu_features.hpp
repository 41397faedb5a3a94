#pragma once
// The one x86-64 CPU feature probe behind every run-time dispatched kernel (ternary_matmul.hpp's ISA
// choice, popcount_gemm.hpp's paths, gemm_bf16_api.hpp's bf16 kernel): CPUID for what the CPU has,
// XGETBV for what the OS saves on a context switch (an AVX-512 CPU whose OS does not save the ZMM state
// must not run AVX-512 code). Read once per process.
//
// AMX is different: Linux (>= 5.16) also wants each process to ask for the 8 KiB tile state
// (arch_prctl ARCH_REQ_XCOMP_PERM) before its first tile instruction. That request enlarges the
// process's signal frames, so it is a separate call (request_amx_permission) that only the bf16 kernel
// choice makes, not part of the probe.
#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace flashlm::kernels {

struct CpuFeatures {
    bool sse2 = false, avx2 = false, fma = false;
    bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
    bool avx512vnni = false, avx512vpopcntdq = false, avx512bf16 = false;
    bool amx_tile = false, amx_bf16 = false;  // CPU bits and OS tile state; see request_amx_permission
};

namespace detail {

inline CpuFeatures probe_cpu() {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.sse2 = (d >> 26) & 1u;
    const bool osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u, fma = (c >> 12) & 1u;
    uint64_t xcr0 = 0;
    if (osxsave) {
        // xgetbv as an instruction, not _xgetbv(): the intrinsic needs -mxsave on the including file.
        uint32_t lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = uint64_t(hi) << 32 | lo;
    }
    const bool os_avx = (xcr0 & 0x6) == 0x6;           // XMM and YMM state
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    const bool os_amx = (xcr0 & 0x60000) == 0x60000;   // XTILECFG, XTILEDATA
    unsigned max_leaf = 0;
    __get_cpuid(0, &max_leaf, &b, &c, &d);
    if (max_leaf < 7 || !avx || !os_avx) return f;
    f.fma = fma;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned sub_leaves = a;
    f.avx2 = (b >> 5) & 1u;
    if (os_avx512) {
        f.avx512f = (b >> 16) & 1u;
        f.avx512dq = f.avx512f && ((b >> 17) & 1u);
        f.avx512bw = f.avx512f && ((b >> 30) & 1u);
        f.avx512vl = f.avx512f && ((b >> 31) & 1u);
        f.avx512vnni = f.avx512f && ((c >> 11) & 1u);
        f.avx512vpopcntdq = f.avx512f && ((c >> 14) & 1u);
        if (sub_leaves >= 1) {
            unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
            __cpuid_count(7, 1, a1, b1, c1, d1);
            f.avx512bf16 = f.avx512f && ((a1 >> 5) & 1u);
        }
    }
    f.amx_tile = os_amx && ((d >> 24) & 1u);
    f.amx_bf16 = f.amx_tile && ((d >> 22) & 1u);
#endif
    return f;
}

}  // namespace detail

inline const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detail::probe_cpu();
    return f;
}

// Whether FLASHLM_ISA (set, and not "avx512") hides the AVX-512 kernels of training (the f32 and bf16
// GEMMs, the ternary add kernel), as it does the ternary kernels' AVX-512 paths. Read on every call.
inline bool isa_env_hides_avx512() {
    const char* env = std::getenv("FLASHLM_ISA");
    return env && *env && std::string(env) != "avx512";
}

// Asks Linux for this process's AMX tile state (needed once before the first tile instruction); false
// off Linux, on kernels before 5.16, or when the CPU has no AMX.
inline bool request_amx_permission() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__linux__)
    if (!cpu_features().amx_tile) return false;
    constexpr long k_arch_req_xcomp_perm = 0x1023, k_xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, k_arch_req_xcomp_perm, k_xfeature_xtiledata) == 0;
#else
    return false;
#endif
}

}  // namespace flashlm::kernels
