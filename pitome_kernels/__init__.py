"""Fast fused kernels for PiToMe (energy-based, spectrum-preserving) token merging.

``torch.ops.pitome.*`` holds the ops; this module re-exports the small Python API.
"""

from . import ops  # noqa: F401 - registers torch.ops.pitome
from .backends import BackendUnavailableError, available, runnable
from .backends import NAMES as BACKENDS
from ._extension import extension_loaded
from .cpu_isa import cpu_isa, set_cpu_isa, supported_cpu_isa
from .api import (
    MergePlan,
    energy,
    merge,
    merge_source,
    merge_wavg,
    plan,
    ratio_to_r,
    set_finite_check,
    source_matrix,
    track_source,
    unmerge,
)

from . import patch, schedule  # noqa: E402 - model patches and schedules, on the API above

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "MergePlan",
    "available",
    "cpu_isa",
    "energy",
    "extension_loaded",
    "merge",
    "merge_source",
    "merge_wavg",
    "patch",
    "plan",
    "ratio_to_r",
    "runnable",
    "schedule",
    "set_cpu_isa",
    "set_finite_check",
    "source_matrix",
    "supported_cpu_isa",
    "track_source",
    "unmerge",
]
