"""``patch.transformers``: PiToMe in Hugging Face transformers models.

Supported layer classes: ``ViTLayer`` (ViTModel, ViTForImageClassification), ``Dinov2Layer``,
``CLIPEncoderLayer`` (CLIPVisionModel, CLIPTextModel), ``BertLayer`` (BertModel, BertFor*,
and models built on them such as MiniLM sentence encoders).
"""

import torch.nn as nn

from .apply import apply
from .layers import Layout

_PRENORM_VIT = Layout(norm1="layernorm_before", attention="attention", keys="k_proj", post_attention=("dropout",),
                      norm2="layernorm_after", mlp="mlp", post_mlp=("dropout",))
_DINOV2 = Layout(norm1="norm1", attention="attention", keys="k_proj", post_attention=("layer_scale1", "drop_path"),
                 norm2="norm2", mlp="mlp", post_mlp=("layer_scale2", "drop_path"))
_CLIP = Layout(norm1="layer_norm1", attention="self_attn", keys="k_proj", post_attention=(),
               norm2="layer_norm2", mlp="mlp", post_mlp=())
_BERT = Layout(norm1=None, attention="attention", keys="self.key", post_attention=(), norm2=None,
               mlp="intermediate", post_mlp=())

# layer class name -> (layout, forward kind)
LAYERS = {
    "ViTLayer": (_PRENORM_VIT, "prenorm"),
    "Dinov2Layer": (_DINOV2, "prenorm"),
    "CLIPEncoderLayer": (_CLIP, "prenorm"),
    "BertLayer": (_BERT, "postnorm"),
}


def _layers(model: nn.Module) -> tuple[list[nn.Module], str]:
    found = [m for m in model.modules() if type(m).__name__ in LAYERS]
    names = {type(m).__name__ for m in found}
    if not found:
        raise NotImplementedError(
            f"{type(model).__name__} has none of the supported layers ({', '.join(LAYERS)})")
    layout = LAYERS[next(iter(names))][0]
    configs = {id(getattr(getattr(m, layout.attention), "config", None)) for m in found}
    if len(names) > 1 or len(configs) > 1:
        raise NotImplementedError(
            f"{type(model).__name__} holds several towers; patch each one (e.g. model.vision_model, "
            "model.text_model) on its own")
    return found, names.pop()


def _check_version() -> None:
    """The layouts are those of transformers 5: 4.x layers take other arguments (head masks,
    a separate causal mask) and return tuples."""
    import transformers as library

    major = int(library.__version__.split(".")[0])
    if major < 5:
        raise NotImplementedError(f"patch.transformers supports transformers 5.x, found {library.__version__}")


def _config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    return config


def transformers(model: nn.Module, ratio=None, *, r=None, variant: str | None = None, margin: float | None = None,
                 prop_attn: bool | None = None, trace_source: bool = False, unmerge_output: bool | None = None,
                 schedule=None, merger=None) -> nn.Module:
    """Patch a transformers model in place to merge tokens in its layers; returns it.

    ``ratio``: fraction of the mergeable tokens each merging layer keeps (scalar or per
    layer); or ``r``: tokens removed (int, per-layer list, or ToMe's ``(r, inflection)``); or
    ``schedule``: a list of ``schedule.LayerSchedule``. ``variant=None`` is the paper's preset
    for the family (vision: ``pitome_bsm`` then ``pitome``; text: ``pitome_text`` in the
    first 3 layers); ``"tome"`` runs ToMe at the same counts. ``prop_attn`` (default: on for
    vision, off for text) adds ``log(size)`` to the attention logits. Text models merge
    their padding mask and, with ``unmerge_output`` (default for text), return every input
    position (merged tokens copied back) so the model's pooling works unchanged.
    After each forward ``model.pitome_info`` holds the sizes, mask and sources (``PiToMeInfo``).
    """
    _check_version()
    config = _config(model)
    layers, name = _layers(model)
    layout, kind = LAYERS[name]
    causal = type(config).__name__ == "CLIPTextConfig"
    text = name == "BertLayer" or causal
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation.startswith("flash") and (text or prop_attn is not False):
        raise NotImplementedError(
            f"attn_implementation={implementation!r} takes no additive mask; load the model with "
            "attn_implementation='sdpa' (or pass prop_attn=False for a vision model)")
    family = "text" if text else ("clip_vision" if name == "CLIPEncoderLayer" else "vision")
    attention = getattr(layers[0], layout.attention)
    heads = getattr(attention, "num_heads", None) or getattr(attention, "num_attention_heads", None)
    if heads is None:
        heads = getattr(getattr(attention, "self", None), "num_attention_heads", None) or config.num_attention_heads
    prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    return apply(model, layers, layout, kind=kind, family=family, heads=heads,
                 key_reduce="sum" if name == "BertLayer" else "mean", prefix_tokens=prefix,
                 causal=causal, ratio=ratio, r=r, variant=variant,
                 margin=margin, prop_attn=prop_attn, trace_source=trace_source, unmerge_output=unmerge_output,
                 merger=merger, schedule=schedule)
