// Where the CUDA backend's tensors live, for host code (.cu and .cpp): on_device(t) and a
// DeviceGuard. With PITOME_CUDA_EMULATION (csrc/emulation) the kernels run on the CPU, so
// their tensors are CPU tensors and there is no device to switch to.
#pragma once

#include <ATen/core/Tensor.h>

#ifdef PITOME_CUDA_EMULATION
namespace pitome {
namespace cuda {
inline bool on_device(const at::Tensor& t) { return t.is_cpu(); }
struct DeviceGuard {
  explicit DeviceGuard(const at::Device&) {}
};
}  // namespace cuda
}  // namespace pitome
#else
#include <c10/cuda/CUDAGuard.h>
namespace pitome {
namespace cuda {
inline bool on_device(const at::Tensor& t) { return t.is_cuda(); }
using DeviceGuard = c10::cuda::CUDAGuard;
}  // namespace cuda
}  // namespace pitome
#endif
