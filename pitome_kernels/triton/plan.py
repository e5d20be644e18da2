"""Plans: ``plan`` and its two paths.

The multi-launch path runs normalise, energy, ``torch.sort(stable=True)`` (ties to the
lower index), matching, the variant's split and ``csr.to_csr``, any shape and dtype. The
single-launch path (``fused.py``) serves ``pitome``, ``pitome_text`` and ``pitome_bsm``
when ``1 <= r``, ``2r <= T' <= fused.FUSED_MAX_T`` and the metric is
float32/float16/bfloat16. Both run on the device with shapes that follow from ``T`` and
``r`` alone (no ``.item()``, no host copies), so a plan captures in a CUDA graph.
``plan_multi_launch`` and ``plan_fused`` force either path.
"""

import torch

from .csr import identity_plan, to_csr
from .energy import energy_from_unit
from .fused import plan_fused as _plan_fused_kernel
from .fused import supported as fused_supported
from .matching import match
from .normalize import normalize

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")


def _rank(u, margin, kernel):
    e = energy_from_unit(u, margin, kernel)
    return torch.sort(e, dim=-1, descending=True, stable=True).indices


def _split_by_best(best, r):
    """A positions by ``best`` descending, ties to the lower position: the first ``r`` merge
    (``src``), the rest stay (``unm``)."""
    edge = torch.sort(best, dim=-1, descending=True, stable=True).indices
    return edge[:, :r], edge[:, r:]


def _plan_pitome(metric, r, margin, class_token, text):
    off = int(class_token)
    u = normalize(metric[:, off:])
    n = u.shape[1]
    pi = _rank(u, margin, "gauss" if text else "elu")
    merge_set, protected = pi[:, : 2 * r], pi[:, 2 * r:]
    if text:
        a, b = merge_set[:, :r], merge_set[:, r:]
    else:
        a, b = merge_set[:, 0::2], merge_set[:, 1::2]
    _, dst = match(u, a, b)
    heads = torch.cat([protected, b], dim=1)
    source_slots = off + (n - 2 * r) + dst
    return heads, a, source_slots


def _plan_pitome_bsm(metric, r, margin, class_token):
    off = int(class_token)
    u = normalize(metric[:, off:])
    pi = _rank(u, margin, "elu")
    a, b = pi[:, 0::2], pi[:, 1::2]
    best, dst = match(u, a, b)
    src, unm = _split_by_best(best, r)
    heads = torch.cat([a.gather(1, unm), b], dim=1)
    source_slots = off + unm.shape[1] + dst.gather(1, src)
    return heads, a.gather(1, src), source_slots


def _plan_tome(metric, r, class_token, distill_token):
    batch, tokens, _ = metric.shape
    device = metric.device
    u = normalize(metric)
    a_pos = torch.arange(0, tokens, 2, device=device)
    b_pos = torch.arange(1, tokens, 2, device=device)
    best, dst = match(u, a_pos.expand(batch, -1), b_pos.expand(batch, -1),
                      mask_row0=class_token, mask_col0=distill_token)
    src, unm = _split_by_best(best, r)
    if class_token:
        unm = unm.sort(dim=-1).values
    n_unm = unm.shape[1]
    b_tokens = b_pos.expand(batch, -1)
    unm_tokens = a_pos[unm]
    b_slots = n_unm + torch.arange(b_pos.numel(), device=device)
    if distill_token:
        heads = torch.cat([unm_tokens[:, :1], b_tokens[:, :1], unm_tokens[:, 1:], b_tokens[:, 1:]], 1)
        b_slots[0] = 1
    else:
        heads = torch.cat([unm_tokens, b_tokens], dim=1)
    source_slots = b_slots[dst.gather(1, src)]
    return heads, a_pos[src], source_slots


def plan(metric, r, variant, margin, class_token, distill_token):
    """Plan tensors ``(slot, offsets, members)`` (int32) for one layer."""
    if fused_supported(metric, r, variant, class_token):
        return plan_fused(metric, r, variant, margin, class_token, distill_token)
    return plan_multi_launch(metric, r, variant, margin, class_token, distill_token)


def plan_fused(metric, r, variant, margin, class_token, distill_token):
    """The single-launch path (``fused.py``); only where ``fused.supported`` holds."""
    with torch.no_grad():
        return _plan_fused_kernel(metric.detach(), r, variant, margin, class_token)


def plan_multi_launch(metric, r, variant, margin, class_token, distill_token):
    """The multi-launch path (normalise, energy, sort, matching, sort, CSR), any shape."""
    batch, tokens, _ = metric.shape
    r = int(r)
    if variant == "tome":
        protected = int(class_token) + int(distill_token)
        r = min(r, (tokens - protected) // 2)
    if r <= 0:
        return identity_plan(batch, tokens, metric.device)
    with torch.no_grad():
        metric = metric.detach()
        if variant == "tome":
            heads, sources, slots = _plan_tome(metric, r, class_token, distill_token)
            return to_csr(heads, sources, slots, tokens, class_token=False)
        if variant == "pitome_bsm":
            heads, sources, slots = _plan_pitome_bsm(metric, r, margin, class_token)
        elif variant in ("pitome", "pitome_text"):
            heads, sources, slots = _plan_pitome(metric, r, margin, class_token, variant == "pitome_text")
        else:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return to_csr(heads, sources, slots, tokens, class_token)
