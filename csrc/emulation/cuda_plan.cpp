// csrc/cuda/plan.cpp against the emulated kernels.
#include "../cuda/plan.cpp"
