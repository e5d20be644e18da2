"""``torch.ops.pitome``: every op defined once — schema, checks, fake kernel, autograd.

The op body (``<name>_impl``) picks the kernel table of its ``backend`` argument (see
``_backends.py``):
``"auto"`` takes the fastest available one for the tensors' device, unknown devices fall
back to the reference. Plans and energies are not differentiable; gradients flow through
``merge``, ``merge_wavg`` (into ``x`` only) and ``unmerge``.

Ops:
- ``energy(metric, margin, kernel, class_token, backend) -> float32 [B, T']``
- ``plan(metric, r, variant, margin, class_token, distill_token, backend) -> (slot, offsets, members)``
- ``merge(x, slot, offsets, members, mode, backend) -> [B, T_out, K]``
- ``merge_wavg(x, size?, slot, offsets, members, backend) -> ([B, T_out, K], [B, T_out, 1])``
- ``unmerge(y, slot, offsets, members, backend) -> [B, T, K]``
- ``merge_backward`` and ``merge_wavg_backward``: the gradients of the two merges.
"""

import torch

from . import _checks
from ._backends import BackendUnavailableError, cpu_kernels, kernels

_lib = torch.library.Library("pitome", "FRAGMENT")


def _define(schema: str, impl, fake) -> None:
    # The dispatcher leaves out trailing arguments equal to their schema defaults, so
    # impl and fake repeat those defaults in their signatures.
    name = schema.split("(", 1)[0]
    _lib.define(schema)
    _lib.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"pitome::{name}", fake, lib=_lib)


def cpu_kernels_for(first, backend):
    """The C++ CPU kernel table when ``backend`` runs the tensor ``first`` on it, else None.

    Those kernels check every argument themselves (and raise RuntimeError), so for them the
    op bodies call the kernel first and run the Python checks only to explain a failure with
    a TypeError/ValueError naming the argument: valid calls skip the Python checks (about a
    microsecond, a tenth of a batch-1 merge). Other backends are checked before they run.
    """
    if type(first) is not torch.Tensor:
        return None
    if first.is_cpu and (backend == "auto" or backend == "cpu"):  # the common case, without the table lookup
        return cpu_kernels()
    try:
        table = kernels(backend, first.device)
    except (BackendUnavailableError, TypeError, ValueError):
        return None  # the checks report the arguments first, then the backend
    return table if table is cpu_kernels() else None


# What the C++ kernels raise for bad arguments (pybind11: TypeError for a wrong type).
KERNEL_ERRORS = (RuntimeError, TypeError)


def _run(name, backend, check, args, cpu_ok=True):
    """Kernel ``name`` of ``backend`` on ``args``. The C++ CPU kernel (when it serves
    ``args[0]`` and ``cpu_ok``: arguments pybind11 would not convert) runs first and
    ``check(*args)`` only explains its failure; any other kernel runs after ``check``, which
    may return replacement arguments (the plan's clamped r)."""
    cpu = cpu_kernels_for(args[0], backend) if cpu_ok else None
    if cpu is not None:
        try:
            return getattr(cpu, name)(*args)
        except KERNEL_ERRORS:
            check(*args)  # raises the named error, if it finds one
            raise
    args = check(*args) or args
    return getattr(kernels(backend, args[0].device), name)(*args)


# ---------------------------------------------------------------------------- energy
def _check_energy(metric, margin, kernel, class_token):
    _checks.flag("class_token", class_token)
    _checks.metric(metric, class_token)
    _checks.margin(margin, _checks.choice("kernel", kernel, _checks.KERNELS))


def energy_impl(metric, margin, kernel="elu", class_token=False, backend="auto"):
    return _run("energy", backend, _check_energy, (metric, margin, kernel, class_token),
                cpu_ok=type(margin) is float and type(kernel) is str and type(class_token) is bool)


def _energy_fake(metric, margin, kernel="elu", class_token=False, backend="auto"):
    _check_energy(metric, margin, kernel, class_token)
    batch, num_tokens, _ = metric.shape
    return metric.new_empty(batch, num_tokens - int(class_token), dtype=torch.float32)


_define(
    "energy(Tensor metric, float margin, str kernel='elu', bool class_token=False, "
    "str backend='auto') -> Tensor",
    energy_impl,
    _energy_fake,
)


