"""How a patched layer plans and merges: through the ops of this package. The end-to-end
benchmark swaps in other implementations with the same four methods."""

import torch

from .. import api


class KernelMerger:
    """Plans and merges with ``pitome_kernels`` ops on ``backend``."""

    name = "pitome_kernels"

    def __init__(self, backend: str = "auto"):
        self.backend = backend

    def plan(self, metric: torch.Tensor, r: int, variant: str, margin: float, class_token: bool):
        return api.plan(metric, r, variant=variant, margin=margin, class_token=class_token, backend=self.backend)

    def merge_wavg(self, plan, x: torch.Tensor, size: torch.Tensor | None):
        return api.merge_wavg(plan, x, size, backend=self.backend)

    def merge(self, plan, x: torch.Tensor, mode: str) -> torch.Tensor:
        return api.merge(plan, x, mode, backend=self.backend)

    def source(self, plan, source_map: torch.Tensor | None) -> torch.Tensor:
        return compose_source(plan.slot, source_map)


def compose_source(slot: torch.Tensor, source_map: torch.Tensor | None) -> torch.Tensor:
    """int32 ``[B, T0]``: the output token holding each original token, after a layer whose
    plan sends token ``i`` to ``slot[:, i]`` (``source_map``: the map before it, or None).
    Composed without ``api.track_source``'s value check, which would read the map back."""
    return slot if source_map is None else slot.gather(1, source_map.long())
