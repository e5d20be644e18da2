// csrc/cuda/merge.cu compiled as C++ for the CPU (see runtime.h).
#include "../cuda/merge.cu"
