// Which ISA clone of the vector kernels runs (simd.h), by name.
#include <c10/util/Exception.h>

#include <string>

#include "kernels.h"
#include "simd.h"

namespace pitome {
namespace cpu {

std::string cpu_isa() { return simd::kIsaNames[simd::isa()]; }

std::string supported_cpu_isa() { return simd::kIsaNames[simd::supported_isa()]; }

std::string set_cpu_isa(c10::string_view name) {
  const int isa = simd::isa_from_name(std::string(name).c_str());
  TORCH_CHECK_VALUE(isa >= 0, "pitome set_cpu_isa: isa must be 'avx512', 'avx2' or 'default', got '", std::string(name),
                    "'");
  return simd::kIsaNames[simd::set_isa(isa)];
}

}  // namespace cpu
}  // namespace pitome
