"""Installing a patch on a model's layers and taking it off again (``patch.remove``)."""

import torch.nn as nn

from .info import PiToMeInfo
from .layers import FORWARDS, Layout, key_hook, submodule
from .merger import KernelMerger
from .state import MergeState, Setup

ATTRIBUTE = "_pitome_patch"


class Patch:
    """The hooks and forwards one ``patch.*`` call installed, and the state they share."""

    def __init__(self, model: nn.Module, setup: Setup, merger=None):
        self.info = PiToMeInfo()
        self.state = MergeState(setup, merger or KernelMerger(), self.info)
        self.layers: list[nn.Module] = []
        self.hooks = []
        self.model = model

    def install(self, layers: list[nn.Module], layout: Layout, kind: str, heads: int, key_reduce: str) -> None:
        build = FORWARDS[kind]
        for index, layer in enumerate(layers):
            layer.forward = build(layer, layout, self.state, index, last=index == len(layers) - 1)
            self.layers.append(layer)
            keys = submodule(layer, layout.attention + "." + layout.keys)
            self.hooks.append(keys.register_forward_hook(key_hook(self.state, heads, key_reduce, layout.keys_are_split)))
        setattr(self.model, ATTRIBUTE, self)
        self.model.pitome_info = self.info

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        for layer in self.layers:
            del layer.forward
        delattr(self.model, ATTRIBUTE)
        del self.model.pitome_info


def remove(model: nn.Module) -> nn.Module:
    """Undo ``patch.transformers`` / ``patch.timm``: the model computes as before. Returns it."""
    patch = getattr(model, ATTRIBUTE, None)
    if patch is None:
        raise ValueError("model is not patched by pitome_kernels.patch")
    patch.remove()
    return model


def check_not_patched(model: nn.Module) -> None:
    if getattr(model, ATTRIBUTE, None) is not None:
        raise ValueError("model is already patched; call pitome_kernels.patch.remove(model) first")
