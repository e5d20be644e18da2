// Merges the tokens of one ViT-B/16 layer with the installed pitome_kernels package, once
// through the C++ API and once through the dispatcher (torch::ops pitome::cpu_*), and
// checks the result: 197 tokens in, 197 - r out, the sizes adding up to 197 per image, the
// two paths equal. Exits non-zero on a mismatch.
#include <ATen/core/dispatch/Dispatcher.h>
#include <pitome_kernels/cpu/kernels.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  torch::manual_seed(0);
  const int64_t batch = 2, tokens = 197, r = 19;
  const auto metric = torch::randn({batch, tokens, 64});
  const auto x = torch::randn({batch, tokens, 768});

  // the C++ API: a plan, then the size-weighted merge (no sizes yet: every token counts 1)
  const auto [slot, offsets, members] = pitome::cpu::plan(metric, r, "pitome", 0.5, true, false);
  const auto [merged, size] = pitome::cpu::merge_wavg(x, c10::nullopt, slot, offsets, members);

  // the same ops through the dispatcher, as other libraries call them
  auto plan_op = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("pitome::cpu_plan", "")
                     .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                         const at::Tensor&, int64_t, c10::string_view, double, bool, bool)>();
  const auto dispatched = plan_op.call(metric, r, "pitome", 0.5, true, false);

  const bool ok = merged.size(1) == tokens - r && size.sum(1).eq(tokens).all().item<bool>() &&
                  std::get<2>(dispatched).equal(members) && slot.select(1, 0).eq(0).all().item<bool>();
  std::printf("merged [%lld, %lld, %lld] -> [%lld, %lld, %lld]; sizes per image add up to %lld; %s\n",
              (long long)x.size(0), (long long)x.size(1), (long long)x.size(2), (long long)merged.size(0),
              (long long)merged.size(1), (long long)merged.size(2), (long long)tokens, ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
