// Which ISA clone of the vector kernels runs (simd.h), by name.
#include <c10/util/Exception.h>

#include "kernels.h"
#include "simd.h"

namespace pitome {
namespace cpu {

namespace {
const char* const kIsaNames[] = {"default", "avx2", "avx512"};  // indexed by simd::Isa
}

std::string cpu_isa() { return kIsaNames[simd::isa()]; }

std::string supported_cpu_isa() { return kIsaNames[simd::supported_isa()]; }

std::string set_cpu_isa(c10::string_view name) {
  for (int isa = simd::kDefault; isa <= simd::kAvx512; ++isa)
    if (name == kIsaNames[isa]) return kIsaNames[simd::set_isa(isa)];
  TORCH_CHECK_VALUE(false, "pitome set_cpu_isa: isa must be 'avx512', 'avx2' or 'default', got '", std::string(name),
                    "'");
}

}  // namespace cpu
}  // namespace pitome
