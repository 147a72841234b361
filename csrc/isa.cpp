#include "isa.h"

#include <atomic>
#include <cstdlib>

namespace mixup_fused {

namespace isa_base {
extern const KernelTable kTable;
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
namespace isa_avx2 {
extern const KernelTable kTable;
}
namespace isa_avx512 {
extern const KernelTable kTable;
}
#endif

std::vector<const KernelTable*> supported_tables() {
  std::vector<const KernelTable*> out{&isa_base::kTable};
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
  if (avx2) out.push_back(&isa_avx2::kTable);
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    out.push_back(&isa_avx512::kTable);
#endif
  return out;
}

const KernelTable* find_table(const std::string& name) {
  for (const KernelTable* t : supported_tables())
    if (name == t->name) return t;
  return nullptr;
}

namespace {
std::atomic<const KernelTable*>& table_slot() {
  static std::atomic<const KernelTable*> table{[] {
    const char* env = std::getenv("MIXUP_FUSED_CPU_ISA");
    if (env != nullptr && *env != '\0') {
      const KernelTable* t = find_table(env);
      TORCH_CHECK(t != nullptr, "mixup_fused: MIXUP_FUSED_CPU_ISA=", env, " is not supported on this CPU");
      return t;
    }
    return supported_tables().back();
  }()};
  return table;
}
}  // namespace

const KernelTable* active_table() { return table_slot().load(); }

const KernelTable* set_active_table(const KernelTable* table) { return table_slot().exchange(table); }

int dtype_index(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return kF32;
    case at::kDouble:
      return kF64;
    case at::kHalf:
      return kF16;
    case at::kBFloat16:
      return kBF16;
    case at::kByte:
      return kU8;
    default:
      TORCH_CHECK_TYPE(false, "mixup_fused: unsupported dtype ", t);
  }
}

}  // namespace mixup_fused
