"""The merging state a patched model carries through one forward: token sizes, the padding
mask, token positions (causal models), the source map, and the keys of the last attention."""

from dataclasses import dataclass

import torch

from ..schedule import LayerSchedule
from .info import PiToMeInfo


@dataclass(frozen=True)
class Setup:
    """What a patched model does, fixed at patch time.

    ``prefix_tokens``: tokens at the front that never merge (class token first, then
    registers or a distillation token). ``weighted``: vision models carry sizes and merge by
    size-weighted average; text models reset sizes each layer (plain mean over the valid
    tokens of a group) and merge their padding mask with ``amax``.
    """

    schedule: tuple[LayerSchedule, ...]
    prefix_tokens: int
    weighted: bool
    prop_attn: bool
    causal: bool
    trace_source: bool
    unmerge_output: bool


class MergeState:
    """Per-forward state shared by the patched layers of one model."""

    def __init__(self, setup: Setup, merger, info: PiToMeInfo):
        self.setup, self.merger, self.info = setup, merger, info
        self.metric = None
        self._reset()

    def _reset(self):
        self.size = self.valid = self.positions = self.source = None
        self.merged = False

    # -- called by the patched layers ------------------------------------------------------

    def start(self, x: torch.Tensor, given_mask) -> None:
        """First layer: forget the last forward; text models read the padding mask."""
        self._reset()
        self.info.tokens = []
        if not self.setup.weighted:
            self.valid = _key_validity(given_mask, x.shape[0], x.shape[1])
            if self.setup.causal:
                self.positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32).expand(x.shape[0], -1)

    def capture(self, metric: torch.Tensor) -> None:
        """Keys of the attention that just ran, ``[B, T, C]`` (heads reduced)."""
        self.metric = metric

    def attention_mask(self, x: torch.Tensor, given):
        """The mask the attention of this layer gets: the model's own until a layer merged,
        then one built for the merged tokens (padding, causality, ``+ log(size)``)."""
        if not self.merged:
            return given
        batch, tokens = x.shape[0], x.shape[1]
        log_size = self.size.log().to(x.dtype).view(batch, 1, 1, tokens) if self.setup.prop_attn else None
        if self.setup.weighted:
            return log_size if log_size is not None else given
        allowed = None
        if self.valid is not None:
            allowed = self.valid.view(batch, 1, 1, tokens)
        if self.positions is not None:
            causal = self.positions[:, None, None, :] <= self.positions[:, None, :, None]
            allowed = causal if allowed is None else allowed & causal
        if allowed is None:
            return log_size
        bias = log_size if log_size is not None else torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(allowed, bias, torch.finfo(x.dtype).min)

    def merge(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Merge the tokens of ``x`` ``[B, T, D]`` as layer ``index`` of the schedule says."""
        layer = self.setup.schedule[index]
        metric, self.metric = self.metric, None
        if not layer.merges or metric is None:
            return x
        prefix = self.setup.prefix_tokens
        class_token = prefix >= 1
        main_tokens = x.shape[1] - max(prefix - 1, 0)
        r = layer.tokens_removed(main_tokens, protected=int(class_token))
        if r == 0:
            return x
        with torch.no_grad():
            plan = self.merger.plan(_main(metric, prefix), r, layer.variant, layer.margin, class_token)
        merger = self.merger
        if self.setup.weighted:
            size = None if self.size is None else _main(self.size, prefix)
            merged, size = merger.merge_wavg(plan, _main(x, prefix), size)
            self.size = _join(size, self.size, prefix, fill=1.0)
        else:
            merged = self._merge_text(plan, x)
        if self.setup.trace_source or self.setup.unmerge_output:
            self.source = merger.source(_full_plan(plan, prefix), self.source)
        self.merged = True
        return _join(merged, x, prefix)

    def _merge_text(self, plan, x):
        merger = self.merger
        if self.valid is None:
            merged = merger.merge(plan, x, "mean")
        else:
            weight = self.valid.to(x.dtype).unsqueeze(-1)
            # padding never enters a real token's average; an all-padding group stays finite
            merged = merger.merge(plan, x * weight, "sum") / merger.merge(plan, weight, "sum").clamp_min(1)
            self.valid = merger.merge(plan, weight, "amax").squeeze(-1) > 0
        size = self.size if self.size is not None else x.new_ones(x.shape[0], x.shape[1], 1)
        self.size = merger.merge(plan, size, "sum")
        if self.positions is not None:
            self.positions = merger.merge(plan, self.positions.unsqueeze(-1), "amax").squeeze(-1)
        return merged

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Last layer: publish ``model.pitome_info``; text models copy every merged token back
        to its input positions so the model's pooling reads them."""
        info = self.info
        info.tokens.append(x.shape[1])
        info.size = self.size
        info.attention_mask = None if self.valid is None else self.valid.long()
        info.source = self.source if self.setup.trace_source else None
        if self.setup.unmerge_output and self.source is not None:
            index = self.source.long().unsqueeze(-1).expand(-1, -1, x.shape[-1])
            x = x.gather(1, index)
        self.metric = None
        return x


def _key_validity(mask, batch: int, tokens: int):
    """bool ``[B, T]``: the keys some query may attend to, from a model's attention mask
    (None, ``[B, T]`` 0/1, or ``[B, 1 | H, T_q, T]`` boolean or additive)."""
    if mask is None:
        return None
    if mask.dim() == 2:
        return mask.bool()
    allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    return allowed.reshape(mask.shape[0], -1, mask.shape[-1]).any(dim=1).expand(batch, tokens)


def _main(t: torch.Tensor, prefix: int) -> torch.Tensor:
    """The tokens a plan sees: the class token and everything after the other prefix tokens."""
    if prefix <= 1:
        return t
    return torch.cat([t[:, :1], t[:, prefix:]], dim=1)


def _join(merged: torch.Tensor, full, prefix: int, fill: float | None = None) -> torch.Tensor:
    """Put the prefix tokens set aside by ``_main`` back after the class token."""
    if prefix <= 1:
        return merged
    extra = full[:, 1:prefix] if full is not None else merged.new_full((merged.shape[0], prefix - 1, 1), fill)
    return torch.cat([merged[:, :1], extra, merged[:, 1:]], dim=1)


class _SlotOnly:
    """A plan's ``slot`` lifted to the whole sequence, prefix tokens included."""

    def __init__(self, slot):
        self.slot = slot


def _full_plan(plan, prefix: int):
    if prefix <= 1:
        return plan
    slot = plan.slot
    extra = torch.arange(1, prefix, device=slot.device, dtype=slot.dtype).expand(slot.shape[0], -1)
    rest = slot[:, 1:] + (prefix - 1)
    return _SlotOnly(torch.cat([slot[:, :1], extra, rest], dim=1))
