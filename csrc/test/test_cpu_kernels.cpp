// C++ test of the CPU kernels, run by ctest: direct calls and the dispatcher path agree,
// plans are partitions, merges conserve what they should, and every ISA clone agrees.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <pitome_kernels/cpu/kernels.h>

#include "expect.h"

static void check_partition(const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                            int64_t tokens, int64_t r) {
  EXPECT(slot.scalar_type() == at::kInt && offsets.scalar_type() == at::kInt);
  EXPECT(offsets.size(1) == tokens - r + 1);
  auto sorted = std::get<0>(members.sort(1));
  EXPECT(sorted.equal(at::arange(tokens, at::kInt).expand({slot.size(0), tokens})));
  EXPECT((offsets.select(1, -1) == tokens).all().item<bool>());
  auto counts = offsets.slice(1, 1) - offsets.slice(1, 0, -1);
  EXPECT((counts >= 1).all().item<bool>());
}

int main() {
  at::manual_seed(0);
  const int64_t batch = 3, tokens = 41, channels = 16, dim = 24, r = 10;
  auto metric = at::randn({batch, tokens, channels});
  auto x = at::randn({batch, tokens, dim});
  auto size = at::randint(1, 4, {batch, tokens, 1}).to(at::kFloat);

  auto e = pitome::cpu::energy(metric, 0.5, "elu", true);
  EXPECT(e.sizes() == at::IntArrayRef({batch, tokens - 1}));
  EXPECT(e.scalar_type() == at::kFloat);

  for (const char* variant : {"pitome", "pitome_text", "pitome_bsm", "tome"}) {
    auto [slot, offsets, members] = pitome::cpu::plan(metric, r, variant, 0.5, true, false);
    check_partition(slot, offsets, members, tokens, r);
    EXPECT((slot.select(1, 0) == 0).all().item<bool>());  // class token stays first

    auto [x_out, size_out] = pitome::cpu::merge_wavg(x, size, slot, offsets, members);
    EXPECT(size_out.sum().item<float>() == size.sum().item<float>());
    EXPECT(at::allclose((x_out * size_out).sum(1), (x * size).sum(1), 1e-4, 1e-4));
    auto sum = pitome::cpu::merge(x, slot, offsets, members, "sum");
    EXPECT(at::allclose(sum.sum(1), x.sum(1), 1e-4, 1e-4));
    auto back = pitome::cpu::unmerge(x_out, slot, offsets, members);
    EXPECT(back.sizes() == x.sizes());
  }

  // the same kernel through the dispatcher (what torch.ops.pitome.cpu_plan calls)
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("pitome::cpu_plan", "")
                .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, int64_t,
                                                                       c10::string_view, double, bool, bool)>();
  auto via_dispatcher = op.call(metric, r, "pitome", 0.5, true, false);
  auto direct = pitome::cpu::plan(metric, r, "pitome", 0.5, true, false);
  EXPECT(std::get<0>(via_dispatcher).equal(std::get<0>(direct)));
  EXPECT(std::get<2>(via_dispatcher).equal(std::get<2>(direct)));

  // every ISA clone this CPU runs gives energies within rounding of the best one's
  const std::string best = pitome::cpu::supported_cpu_isa();
  EXPECT(pitome::cpu::cpu_isa() == best || std::getenv("PITOME_CPU_ISA") != nullptr);
  for (const char* isa : {"default", "avx2", "avx512"}) {
    const std::string used = pitome::cpu::set_cpu_isa(isa);
    EXPECT(pitome::cpu::cpu_isa() == used);
    EXPECT(used == isa || used == best);
    EXPECT(at::allclose(pitome::cpu::energy(metric, 0.5, "elu", true), e, 1e-5, 1e-5));
  }
  pitome::cpu::set_cpu_isa(best);
  bool rejected = false;
  try {
    pitome::cpu::set_cpu_isa("sse4");
  } catch (const c10::ValueError&) {
    rejected = true;
  }
  EXPECT(rejected && pitome::cpu::cpu_isa() == best);

  if (failures == 0) std::printf("pitome_cpp_test: all checks passed\n");
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
