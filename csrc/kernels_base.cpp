// CPU kernels for the baseline instruction set of the build (SSE2 on x86-64).
#define MIXUP_ISA isa_base
#define MIXUP_ISA_NAME "base"
#include "loops.h"
