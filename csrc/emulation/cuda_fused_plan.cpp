// csrc/cuda/fused_plan.cu compiled as C++ for the CPU (see runtime.h).
#include "../cuda/fused_plan.cu"
