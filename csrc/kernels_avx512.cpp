// CPU kernels for AVX-512 (F, BW, VL, DQ), picked at run time when the CPU has them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The standard headers come before the target pragma: declared after it, their
// inline functions would carry this instruction set, and libstdc++ 13 marks
// some of them always_inline, which GCC then refuses to inline into code
// compiled for the default target ("target specific option mismatch").
#include <cstdint>
#include <cstring>
#include <vector>
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,fma,popcnt")
#define MIXUP_FAST_DIV 1
#define MIXUP_F16C 1
#define MIXUP_MASKED_STORES 1
#define MIXUP_WIDE_VECTORS 1
#define MIXUP_DEINTERLEAVE_SSSE3 1
#define MIXUP_ISA isa_avx512
#define MIXUP_ISA_NAME "avx512"
#include "loops.h"
#endif
