// Instruction-set dispatch of the CPU loops: one kernel table per instruction
// set (kernels_{base,avx2,avx512}.cpp), the best one this CPU supports picked
// at run time, as ATen's CPU capability dispatch does.
// MIXUP_FUSED_CPU_ISA=base|avx2|avx512 forces one.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "kernel_types.h"

namespace mixup_fused {

std::vector<const KernelTable*> supported_tables();
const KernelTable* find_table(const std::string& name);
// The table in use.
const KernelTable* active_table();
// Selects another table (for the tests); returns the previous one.
const KernelTable* set_active_table(const KernelTable* table);
// The DType index of the tables for a tensor dtype.
int dtype_index(at::ScalarType t);

}  // namespace mixup_fused
