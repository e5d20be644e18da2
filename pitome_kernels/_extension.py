"""Loads the optional C++ extension (``pitome_kernels._C``) once, with one clear warning."""

import os
import warnings

_loaded = None
_module = None


def extension_loaded() -> bool:
    """True when the C++ kernels are loaded (``pitome_kernels._C``, also registered as ``torch.ops.pitome.cpu_*``)."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def extension_module():
    """The loaded ``pitome_kernels._C`` module (its kernels as plain functions), or None."""
    return _module if extension_loaded() else None


def _load() -> bool:
    global _module
    if os.environ.get("PITOME_NO_EXT", "0") == "1":
        reason = "PITOME_NO_EXT=1"
    else:
        try:
            from . import _C  # importing registers the kernels

            _module = _C
            return True
        except ImportError as exc:
            reason = f"it could not be imported ({exc})"
    warnings.warn(
        f"pitome_kernels: C++ extension not loaded because {reason}; backend='cpu' is "
        "unavailable and CPU tensors run on the PyTorch reference.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False
