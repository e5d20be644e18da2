"""Argument validation of the ops, run once per call before any kernel.

Every failure is a ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
value or shape) whose message names the offending argument. The checks read only tensor
metadata (no device synchronisation), and test the common valid case first: every eager
call pays for them.
"""

import math
import numbers
import os

import torch

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")
KERNELS = ("elu", "gauss")
MODES = ("mean", "sum", "amax", "prune")

_Tensor = torch.Tensor
_INT32 = torch.int32

# Whether plans and energies refuse a metric holding NaN or Inf (``set_finite_check``). Off
# by default: the check reads the metric, which on a GPU waits for it.
finite_check = [os.environ.get("PITOME_CHECK_FINITE", "0") == "1"]


def finite(name: str, value: torch.Tensor) -> None:
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds NaN or Inf (the finiteness check is on)")


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
    """An int (a symbolic one under torch.compile too); bools are refused."""
    if type(value) is int or isinstance(value, torch.SymInt):
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
    """A floating ``[B, T, C]`` metric with at least one mergeable token (finite, when
    ``finite_check`` is on)."""
    if type(value) is _Tensor and value.is_floating_point() and not finite_check[0]:  # the common case first
        shape = value.shape
        if len(shape) == 3 and shape[1] > class_token:
            return value
    tensor("metric", value, 3)
    if value.shape[1] < 1 + int(class_token):
        raise ValueError(
            f"metric needs at least one mergeable token, got {value.shape[1]} tokens "
            f"with class_token={class_token}"
        )
    if finite_check[0]:
        finite("metric", value)
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
