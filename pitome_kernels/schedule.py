"""Per-layer merging schedules: how many tokens each layer removes, with which margin and
variant. A schedule is a list of ``LayerSchedule``, one per transformer layer.

- ``keep_ratio(L, 0.9)``: every layer keeps 90 % of its mergeable tokens (PiToMe's setting).
- ``fixed_r([16] * L)``: explicit counts; ``tome_r(L, 8, inflection)``: ToMe's linear schedule.
- ``vit_margins``/``clip_margins``/``bert_margins``: the margins of the paper's code (SPEC.md).
- ``preset(family, L, ...)``: the paper's whole setting for a model family.
"""

import math
from dataclasses import dataclass
from typing import Sequence

from . import _checks
from ._checks import VARIANTS
from .api import ratio_to_r

FAMILIES = ("vision", "clip_vision", "text")


@dataclass(frozen=True)
class LayerSchedule:
    """One layer's merge: keep ``ratio`` of the mergeable tokens, or remove ``r`` of them
    (exactly one of the two is set; ``ratio=1.0`` / ``r=0`` is no merge)."""

    ratio: float | None = None
    r: int | None = None
    margin: float = 0.5
    variant: str = "pitome"

    def tokens_removed(self, num_tokens: int, protected: int = 1) -> int:
        """``r`` for a layer that sees ``num_tokens`` tokens, ``protected`` of them never merged
        (``ratio`` counts only the mergeable ones, as the paper's code does). Clamped to the
        most the variant can remove."""
        mergeable = num_tokens - protected
        if self.r is not None:
            r = self.r
        else:
            r = ratio_to_r(mergeable, self.ratio) if mergeable > 0 else 0
        # pitome variants need 2r <= T'; ToMe clamps itself (SPEC.md)
        return max(0, min(r, mergeable // 2))

    @property
    def merges(self) -> bool:
        return self.r > 0 if self.r is not None else self.ratio < 1.0


def _layers(num_layers) -> int:
    num_layers = _checks.integer("num_layers", num_layers)
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return num_layers


def vit_margins(num_layers: int) -> list[float]:
    """ViT/DeiT (timm) margins of the paper's code: ``0.75 * (1 - l / L)``."""
    n = _layers(num_layers)
    return [0.75 * (1 - layer / n) for layer in range(n)]


def clip_margins(num_layers: int) -> list[float]:
    """CLIP vision tower margins: ``0.9 * (1 - l / L)``."""
    n = _layers(num_layers)
    return [0.9 * (1 - layer / n) for layer in range(n)]


def bert_margins(num_layers: int) -> list[float]:
    """BERT margins: ``0.9 - 0.25 * l / L``."""
    n = _layers(num_layers)
    return [0.9 - 0.25 * layer / n for layer in range(n)]


def _ratio(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"ratio must be a float in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"ratio must be in (0, 1] (the fraction of tokens kept), got {value}")
    return float(value)


def _per_layer(name: str, value, num_layers: int) -> list:
    """A scalar repeated over the layers, or a sequence of exactly ``num_layers`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers:
            raise ValueError(f"{name} has {len(value)} entries for a model of {num_layers} layers")
        return list(value)
    return [value] * num_layers


def keep_ratio(num_layers: int, ratio: float | Sequence[float], *, margins: Sequence[float] | float = 0.5,
               variants: Sequence[str] | str = "pitome", layers: Sequence[int] | None = None) -> list[LayerSchedule]:
    """Every layer (or only ``layers``) keeps ``ratio`` of its mergeable tokens."""
    n = _layers(num_layers)
    ratios = [_ratio(v) for v in _per_layer("ratio", ratio, n)]
    return _build(n, margins, variants, layers, lambda i: {"ratio": ratios[i]}, {"ratio": 1.0})


def fixed_r(r: Sequence[int] | int, num_layers: int | None = None, *, margins: Sequence[float] | float = 0.5,
            variants: Sequence[str] | str = "pitome") -> list[LayerSchedule]:
    """Explicit token counts: ``r`` per layer (a list), or the same ``r`` in ``num_layers`` layers."""
    if isinstance(r, (list, tuple)):
        n = len(r) if num_layers is None else _layers(num_layers)
        counts = _per_layer("r", list(r), n)
    else:
        if num_layers is None:
            raise TypeError("fixed_r with one r needs num_layers")
        n = _layers(num_layers)
        counts = [r] * n
    for i, value in enumerate(counts):
        value = _checks.integer(f"r[{i}]", value)
        if value < 0:
            raise ValueError(f"r[{i}] must be >= 0, got {value}")
    return _build(n, margins, variants, None, lambda i: {"r": int(counts[i])}, {"r": 0})


def tome_r(num_layers: int, r: int, inflection: float = 0.0, **kwargs) -> list[LayerSchedule]:
    """ToMe's ``(r, inflection)`` schedule: a line through the layers averaging ``r``;
    ``inflection`` in [-1, 1] tilts it (negative: merge more early, 0: constant)."""
    n = _layers(num_layers)
    r = _checks.integer("r", r)
    if not -1.0 <= inflection <= 1.0:
        raise ValueError(f"inflection must be in [-1, 1], got {inflection}")
    lowest = int(r * (1.0 - inflection))
    highest = 2 * r - lowest
    step = (highest - lowest) / (n - 1) if n > 1 else 0.0
    return fixed_r([max(0, int(lowest + step * i)) for i in range(n)], n, **kwargs)


def _build(n, margins, variants, layers, merging, identity) -> list[LayerSchedule]:
    margins = [float(m) for m in _per_layer("margins", margins, n)]
    variants = _per_layer("variants", variants, n)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {v!r}")
    chosen = set(range(n)) if layers is None else {_checks.integer("layers", i) for i in layers}
    if any(not 0 <= i < n for i in chosen):
        raise ValueError(f"layers must index the {n} layers, got {sorted(layers)}")
    return [LayerSchedule(margin=margins[i], variant=variants[i], **(merging(i) if i in chosen else identity))
            for i in range(n)]


def preset(family: str, num_layers: int, *, ratio=None, r=None, variant: str | None = None,
           margin: float | None = None) -> list[LayerSchedule]:
    """The paper's setting for a model family (SPEC.md), or ToMe through the same plumbing.

    - ``"vision"`` (ViT, DeiT, DINOv2): every layer, margins ``vit_margins``, ``pitome_bsm`` in
      the first ``ceil(L/2)`` layers and ``pitome`` after.
    - ``"clip_vision"``: the same with ``clip_margins``.
    - ``"text"`` (BERT, CLIP text): the first 3 layers, ``bert_margins``, ``pitome_text``.

    ``ratio`` (keep ratio, scalar or per layer) or ``r`` (int, per-layer list, or ToMe's
    ``(r, inflection)``) says how much; ``variant`` overrides the variant of every merging
    layer (``"tome"`` for ToMe at the same token counts); ``margin`` fixes the margin.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if (ratio is None) == (r is None):
        raise TypeError("give exactly one of ratio= (fraction kept per layer) or r= (tokens removed)")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"variant must be None or one of {VARIANTS}, got {variant!r}")
    n = _layers(num_layers)
    if margin is not None:
        margins = [float(margin)] * n
    else:
        margins = {"vision": vit_margins, "clip_vision": clip_margins, "text": bert_margins}[family](n)
    if family == "text":
        variants = ["pitome_text"] * n
        layers = range(min(3, n))
    else:
        half = math.ceil(n / 2)
        variants = ["pitome_bsm"] * half + ["pitome"] * (n - half)
        layers = None
    if variant is not None:
        variants = [variant] * n
    if ratio is not None:
        return keep_ratio(n, ratio, margins=margins, variants=variants, layers=layers)
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], float):
        return tome_r(n, r[0], r[1], margins=margins, variants=variants)
    schedule = fixed_r(r, n, margins=margins, variants=variants)
    if layers is not None and not isinstance(r, (list, tuple)):
        schedule = [s if i in layers else LayerSchedule(r=0, margin=s.margin, variant=s.variant)
                    for i, s in enumerate(schedule)]
    return schedule