# ------------------------------------------------------------------------------ plan
def _check_plan(metric, r, variant, margin, class_token, distill_token) -> int:
    variant = _checks.choice("variant", variant, _checks.VARIANTS)
    _checks.flag("class_token", class_token)
    _checks.flag("distill_token", distill_token)
    _checks.metric(metric, class_token)
    _checks.margin(margin, "gauss" if variant == "pitome_text" else "elu")
    if distill_token and variant != "tome":
        raise ValueError(f"distill_token=True needs variant='tome', got variant={variant!r}")
    return _checks.effective_r(r, variant, metric.shape[1], class_token, distill_token)


def _checked_plan_args(metric, r, variant, margin, class_token, distill_token):
    """The plan's arguments once checked, with r clamped (ToMe)."""
    r = _check_plan(metric, r, variant, margin, class_token, distill_token)
    return metric, r, variant, margin, class_token, distill_token


def plan_cpu_ok(r, variant, margin, class_token, distill_token) -> bool:
    """Whether the C++ CPU plan takes these arguments as they are (pybind11 would not convert)."""
    return (type(r) is int and type(variant) is str and type(margin) is float
            and type(class_token) is bool and type(distill_token) is bool)


def plan_impl(metric, r, variant="pitome", margin=0.5, class_token=False, distill_token=False, backend="auto"):
    return _run("plan", backend, _checked_plan_args, (metric, r, variant, margin, class_token, distill_token),
                cpu_ok=plan_cpu_ok(r, variant, margin, class_token, distill_token))


def _plan_fake(metric, r, variant="pitome", margin=0.5, class_token=False, distill_token=False, backend="auto"):
    r = _check_plan(metric, r, variant, margin, class_token, distill_token)
    batch, num_tokens, _ = metric.shape
    slot = metric.new_empty(batch, num_tokens, dtype=torch.int32)
    offsets = metric.new_empty(batch, num_tokens - r + 1, dtype=torch.int32)
    return slot, offsets, torch.empty_like(slot)


_define(
    "plan(Tensor metric, int r, str variant='pitome', float margin=0.5, bool class_token=False, "
    "bool distill_token=False, str backend='auto') -> (Tensor slot, Tensor offsets, Tensor members)",
    plan_impl,
    _plan_fake,
)


# ----------------------------------------------------------------------------- merge
def _check_merge_inputs(name, x, slot, offsets, members):
    if _checks.plan_args_ok(x, None, slot, offsets, members, per_output=False):
        return
    _checks.plan_tensors(slot, offsets, members)
    _checks.tokens(name, x, slot.shape[0], slot.shape[1], slot.device)


def _check_merge(x, slot, offsets, members, mode):
    _check_merge_inputs("x", x, slot, offsets, members)
    _checks.choice("mode", mode, _checks.MODES)


def merge_impl(x, slot, offsets, members, mode="mean", backend="auto"):
    return _run("merge", backend, _check_merge, (x, slot, offsets, members, mode), cpu_ok=type(mode) is str)


def _merge_fake(x, slot, offsets, members, mode="mean", backend="auto"):
    _check_merge(x, slot, offsets, members, mode)
    return x.new_empty(x.shape[0], offsets.shape[1] - 1, x.shape[2])


def _merge_backward(grad_out, x, out, slot, offsets, members, mode, backend="auto"):
    return kernels(backend, x.device).merge_backward(grad_out, x, out, slot, offsets, members, mode)


def _merge_backward_fake(grad_out, x, out, slot, offsets, members, mode, backend="auto"):
    return torch.empty_like(x)


_define(
    "merge(Tensor x, Tensor slot, Tensor offsets, Tensor members, str mode='mean', "
    "str backend='auto') -> Tensor",
    merge_impl,
    _merge_fake,
)
_define(
    "merge_backward(Tensor grad_out, Tensor x, Tensor out, Tensor slot, Tensor offsets, "
    "Tensor members, str mode, str backend='auto') -> Tensor",
    _merge_backward,
    _merge_backward_fake,
)


def _merge_setup_context(ctx, inputs, output):
    x, slot, offsets, members, ctx.mode, ctx.backend = inputs
    ctx.save_for_backward(x, output, slot, offsets, members)


def _merge_autograd(ctx, grad_out):
    x, out, slot, offsets, members = ctx.saved_tensors
    grad_x = torch.ops.pitome.merge_backward(grad_out, x, out, slot, offsets, members, ctx.mode, ctx.backend)
    return grad_x, None, None, None, None, None


