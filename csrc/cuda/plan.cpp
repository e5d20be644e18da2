// Plans on CUDA, with no host synchronisation: the single-launch plan of fused_plan.cu where
// it applies, else the steps of reference.py's plan: unit rows, energies and matching in the
// kernels of similarity.cu, the rankings by ATen's stable sort (a multi-block sort for any
// T), the CSR by scatters.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <limits>

#include "device.h"
#include "kernels.h"

namespace pitome {
namespace cuda {
namespace {

using Tensor = at::Tensor;

Tensor sort_desc(const Tensor& v) {
  return std::get<1>(at::sort(v, /*stable=*/true, /*dim=*/-1, /*descending=*/true));
}

// v[b, idx[b, i]]
Tensor gather_rows(const Tensor& v, const Tensor& idx) { return v.gather(1, idx); }

// v[idx] for a 1-D v and any idx
Tensor lookup(const Tensor& v, const Tensor& idx) { return v.index_select(0, idx.flatten()).view(idx.sizes()); }

struct Heads {
  Tensor heads, sources, source_slots;
};

Tensor arange_like(int64_t n, const Tensor& like) { return at::arange(n, like.options().dtype(at::kLong)); }

Heads plan_pitome(const Tensor& metric, int64_t r, double margin, bool class_token, bool text) {
  const int64_t off = class_token;
  const auto u = normalize(metric.slice(1, off));
  const int64_t n = u.size(1);
  const auto pi = sort_desc(energy_from_unit(u, margin, text));
  const auto merge_set = pi.slice(1, 0, 2 * r), prot = pi.slice(1, 2 * r);
  Tensor a, b;
  if (text) {
    a = merge_set.slice(1, 0, r), b = merge_set.slice(1, r);
  } else {
    a = merge_set.slice(1, 0, c10::nullopt, 2), b = merge_set.slice(1, 1, c10::nullopt, 2);
  }
  const auto dst = std::get<1>(match(u, a, b, false, false));
  return {at::cat({prot, b}, 1) + off, a + off, dst + (off + n - 2 * r)};
}

Heads plan_pitome_bsm(const Tensor& metric, int64_t r, double margin, bool class_token) {
  const int64_t off = class_token;
  const auto u = normalize(metric.slice(1, off));
  const auto pi = sort_desc(energy_from_unit(u, margin, false));
  const auto a = pi.slice(1, 0, c10::nullopt, 2), b = pi.slice(1, 1, c10::nullopt, 2);
  const auto [best, dst] = match(u, a, b, false, false);
  const auto edge = sort_desc(best);
  const auto src = edge.slice(1, 0, r), unm = edge.slice(1, r);
  return {at::cat({gather_rows(a, unm), b}, 1) + off, gather_rows(a, src) + off, gather_rows(dst, src) + (off + unm.size(1))};
}

Heads plan_tome(const Tensor& metric, int64_t r, bool class_token, bool distill_token) {
  const int64_t batch = metric.size(0), tokens = metric.size(1);
  const auto u = normalize(metric);
  const auto a_pos = at::arange(0, tokens, 2, metric.options().dtype(at::kLong));
  const auto b_pos = at::arange(1, tokens, 2, metric.options().dtype(at::kLong));
  const auto [best, dst] = match(u, a_pos.unsqueeze(0), b_pos.unsqueeze(0), class_token, distill_token);
  const auto edge = sort_desc(best);
  const auto src = edge.slice(1, 0, r);
  auto unm = edge.slice(1, r);
  if (class_token) unm = std::get<0>(at::sort(unm, /*stable=*/false, /*dim=*/-1, /*descending=*/false));
  const int64_t n_unm = unm.size(1);
  const auto b_tokens = b_pos.expand({batch, -1});
  const auto unm_tokens = lookup(a_pos, unm);
  auto b_slots = arange_like(b_pos.numel(), metric) + n_unm;
  Tensor heads;
  if (distill_token) {
    heads = at::cat({unm_tokens.slice(1, 0, 1), b_tokens.slice(1, 0, 1), unm_tokens.slice(1, 1), b_tokens.slice(1, 1)}, 1);
    b_slots.narrow(0, 0, 1).fill_(1);
  } else {
    heads = at::cat({unm_tokens, b_tokens}, 1);
  }
  return {heads, lookup(a_pos, src), lookup(b_slots, gather_rows(dst, src))};
}

std::tuple<Tensor, Tensor, Tensor> to_csr(Tensor heads, const Tensor& sources, const Tensor& source_slots,
                                          int64_t tokens, bool class_token) {
  const int64_t batch = heads.size(0);
  if (class_token) heads = at::cat({at::zeros({batch, 1}, heads.options()), heads}, 1);
  const int64_t num_out = heads.size(1);
  auto slot = at::empty({batch, tokens}, heads.options());
  slot.scatter_(1, heads, arange_like(num_out, heads).expand({batch, -1}));
  slot.scatter_(1, sources, source_slots);
  auto is_source = at::zeros({batch, tokens}, heads.options());
  is_source.scatter_(1, sources, 1);
  const auto key = (slot * 2 + is_source) * tokens + arange_like(tokens, heads);
  const auto members = std::get<1>(at::sort(key, /*stable=*/false, /*dim=*/-1, /*descending=*/false));
  auto counts = at::zeros({batch, num_out}, heads.options());
  counts.scatter_add_(1, slot, at::ones_like(slot));
  const auto offsets = at::constant_pad_nd(counts.cumsum(-1), {1, 0});
  return {slot.to(at::kInt), offsets.to(at::kInt), members.to(at::kInt)};
}

}  // namespace

int64_t tome_r(int64_t r, int64_t tokens, bool class_token, bool distill_token) {
  return std::min<int64_t>(r, (tokens - class_token - distill_token) / 2);
}

std::tuple<Tensor, Tensor, Tensor> plan(const Tensor& metric, int64_t r, c10::string_view variant, double margin,
                                        bool class_token, bool distill_token) {
  if (fused_plan_applies(metric, r, variant, class_token, distill_token))
    return fused_plan(metric, r, variant, margin, class_token, distill_token);
  return multi_launch_plan(metric, r, variant, margin, class_token, distill_token);
}

std::tuple<Tensor, Tensor, Tensor> multi_launch_plan(const Tensor& metric, int64_t r, c10::string_view variant,
                                                     double margin, bool class_token, bool distill_token) {
  TORCH_CHECK(on_device(metric), "pitome::cuda::plan: metric must be a CUDA tensor");
  const DeviceGuard guard(metric.device());
  const int64_t batch = metric.size(0), tokens = metric.size(1);
  if (variant == "tome") r = tome_r(r, tokens, class_token, distill_token);
  if (r <= 0) {
    const auto ar = at::arange(tokens, metric.options().dtype(at::kInt)).expand({batch, -1}).contiguous();
    const auto offsets = at::arange(tokens + 1, metric.options().dtype(at::kInt)).expand({batch, -1}).contiguous();
    return {ar, offsets, ar.clone()};
  }
  const c10::AutoGradMode no_grad(false);
  if (variant == "tome") {
    const auto h = plan_tome(metric, r, class_token, distill_token);
    return to_csr(h.heads, h.sources, h.source_slots, tokens, false);
  }
  Heads h;
  if (variant == "pitome_bsm")
    h = plan_pitome_bsm(metric, r, margin, class_token);
  else if (variant == "pitome" || variant == "pitome_text")
    h = plan_pitome(metric, r, margin, class_token, variant == "pitome_text");
  else
    TORCH_CHECK_VALUE(false, "variant must be 'pitome', 'pitome_text', 'pitome_bsm' or 'tome', got '",
                      std::string(variant), "'");
  return to_csr(h.heads, h.sources, h.source_slots, tokens, class_token);
}

}  // namespace cuda
}  // namespace pitome
