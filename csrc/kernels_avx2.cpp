// CPU kernels for AVX2 (+F16C, FMA), picked at run time when the CPU has them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The standard headers come before the target pragma: declared after it, their
// inline functions would carry this instruction set, and libstdc++ 13 marks
// some of them always_inline, which GCC then refuses to inline into code
// compiled for the default target ("target specific option mismatch").
#include <cstdint>
#include <cstring>
#include <vector>
#pragma GCC target("avx2,f16c,fma,popcnt")
#define MIXUP_FAST_DIV 1
#define MIXUP_F16C 1
#define MIXUP_MASK_SELECT 1
#define MIXUP_BLEND_U8_AVX2 1
#define MIXUP_DEINTERLEAVE_SSSE3 1
#define MIXUP_ISA isa_avx2
#define MIXUP_ISA_NAME "avx2"
#include "loops.h"
#endif