torch.library.register_autograd(
    "pitome::merge", _merge_autograd, setup_context=_merge_setup_context, lib=_lib
)


# ------------------------------------------------------------------------ merge_wavg
def _check_merge_wavg(x, size, slot, offsets, members):
    if _checks.plan_args_ok(x, size, slot, offsets, members, per_output=False):
        return
    _check_merge_inputs("x", x, slot, offsets, members)
    _checks.size(size, x)


def merge_wavg_impl(x, size, slot, offsets, members, backend="auto"):
    return _run("merge_wavg", backend, _check_merge_wavg, (x, size, slot, offsets, members))


def _merge_wavg_fake(x, size, slot, offsets, members, backend="auto"):
    _check_merge_wavg(x, size, slot, offsets, members)
    num_out = offsets.shape[1] - 1
    size_dtype = x.dtype if size is None else size.dtype
    return (
        x.new_empty(x.shape[0], num_out, x.shape[2]),
        x.new_empty(x.shape[0], num_out, 1, dtype=size_dtype),
    )


def _merge_wavg_backward(grad_out, size, size_out, slot, offsets, members, backend="auto"):
    return kernels(backend, grad_out.device).merge_wavg_backward(
        grad_out, size, size_out, slot, offsets, members
    )


def _merge_wavg_backward_fake(grad_out, size, size_out, slot, offsets, members, backend="auto"):
    return grad_out.new_empty(grad_out.shape[0], slot.shape[1], grad_out.shape[2])


_define(
    "merge_wavg(Tensor x, Tensor? size, Tensor slot, Tensor offsets, Tensor members, "
    "str backend='auto') -> (Tensor, Tensor)",
    merge_wavg_impl,
    _merge_wavg_fake,
)
_define(
    "merge_wavg_backward(Tensor grad_out, Tensor? size, Tensor size_out, Tensor slot, "
    "Tensor offsets, Tensor members, str backend='auto') -> Tensor",
    _merge_wavg_backward,
    _merge_wavg_backward_fake,
)


def _merge_wavg_setup_context(ctx, inputs, output):
    _, size, slot, offsets, members, ctx.backend = inputs
    ctx.save_for_backward(size, output[1], slot, offsets, members)


def _merge_wavg_autograd(ctx, grad_x_out, grad_size_out):
    size, size_out, slot, offsets, members = ctx.saved_tensors
    grad_x = torch.ops.pitome.merge_wavg_backward(
        grad_x_out, size, size_out, slot, offsets, members, ctx.backend
    )
    return grad_x, None, None, None, None, None


torch.library.register_autograd(
    "pitome::merge_wavg", _merge_wavg_autograd, setup_context=_merge_wavg_setup_context, lib=_lib
)


# --------------------------------------------------------------------------- unmerge
def _check_unmerge(y, slot, offsets, members):
    if _checks.plan_args_ok(y, None, slot, offsets, members, per_output=True):
        return
    _checks.plan_tensors(slot, offsets, members)
    _checks.tokens("y", y, slot.shape[0], offsets.shape[1] - 1, slot.device)


def unmerge_impl(y, slot, offsets, members, backend="auto"):
    return _run("unmerge", backend, _check_unmerge, (y, slot, offsets, members))


def _unmerge_fake(y, slot, offsets, members, backend="auto"):
    _check_unmerge(y, slot, offsets, members)
    return y.new_empty(y.shape[0], slot.shape[1], y.shape[2])


_define(
    "unmerge(Tensor y, Tensor slot, Tensor offsets, Tensor members, str backend='auto') -> Tensor",
    unmerge_impl,
    _unmerge_fake,
)


def _unmerge_setup_context(ctx, inputs, output):
    _, slot, offsets, members, ctx.backend = inputs
    ctx.save_for_backward(slot, offsets, members)


def _unmerge_autograd(ctx, grad_out):
    slot, offsets, members = ctx.saved_tensors
    grad_y = torch.ops.pitome.merge(grad_out, slot, offsets, members, "sum", ctx.backend)
    return grad_y, None, None, None, None


torch.library.register_autograd(
    "pitome::unmerge", _unmerge_autograd, setup_context=_unmerge_setup_context, lib=_lib
)
