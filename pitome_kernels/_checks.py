"""Argument validation of the ops, run once per call before any kernel.

Every failure is a ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
value or shape) whose message names the offending argument. The checks read only tensor
metadata (no device synchronisation), and test the common valid case first: every eager
call pays for them.
"""

import math
import numbers

import torch

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")
KERNELS = ("elu", "gauss")
MODES = ("mean", "sum", "amax", "prune")

_Tensor = torch.Tensor
_INT32 = torch.int32


def tensor(name: str, value, ndim: int, floating: bool = True) -> torch.Tensor:
    """A ``ndim``-dimensional tensor, floating-point (or integer when ``floating`` is False)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if not floating and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    return value


def choice(name: str, value, options) -> str:
    if value in options and type(value) is str:
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    raise ValueError(f"{name} must be one of {options}, got {value!r}")


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def integer(name: str, value) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def margin(value, kernel: str) -> float:
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"margin must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"margin must be finite, got {value}")
    if kernel == "gauss" and value >= 1.0:
        raise ValueError(f"margin must be < 1 for the gauss kernel (sigma = 1 - margin), got {value}")
    return float(value)


def metric(value, class_token: bool) -> torch.Tensor:
    """A floating ``[B, T, C]`` metric with at least one mergeable token."""
    if type(value) is _Tensor and value.is_floating_point():  # the common case first
        shape = value.shape
        if len(shape) == 3 and shape[1] > class_token:
            return value
    tensor("metric", value, 3)
    if value.shape[1] < 1 + int(class_token):
        raise ValueError(
            f"metric needs at least one mergeable token, got {value.shape[1]} tokens "
            f"with class_token={class_token}"
        )
    return value


def effective_r(r, variant: str, num_tokens: int, class_token: bool, distill_token: bool) -> int:
    """``r`` after validation; ToMe clamps it to ``(T - protected) // 2`` like the original."""
    r = integer("r", r)
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    if variant == "tome":
        return max(0, min(r, (num_tokens - int(class_token) - int(distill_token)) // 2))
    mergeable = num_tokens - int(class_token)
    if 2 * r > mergeable:
        raise ValueError(f"r must satisfy 2 * r <= T' = {mergeable} mergeable tokens, got r={r}")
    return r


# The plan whose tensors were checked last (or built by the plan op), with their version
# counters, which every in-place change bumps (data and metadata alike): a plan is checked
# once, not on every merge that reads it.
_last_plan = (None, None, None, -1, -1, -1, None)


def remember_plan(slot, offsets, members, info: tuple) -> None:
    """Record plan tensors known to be valid, with their ``(B, T, T_out, device)``."""
    global _last_plan
    if type(slot) is _Tensor:  # not fake or functional tensors under torch.compile
        _last_plan = (slot, offsets, members, slot._version, offsets._version, members._version, info)


def plan_tensors(slot, offsets, members) -> tuple:
    """``(B, T, T_out, device)`` of a plan's three int32 tensors ``slot[B, T]``,
    ``offsets[B, T_out + 1]``, ``members[B, T]`` (their shapes and dtypes; the contents are
    checked by the kernels that read them)."""
    last = _last_plan
    if (slot is last[0] and offsets is last[1] and members is last[2] and slot._version == last[3]
            and offsets._version == last[4] and members._version == last[5]):
        return last[6]
    if not (isinstance(slot, _Tensor) and isinstance(offsets, _Tensor) and isinstance(members, _Tensor)
            and slot.dtype is _INT32 and offsets.dtype is _INT32 and members.dtype is _INT32):
        for name, t in (("slot", slot), ("offsets", offsets), ("members", members)):
            tensor(name, t, 2, floating=False)
            if t.dtype != torch.int32:
                raise TypeError(f"{name} must be int32, got {t.dtype}")
    shape, off_shape = slot.shape, offsets.shape
    if not (len(shape) == 2 and len(off_shape) == 2 and members.shape == shape and off_shape[0] == shape[0]):
        raise ValueError(f"plan tensors disagree: slot {tuple(shape)}, offsets {tuple(off_shape)}, "
                         f"members {tuple(members.shape)} (want [B, T], [B, T_out + 1], [B, T])")
    if not 2 <= off_shape[1] <= shape[1] + 1:
        raise ValueError(f"offsets must be [B, T_out + 1] with 1 <= T_out <= T, got {tuple(off_shape)}")
    device = slot.device
    if offsets.device != device or members.device != device:
        raise ValueError(f"plan tensors are on different devices: slot {device}, offsets {offsets.device}, "
                         f"members {members.device}")
    info = (shape[0], shape[1], off_shape[1] - 1, device)
    remember_plan(slot, offsets, members, info)
    return info


def tokens(name: str, value, batch: int, rows: int, device: torch.device) -> None:
    """``value`` is a floating ``[batch, rows, K]`` tensor on ``device``."""
    if type(value) is _Tensor:  # the common case first: every merge pays for this check
        shape = value.shape
        if (len(shape) == 3 and shape[0] == batch and shape[1] == rows and value.is_floating_point()
                and value.device == device):
            return
    if not (isinstance(value, _Tensor) and value.is_floating_point()):
        tensor(name, value, 3)
    shape = value.shape
    if len(shape) != 3 or shape[0] != batch or shape[1] != rows:
        raise ValueError(f"{name} must have shape [B={batch}, T={rows}, K], got {tuple(shape)}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the plan is on {device}")


def size(value, batch: int, num_tokens: int, device: torch.device) -> None:
    """``value`` is None or a floating ``[batch, num_tokens, 1]`` tensor on ``device``."""
    if value is None:
        return
    tokens("size", value, batch, num_tokens, device)
    if value.shape[2] != 1:
        raise ValueError(f"size must have shape [B, T, 1], got {tuple(value.shape)}")
