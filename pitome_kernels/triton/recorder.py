"""What a GPU run would compile, found without a GPU: the host code runs on CPU tensors
while every kernel launch is recorded instead of executed.

Inside ``recording(arch)``, ``JITFunction.run`` (what ``kernel[grid](...)`` calls) binds
its arguments with Triton's own binder for a CUDA target of compute capability ``arch``:
the signature, the constexprs, the specialisation attributes (16-divisible integers and
pointers) and the options (``num_warps``, ``num_stages``) that a launch on that GPU would
compile. The tensors a kernel writes are zero-filled, so that host code reading them
(indices for ``gather``) stays in bounds. ``launch.gpu_arch`` reports ``arch`` meanwhile,
so every host-side choice is made for that target. Triton's interpreter must be off.
"""

import contextlib
import json
from typing import NamedTuple

import torch
from triton.backends.compiler import GPUTarget
from triton.compiler import make_backend
from triton.runtime import jit as triton_jit

from . import launch


class Launch(NamedTuple):
    """One compilation: a kernel with everything that selects its binary."""

    kernel: object  # the JITFunction
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict

    @property
    def name(self) -> str:
        return self.kernel.__name__

    def key(self) -> str:
        """Equal for launches that compile to the same binary."""
        return json.dumps([self.name, self.signature, sorted((str(k), repr(v)) for k, v in self.constexprs.items()),
                           sorted((str(k), repr(v)) for k, v in self.attrs.items()), self.options], sort_keys=True,
                          default=repr)

    def summary(self) -> str:
        """Constexprs and launch options in one short line."""
        names = self.kernel.arg_names
        consts = ", ".join(f"{names[path[0]]}={_short(v)}" for path, v in self.constexprs.items()
                           if self.signature.get(names[path[0]]) == "constexpr")
        ptrs = ",".join(v[1:] for v in self.signature.values() if isinstance(v, str) and v.startswith("*"))
        return f"{consts}; ptrs {ptrs}; warps {self.options['num_warps']}, stages {self.options['num_stages']}"


def _short(value) -> str:
    return str(value).replace("triton.language.", "").replace("fp32", "f32")


def _zero_outputs(args) -> None:
    for a in args:
        if isinstance(a, torch.Tensor) and a.numel() and a.is_contiguous():
            a.zero_()


@contextlib.contextmanager
def recording(arch: int):
    """Yields the list that collects every ``Launch`` made inside the block for a CUDA
    GPU of compute capability ``arch`` (80 for sm_80)."""
    if launch.interpreting():
        raise RuntimeError("recording needs Triton's compiler: unset TRITON_INTERPRET")
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binders = {}
    launches = []

    def run(self, *args, grid, warmup, **kwargs):
        if self not in binders:
            binders[self] = triton_jit.create_function_from_signature(self.signature, self.params, backend)
        bound, specialization, options = binders[self](*args, **kwargs)
        options, signature, constexprs, attrs = self._pack_args(backend, kwargs, bound, specialization, options)
        launches.append(Launch(self, signature, constexprs, attrs, dict(options.__dict__)))
        _zero_outputs(bound.values())

    saved = triton_jit.JITFunction.run
    triton_jit.JITFunction.run = run
    try:
        with launch.assume_gpu_arch(arch):
            yield launches
    finally:
        triton_jit.JITFunction.run = saved
