"""``patch.timm``: PiToMe in timm ``VisionTransformer`` models (class token, registers,
distillation token, ``dynamic_img_size``)."""

import inspect

import torch.nn as nn

from .apply import apply
from .layers import Layout

BLOCK = Layout(norm1="norm1", attention="attn", keys="k_norm", post_attention=("ls1", "drop_path1"),
               norm2="norm2", mlp="mlp", post_mlp=("ls2", "drop_path2"), mask_keyword="attn_mask",
               attention_returns_tuple=False, keys_are_split=True)


def timm(model: nn.Module, ratio=None, *, r=None, variant: str | None = None, margin: float | None = None,
         prop_attn: bool | None = None, trace_source: bool = False, unmerge_output: bool = False,
         schedule=None, merger=None) -> nn.Module:
    """Patch a timm ``VisionTransformer`` in place; returns it. Arguments as
    ``patch.transformers`` (vision preset: ViT margins, ``pitome_bsm`` then ``pitome``,
    proportional attention on). The class, register and distillation tokens never merge.
    After each forward ``model.pitome_info`` holds the sizes and sources."""
    from timm.models.vision_transformer import Attention, Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise TypeError(f"model must be a timm VisionTransformer, got {type(model).__name__}")
    layers = list(model.blocks)
    for i, block in enumerate(layers):
        if type(block) is not Block or type(block.attn) is not Attention:
            raise NotImplementedError(
                f"model.blocks[{i}] is {type(block).__name__} with {type(getattr(block, 'attn', None)).__name__}; "
                "only timm's Block with its Attention is supported")
    if "attn_mask" not in inspect.signature(Attention.forward).parameters:
        raise NotImplementedError("this timm version's Attention takes no attn_mask; timm >= 1.0.20 is needed")
    prefix = int(model.num_prefix_tokens)
    if model.cls_token is None and prefix > 0:
        raise NotImplementedError("prefix tokens without a class token are not supported")
    return apply(model, layers, BLOCK, kind="prenorm", family="vision", heads=layers[0].attn.num_heads,
                 key_reduce="mean", prefix_tokens=prefix, causal=False, ratio=ratio, r=r, variant=variant,
                 margin=margin, prop_attn=prop_attn, trace_source=trace_source, unmerge_output=unmerge_output,
                 merger=merger, schedule=schedule)
