"""One-line PiToMe (and ToMe) for real models, on the ops of this package.

``patch.transformers(model, ratio=0.9)``, ``patch.timm(model, ratio=0.9)``, ``patch.remove(model)``;
after a forward, ``model.pitome_info`` (``PiToMeInfo``) says what merged.
"""

from .handle import remove
from .hf import transformers
from .info import PiToMeInfo
from .timm_vit import timm

__all__ = ["PiToMeInfo", "remove", "timm", "transformers"]
