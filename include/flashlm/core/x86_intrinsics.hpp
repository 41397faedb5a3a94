#pragma once
// <immintrin.h>, for every x86 kernel and for Eigen's packet code. g++ 12 reports false
// -Wmaybe-uninitialized / -Wuninitialized from its own intrinsics (_mm512_undefined_ps/pd inside
// _mm512_reduce_add_*, _mm512_slli_epi32, _mm512_cvtepi32_ps) once they are inlined. Diagnostics are
// located in the intrinsics header, and that header is include-guarded, so wrapping its first inclusion
// here silences exactly those and keeps the project's warning-free build honest everywhere else.
// Include this instead of <immintrin.h>; it is empty off x86.
#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
