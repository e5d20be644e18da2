// csrc/cuda/gather.cu compiled as C++ for the CPU (see runtime.h).
#include "../cuda/gather.cu"
