"""Triton backend of ``pitome_kernels`` (a room of its own: imports nothing above it).

``energy``, ``plan``, ``merge``, ``merge_backward``, ``merge_wavg``,
``merge_wavg_backward`` and ``unmerge`` have the signatures and semantics of the
functions of the same names in ``pitome_kernels.reference``.

Arguments are assumed valid (the op layer checks them). No function synchronises with the
host: every output shape follows from ``T`` and ``r``. On a machine without a GPU, set
``TRITON_INTERPRET=1`` before importing triton and pass CPU tensors.
"""

from .backward import merge_backward, merge_wavg_backward, unmerge
from .energy import energy
from .merge import merge, merge_wavg
from .plan import plan

__all__ = ["energy", "plan", "merge", "merge_backward", "merge_wavg", "merge_wavg_backward", "unmerge"]
