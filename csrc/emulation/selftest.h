// The emulator's self-test kernels (selftest.cpp).
#pragma once

#include <string>
#include <vector>

namespace pitome {
namespace emulation {

// Runs self-test kernel `name` on `blocks` blocks of 64 threads; returns what it wrote
// (-1 where nothing was written). Raises what the emulator raises.
std::vector<int> run_selftest(const std::string& name, int blocks);

}  // namespace emulation
}  // namespace pitome
