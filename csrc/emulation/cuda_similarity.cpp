// csrc/cuda/similarity.cu compiled as C++ for the CPU (see runtime.h).
#include "../cuda/similarity.cu"
