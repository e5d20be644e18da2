// The CPU ops (op_schemas.h): X(name, schema) for the kernel pitome::cpu::name (kernels.h),
// which register.cpp registers with the dispatcher as torch.ops.pitome.cpu_<name> (its
// schema: "cpu_<name>" followed by schema) and python_module.cpp binds as the plain
// function pitome_kernels._C.cpu_<name>.
#pragma once

#include "../op_schemas.h"
#include "kernels.h"

#define PITOME_CPU_OPS(X) PITOME_OPS(X)
