// The fiber scheduler behind runtime.h. A block's threads are ucontext fibers on one OS
// thread; the scheduler resumes every ready fiber once per round (in the configured order),
// then releases the barriers every waiting participant has reached.
#include "runtime.h"

#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

namespace pitome {
namespace emulation {
namespace {

// AddressSanitizer must be told of every stack switch (make sanitize runs the emulator under it).
inline void start_switch(void** fake_stack, const void* bottom, size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#endif
}
inline void finish_switch(void* fake_stack, const void** bottom_old, size_t* size_old) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack, bottom_old, size_old);
#endif
}

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 256 * 1024;

enum class State { kReady, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  dim3 index;
  State state = State::kReady;
  void* fake_stack = nullptr;
};

struct Schedule {
  std::mutex lock;
  std::string order = "forward";
  uint64_t seed = 0;
};
Schedule& global_schedule() {
  static Schedule s;
  return s;
}

// One OS thread's block runner: its fibers (reused from block to block) and the block's state.
struct Runner {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<unsigned char> warp_slots;  // 16 bytes per thread
  int current = -1;
  dim3 block, block_index;
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;

  static void entry();
  void run_block(const dim3& index, std::vector<int>& order, std::mt19937_64* rng);
  void wait(State at) {
    Fiber& f = fibers[current];
    f.state = at;
    start_switch(&f.fake_stack, scheduler_stack, scheduler_stack_size);
    swapcontext(&f.context, &scheduler);
    finish_switch(f.fake_stack, &scheduler_stack, &scheduler_stack_size);
  }
};

thread_local Runner* this_runner = nullptr;

Runner& runner() {
  if (this_runner == nullptr || this_runner->current < 0)
    throw EmulationError("CUDA emulation: a device function was called outside a kernel launch");
  return *this_runner;
}

void Runner::entry() {
  Runner& r = *this_runner;
  finish_switch(nullptr, &r.scheduler_stack, &r.scheduler_stack_size);
  try {
    (*r.body)();
  } catch (...) {
    if (!r.error) r.error = std::current_exception();
  }
  r.fibers[r.current].state = State::kDone;
  start_switch(nullptr, r.scheduler_stack, r.scheduler_stack_size);
  // returning resumes uc_link, the scheduler
}

std::string describe(const dim3& d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

void Runner::run_block(const dim3& index, std::vector<int>& order, std::mt19937_64* rng) {
  const int n = static_cast<int>(fibers.size());
  block_index = index;
  for (int t = 0; t < n; ++t) {
    Fiber& f = fibers[t];
    f.index = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    f.state = State::kReady;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &scheduler;
    makecontext(&f.context, &Runner::entry, 0);
  }
  const int warps = (n + kWarpSize - 1) / kWarpSize;
  for (;;) {
    if (rng != nullptr) std::shuffle(order.begin(), order.end(), *rng);
    bool ran = false;
    for (int t : order) {
      if (fibers[t].state != State::kReady) continue;
      ran = true;
      current = t;
      start_switch(&scheduler_fake_stack, fibers[t].stack.get(), kStackBytes);
      swapcontext(&scheduler, &fibers[t].context);
      finish_switch(scheduler_fake_stack, nullptr, nullptr);
      current = -1;
      if (error) return;
    }
    // release the warps whose every lane waits at a shuffle
    bool released = false;
    for (int w = 0; w < warps; ++w) {
      const int first = w * kWarpSize, last = std::min(n, first + kWarpSize);
      int waiting = 0, done = 0;
      for (int t = first; t < last; ++t) {
        waiting += fibers[t].state == State::kAtWarpBarrier;
        done += fibers[t].state == State::kDone;
      }
      if (waiting == 0) continue;
      if (waiting == last - first) {
        for (int t = first; t < last; ++t) fibers[t].state = State::kReady;
        released = true;
      } else if (done > 0 || last - first < kWarpSize) {
        throw EmulationError("CUDA emulation: block " + describe(index) + " warp " + std::to_string(w) +
                             ": a full-mask shuffle while " + std::to_string(done) +
                             " lanes have exited or the warp is partial (undefined on a GPU)");
      }
    }
    if (released) continue;
    int at_block = 0, done = 0;
    for (const Fiber& f : fibers) {
      at_block += f.state == State::kAtBlockBarrier;
      done += f.state == State::kDone;
    }
    if (done == n) return;
    if (at_block > 0 && at_block + done == n) {
      for (Fiber& f : fibers)
        if (f.state == State::kAtBlockBarrier) f.state = State::kReady;
      continue;
    }
    if (!ran) {
      int at_warp = n - at_block - done;
      throw EmulationError("CUDA emulation: block " + describe(index) + " cannot go on (would hang on a GPU): " +
                           std::to_string(at_block) + " threads wait at __syncthreads, " + std::to_string(at_warp) +
                           " at a shuffle, " + std::to_string(done) + " have exited");
    }
  }
}

}  // namespace

void set_schedule(const std::string& order, uint64_t seed) {
  if (order != "forward" && order != "reverse" && order != "shuffle")
    throw std::invalid_argument("schedule order must be 'forward', 'reverse' or 'shuffle', got '" + order + "'");
  auto& s = global_schedule();
  std::lock_guard<std::mutex> guard(s.lock);
  s.order = order, s.seed = seed;
}

std::string schedule() {
  auto& s = global_schedule();
  std::lock_guard<std::mutex> guard(s.lock);
  return s.order;
}

void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  const int64_t threads = int64_t(block.x) * block.y * block.z;
  if (threads <= 0 || threads > 1024 || block.z > 64)
    throw EmulationError("CUDA emulation: invalid block " + describe(block) + " (1 to 1024 threads)");
  if (grid.y > 65535 || grid.z > 65535)
    throw EmulationError("CUDA emulation: grid " + describe(grid) + " exceeds 65535 in y or z");
  const int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
  if (blocks == 0) return;
  std::string order;
  uint64_t seed;
  {
    auto& s = global_schedule();
    std::lock_guard<std::mutex> guard(s.lock);
    order = s.order, seed = s.seed;
  }
  const int workers = static_cast<int>(std::min<int64_t>(blocks, std::max(1u, std::thread::hardware_concurrency())));
  std::atomic<int64_t> next{0};
  std::exception_ptr first_error;
  std::mutex error_lock;
  auto work = [&](int worker) {
    Runner r;
    r.block = block, r.body = &body;
    r.fibers.resize(threads);
    for (Fiber& f : r.fibers) f.stack.reset(new char[kStackBytes]);
    r.warp_slots.assign(threads * 16, 0);
    std::vector<int> fiber_order(threads);
    std::iota(fiber_order.begin(), fiber_order.end(), 0);
    if (order == "reverse") std::reverse(fiber_order.begin(), fiber_order.end());
    std::mt19937_64 rng(seed * 1000003 + worker);
    Runner* previous = this_runner;
    this_runner = &r;
    try {
      for (int64_t i = next++; i < blocks; i = next++) {
        const dim3 index(i % grid.x, (i / grid.x) % grid.y, i / (int64_t(grid.x) * grid.y));
        r.run_block(index, fiber_order, order == "shuffle" ? &rng : nullptr);
        if (r.error) std::rethrow_exception(r.error);
      }
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_lock);
      if (!first_error) first_error = std::current_exception();
      next = blocks;
    }
    this_runner = previous;
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

const dim3& thread_idx() {
  Runner& r = runner();
  return r.fibers[r.current].index;
}
const dim3& block_idx() { return runner().block_index; }
const dim3& block_dim() { return runner().block; }

int lane_id() {
  Runner& r = runner();
  return r.current % kWarpSize;
}

void sync_threads() { runner().wait(State::kAtBlockBarrier); }

void warp_exchange(unsigned mask, const void* bytes, void* out, int size, int src_lane) {
  Runner& r = runner();
  if (mask != 0xffffffffu)
    throw EmulationError("CUDA emulation: only full-mask shuffles are emulated, got mask " + std::to_string(mask));
  const int self = r.current, warp_first = self - self % kWarpSize;
  std::memcpy(&r.warp_slots[self * 16], bytes, size);
  r.wait(State::kAtWarpBarrier);
  std::memcpy(out, &r.warp_slots[(warp_first + src_lane) * 16], size);
  r.wait(State::kAtWarpBarrier);
}

}  // namespace emulation
}  // namespace pitome
