// C++ CPU kernels of pitome_kernels. Each function computes exactly what the function of
// the same name in pitome_kernels/reference.py computes (see SPEC.md). Each checks every
// argument it is given (shapes, dtypes, devices, values such as r and margin, and the
// plan's contents) and raises c10::Error: eager Python calls run the kernel first and the
// Python checks only to explain a failure with an error that names the argument.
// The signatures are those of op_declarations.inc (the schemas: op_schemas.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <string>
#include <tuple>

namespace pitome {
namespace cpu {

#include "../op_declarations.inc"

// The ISA clone the vector kernels run: "avx512", "avx2" or "default" (the baseline ISA).
std::string cpu_isa();

// The best clone this CPU supports (PITOME_CPU_ISA and set_cpu_isa may run a lower one).
std::string supported_cpu_isa();

// Runs the kernels in clone `name` from now on, or in the best one this CPU supports below
// it; returns the clone now in use. Set it between kernel calls. Raises for other names.
std::string set_cpu_isa(c10::string_view name);

}  // namespace cpu
}  // namespace pitome
