"""Patched layer forwards, written against a layer's submodules (named by a ``Layout``),
never copies of a library's code: the attention, norms and MLP stay the model's own.

- pre-norm (ViT, DINOv2, CLIP, timm): ``x + attn(norm1(x))``, merge, ``x + mlp(norm2(x))``.
- post-norm (BERT): ``attention(x)`` (residual and norm inside), merge, feed-forward.

The keys come from a forward hook on the key projection; proportional attention and the
merged padding mask reach the attention as its additive mask, so SDPA stays fused.
"""

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Layout:
    """Where the parts of one layer class live (dotted submodule names)."""

    norm1: str | None
    attention: str
    keys: str                      # the key projection (``[B, T, H*d]``) or timm's ``k_norm``
    post_attention: tuple[str, ...]
    norm2: str | None
    mlp: str
    post_mlp: tuple[str, ...]
    mask_keyword: str = "attention_mask"
    attention_returns_tuple: bool = True
    keys_are_split: bool = False   # timm's k_norm sees ``[B, H, T, d]``


def submodule(layer: nn.Module, name: str) -> nn.Module:
    module = layer
    for part in name.split("."):
        module = getattr(module, part)
    return module


def layout_matches(layer: nn.Module, layout: Layout) -> bool:
    names = [layout.attention, layout.attention + "." + layout.keys, layout.mlp, *layout.post_attention, *layout.post_mlp]
    names += [n for n in (layout.norm1, layout.norm2) if n is not None]
    try:
        for name in names:
            submodule(layer, name)
    except AttributeError:
        return False
    return True


def key_hook(state, heads: int, reduce: str, split: bool) -> Callable:
    """Forward hook storing the keys, reduced over heads, as the next plan's metric."""

    def hook(module, args, output):
        if split:                                   # [B, H, T, d]
            keys = output.mean(1) if reduce == "mean" else output.sum(1)
        else:                                       # [B, T, H * d]
            b, t, _ = output.shape
            keys = output.view(b, t, heads, -1)
            keys = keys.mean(2) if reduce == "mean" else keys.sum(2)
        state.capture(keys)

    return hook


def _enter(state, index: int, layout: Layout, hidden_states, args, kwargs):
    """Start of every patched layer: the model's mask out of the call (removed from
    ``kwargs``), the state reset by the first layer; returns the mask this layer's attention gets."""
    given = args[0] if args else kwargs.pop(layout.mask_keyword, None)
    if index == 0:
        state.start(hidden_states, given)
    state.info.tokens.append(hidden_states.shape[1])
    return state.attention_mask(hidden_states, given)


def prenorm_forward(layer: nn.Module, layout: Layout, state, index: int, last: bool) -> Callable:
    norm1, norm2 = submodule(layer, layout.norm1), submodule(layer, layout.norm2)
    attention, mlp = submodule(layer, layout.attention), submodule(layer, layout.mlp)
    post_attention = [submodule(layer, n) for n in layout.post_attention]
    post_mlp = [submodule(layer, n) for n in layout.post_mlp]

    def forward(hidden_states, *args, **kwargs):
        mask = _enter(state, index, layout, hidden_states, args, kwargs)
        out = attention(norm1(hidden_states), **{layout.mask_keyword: mask}, **kwargs)
        if layout.attention_returns_tuple:
            out = out[0]
        for module in post_attention:
            out = module(out)
        x = state.merge(index, hidden_states + out)
        out = mlp(norm2(x))
        for module in post_mlp:
            out = module(out)
        x = x + out
        return state.finish(x) if last else x

    return forward


def postnorm_forward(layer: nn.Module, layout: Layout, state, index: int, last: bool) -> Callable:
    attention = submodule(layer, layout.attention)
    feed_forward = layer.feed_forward_chunk

    def forward(hidden_states, *args, **kwargs):
        mask = _enter(state, index, layout, hidden_states, args, kwargs)
        kwargs.pop("encoder_hidden_states", None)
        kwargs.pop("encoder_attention_mask", None)
        out = attention(hidden_states, mask, **kwargs)[0]
        x = feed_forward(state.merge(index, out))
        return state.finish(x) if last else x

    return forward


FORWARDS = {"prenorm": prenorm_forward, "postnorm": postnorm_forward}
