"""What every ``patch.*`` entry point does once it has found a model's layers."""

import torch.nn as nn

from .. import schedule as schedules
from .handle import Patch, check_not_patched
from .layers import Layout, layout_matches
from .state import Setup


def apply(model: nn.Module, layers: list[nn.Module], layout: Layout, *, kind: str, family: str, heads: int,
          key_reduce: str, prefix_tokens: int, causal: bool, ratio, r, variant, margin, prop_attn,
          trace_source: bool, unmerge_output, merger=None, schedule=None) -> nn.Module:
    check_not_patched(model)
    if getattr(model, "is_gradient_checkpointing", False) or getattr(model, "grad_checkpointing", False):
        # a recomputed layer would merge the shared state a second time
        raise NotImplementedError("gradient checkpointing is not supported on a patched model; turn it off first")
    if not layers:
        raise ValueError(f"found no transformer layers to patch in {type(model).__name__}")
    for layer in layers:
        if not layout_matches(layer, layout):
            raise NotImplementedError(
                f"{type(layer).__name__} does not have the submodules this patch expects ({layout}); "
                "the installed library version is not supported")
    if not isinstance(trace_source, bool):
        raise TypeError(f"trace_source must be a bool, got {type(trace_source).__name__}")
    text = family == "text"
    if prop_attn is None:
        prop_attn = not text
    if unmerge_output is None:
        unmerge_output = text
    for name, value in (("prop_attn", prop_attn), ("unmerge_output", unmerge_output)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool or None, got {type(value).__name__}")
    if schedule is None:
        schedule = schedules.preset(family, len(layers), ratio=ratio, r=r, variant=variant, margin=margin)
    elif len(schedule) != len(layers):
        raise ValueError(f"schedule has {len(schedule)} layers, the model {len(layers)}")
    setup = Setup(schedule=tuple(schedule), prefix_tokens=prefix_tokens, weighted=not text,
                  prop_attn=prop_attn, causal=causal, trace_source=trace_source, unmerge_output=unmerge_output)
    Patch(model, setup, merger).install(layers, layout, kind, heads, key_reduce)
    return model
