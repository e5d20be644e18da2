"""Triton backend of ``pitome_kernels`` (a room of its own: imports nothing above it).

Same functions, signatures and semantics as ``pitome_kernels.reference``:

- ``energy(metric, margin, kernel, class_token) -> float32 [B, T']``
- ``plan(metric, r, variant, margin, class_token, distill_token) -> (slot, offsets, members)``
- ``merge(x, slot, offsets, members, mode) -> [B, T_out, K]``
- ``merge_backward(grad_out, x, out, slot, offsets, members, mode) -> [B, T, K]``
- ``merge_wavg(x, size, slot, offsets, members) -> (x_out, size_out)``
- ``merge_wavg_backward(grad_out, size, size_out, slot, offsets, members) -> [B, T, K]``
- ``unmerge(y, slot, offsets, members) -> [B, T, K]``

Arguments are assumed valid (the op layer checks them). No function synchronises with the
host: every output shape follows from ``T`` and ``r``. On a machine without a GPU, set
``TRITON_INTERPRET=1`` before importing triton and pass CPU tensors.
"""

from .energy import energy
from .merge import merge, merge_backward, merge_wavg, merge_wavg_backward, unmerge
from .plan import plan

__all__ = [
    "energy",
    "plan",
    "merge",
    "merge_backward",
    "merge_wavg",
    "merge_wavg_backward",
    "unmerge",
]
