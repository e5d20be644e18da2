"""Argument validation shared by the ops and the public API.

Every failure is a ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
value or shape) whose message names the offending argument.
"""

import math
import numbers

import torch

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")
KERNELS = ("elu", "gauss")
MODES = ("mean", "sum", "amax", "prune")
BACKENDS = ("auto", "reference", "cpu", "triton", "cuda")


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
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def integer(name: str, value) -> int:
    if type(value) is int:  # the common case, without the ABC check below
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
    tensor("metric", value, 3)
    if value.shape[1] < 1 + int(class_token):
        raise ValueError(
            f"metric needs at least one mergeable token, got {value.shape[1]} tokens "
            f"with class_token={class_token}"
        )
    return value


def num_mergeable(num_tokens: int, class_token: bool) -> int:
    return num_tokens - int(class_token)


def effective_r(r: int, variant: str, num_tokens: int, class_token: bool, distill_token: bool) -> int:
    """``r`` after validation; ToMe clamps it to ``(T - protected) // 2`` like the original."""
    r = integer("r", r)
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    if variant == "tome":
        return max(0, min(r, (num_tokens - int(class_token) - int(distill_token)) // 2))
    mergeable = num_mergeable(num_tokens, class_token)
    if 2 * r > mergeable:
        raise ValueError(f"r must satisfy 2 * r <= T' = {mergeable} mergeable tokens, got r={r}")
    return r


def plan_tensors(slot, offsets, members) -> None:
    tensor("slot", slot, 2, floating=False)
    tensor("offsets", offsets, 2, floating=False)
    tensor("members", members, 2, floating=False)
    for name, t in (("slot", slot), ("offsets", offsets), ("members", members)):
        if t.dtype != torch.int32:
            raise TypeError(f"{name} must be int32, got {t.dtype}")
    if members.shape != slot.shape or offsets.shape[0] != slot.shape[0]:
        raise ValueError(
            f"plan tensors disagree: slot {tuple(slot.shape)}, offsets {tuple(offsets.shape)}, "
            f"members {tuple(members.shape)}"
        )
    if offsets.shape[1] < 2 or offsets.shape[1] - 1 > slot.shape[1]:
        raise ValueError(f"offsets must be [B, T_out + 1] with 1 <= T_out <= T, got {tuple(offsets.shape)}")


def tokens(name: str, value, batch: int, num_tokens: int, device: torch.device) -> torch.Tensor:
    tensor(name, value, 3)
    if value.shape[0] != batch or value.shape[1] != num_tokens:
        raise ValueError(
            f"{name} must have shape [B={batch}, T={num_tokens}, K], got {tuple(value.shape)}"
        )
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the plan is on {device}")
    return value


def size(value, x: torch.Tensor) -> None:
    if value is None:
        return
    tokens("size", value, x.shape[0], x.shape[1], x.device)
    if value.shape[2] != 1:
        raise ValueError(f"size must have shape [B, T, 1], got {tuple(value.shape)}")


def plan_args_ok(values, size, slot, offsets, members, per_output: bool) -> bool:
    """True when ``values`` ``[B, T, K]`` (``[B, T_out, K]`` if ``per_output``), ``size``
    ``[B, T, 1]`` or None and the plan tensors are all valid, in few attribute reads: every
    merge on a backend that does not check its own arguments pays for this check. The checks
    above explain any other case."""
    tensor_t = torch.Tensor
    if not (type(values) is tensor_t and type(slot) is tensor_t and type(offsets) is tensor_t
            and type(members) is tensor_t):
        return False
    i32 = torch.int32
    if slot.dtype != i32 or offsets.dtype != i32 or members.dtype != i32 or not values.is_floating_point():
        return False
    shape, off_shape, val_shape = slot.shape, offsets.shape, values.shape
    if len(shape) != 2 or len(off_shape) != 2 or len(val_shape) != 3 or members.shape != shape:
        return False
    batch, num_tokens = shape
    num_out = off_shape[1] - 1
    rows = num_out if per_output else num_tokens
    if off_shape[0] != batch or not 1 <= num_out <= num_tokens or val_shape[0] != batch or val_shape[1] != rows:
        return False
    device = slot.device
    if values.device != device:
        return False
    return size is None or (type(size) is tensor_t and size.is_floating_point()
                            and size.shape == (batch, num_tokens, 1) and size.device == device)
