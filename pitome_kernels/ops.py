"""``torch.ops.pitome``: the op table. Every op is one ``Op`` record below (schema, checks,
fake kernel, autograd), from which its registration, its eager entry point and its kernel
lookup are derived.

Every op takes ``backend`` last (see ``backends.py``). Plans and energies are not
differentiable; gradients flow through ``merge``, ``merge_wavg`` (into ``x`` only) and
``unmerge``. A call validates its arguments once (``_checks.py``, metadata only) and then
runs the backend's kernel of the same name on the checked arguments.
"""

import torch

from . import _checks, _plan_checks
from . import backends

_lib = torch.library.Library("pitome", "FRAGMENT")
_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_is_grad_enabled = torch.is_grad_enabled
_finite_check = _checks.finite_check  # on: every call takes the Python checks


# What a kernel that checks its own arguments raises for a bad one (c10::Error, pybind11).
_KERNEL_ERRORS = (RuntimeError, TypeError, ValueError, IndexError)
_PY_TYPES = {"int": int, "SymInt": int, "float": float, "bool": bool, "str": str}


class Op:
    """One op of ``torch.ops.pitome``, defined and registered from:

    - ``schema``: its signature, the last argument ``str backend='auto'``;
    - ``check(*args)``: validates every argument but ``backend`` and returns the device the
      op runs on and the arguments its kernels receive (the plan's r after ToMe's clamp);
    - ``fake(*checked)``: empty outputs of the right shapes, for torch.compile;
    - ``setup_context`` and ``backward``: its autograd formula, for differentiable ops
      (the first argument is the differentiable one);
    - ``verify(*checked)``: the checks that read tensor data (a plan's contents; on a GPU
      they wait for it), skipped where the backend's kernels make them themselves;
    - ``on_output(checked, out)``: called with each result that ``check`` validated the
      arguments of (the plan op records its plans as valid).

    Calling an ``Op`` runs it. A plain eager call (no autograd to record, not compiling, a
    plain tensor first) skips the dispatcher's round trip and runs the same body.

    Arguments are validated once, before any work: by ``check``, or, on that eager path,
    where the backend's kernels check their own arguments (``Backend.checks_arguments``)
    and every scalar has its schema's exact Python type, by the kernel itself; a kernel's
    error is then explained by ``check``, which raises the TypeError/ValueError naming the
    argument.
    """

    def __init__(self, schema, check, fake, setup_context=None, backward=None, verify=None, on_output=None):
        self.name = schema.split("(", 1)[0]
        arguments = torch._C.parse_schema(f"pitome::{schema}").arguments
        assert arguments[-1].name == "backend", "every op takes backend last"
        self._arity = len(arguments)
        # The dispatcher leaves out trailing arguments equal to their defaults.
        self._defaults = tuple(a.default_value if a.has_default_value() else None for a in arguments)
        self._plain_scalars = _exact_scalar_types(arguments[:-1])
        self._check = check
        self._fake = fake
        self._differentiable = backward is not None
        self._verify = verify
        self._on_output = on_output
        self._kernels = {}
        self._cpu_kernels = {}

        _lib.define(schema)
        _lib.impl(self.name, self._run, "CompositeExplicitAutograd")
        torch.library.register_fake(f"pitome::{self.name}", self._run_fake, lib=_lib)
        if backward is not None:
            torch.library.register_autograd(f"pitome::{self.name}", backward, setup_context=setup_context, lib=_lib)
        self.overload = getattr(torch.ops.pitome, self.name).default

    def __call__(self, *args):
        first = args[0]
        if type(first) is not _Tensor or _is_compiling() or (
                self._differentiable and first.requires_grad and _is_grad_enabled()):
            if isinstance(first, _Tensor):
                return self.overload(*args)  # autograd, torch.compile and tensor subclasses
            return self._run(*args)  # not a tensor: the checks name the argument
        if len(args) != self._arity:
            args = self._complete(args)
        if self._plain_scalars(args) and not _finite_check[0]:
            backend = args[-1]
            # CPU tensors all live on one device: their kernels are found by backend alone
            found = self._cpu_kernels.get(backend) if first.is_cpu else None
            if found is None:
                found = self.kernel(backend, first.device)
                if first.is_cpu:
                    self._cpu_kernels[backend] = found
            if found[1]:  # the kernel checks its own arguments
                try:
                    return found[0](*args[:-1])
                except _KERNEL_ERRORS:
                    self._check(*args[:-1])  # raises the error naming the argument, if it finds one
                    raise
        return self._run(*args)

    def _run(self, *args):
        """The op's body: the checks, then the kernel (the dispatcher's implementation)."""
        args = self._complete(args)
        device, checked = self._check(*args[:-1])
        fn, checks_arguments = self.kernel(args[-1], device)
        if self._verify is not None and not checks_arguments:
            self._verify(*checked)
        out = fn(*checked)
        if self._on_output is not None:
            self._on_output(checked, out)
        return out

    def _complete(self, args: tuple) -> tuple:
        return args if len(args) == self._arity else args + self._defaults[len(args):]

    def _run_fake(self, *args):
        args = self._complete(args)
        backends.check_name(args[-1])
        return self._fake(*self._check(*args[:-1])[1])

    def kernel(self, backend: str, device: torch.device) -> tuple:
        """``(function, checks_arguments)``: what runs this op for ``backend`` on ``device``."""
        key = (backend, device)
        found = self._kernels.get(key) if type(backend) is str else None
        if found is None:
            table, checks_arguments = backends.kernels(backend, device)
            found = self._kernels[key] = (getattr(table, self.name), checks_arguments)
        return found


def _exact_scalar_types(arguments):
    """A predicate on an op's arguments: every int, float, bool and str argument has exactly
    that Python type (a bool is not an int here). Compiled from the schema once: a loop over
    the arguments would cost as much as a small kernel call."""
    terms = [f"type(args[{i}]) is {_PY_TYPES[str(a.type)].__name__}" for i, a in enumerate(arguments)
             if str(a.type) in _PY_TYPES]
    return eval(f"lambda args: {' and '.join(terms) or 'True'}", dict(_PY_TYPES))  # noqa: S307 - our own schema


def _plan_contents_at(first: int):
    """A ``verify``: the plan tensors are the checked arguments ``first`` to ``first + 2``."""
    return lambda *checked: _plan_checks.plan_contents(*checked[first:first + 3])


# ---------------------------------------------------------------------------- energy
def _check_energy(metric, margin, kernel, class_token):
    _checks.flag("class_token", class_token)
    _checks.metric(metric, class_token)
    margin = _checks.margin(margin, _checks.choice("kernel", kernel, _checks.KERNELS))
    return metric.device, (metric, margin, kernel, class_token)


def _energy_fake(metric, margin, kernel, class_token):
    batch, num_tokens, _ = metric.shape
    return metric.new_empty(batch, num_tokens - int(class_token), dtype=torch.float32)


energy = Op(
    "energy(Tensor metric, float margin, str kernel='elu', bool class_token=False, str backend='auto') -> Tensor",
    _check_energy, _energy_fake,
)


# ------------------------------------------------------------------------------ plan
def _check_plan(metric, r, variant, margin, class_token, distill_token):
    variant = _checks.choice("variant", variant, _checks.VARIANTS)
    _checks.flag("class_token", class_token)
    _checks.flag("distill_token", distill_token)
    _checks.metric(metric, class_token)
    margin = _checks.margin(margin, "gauss" if variant == "pitome_text" else "elu")
    if distill_token and variant != "tome":
        raise ValueError(f"distill_token=True needs variant='tome', got variant={variant!r}")
    r = _checks.effective_r(r, variant, metric.shape[1], class_token, distill_token)
    return metric.device, (metric, r, variant, margin, class_token, distill_token)


def _plan_fake(metric, r, variant, margin, class_token, distill_token):
    batch, num_tokens, _ = metric.shape
    slot = metric.new_empty(batch, num_tokens, dtype=torch.int32)
    offsets = metric.new_empty(batch, num_tokens - r + 1, dtype=torch.int32)
    return slot, offsets, torch.empty_like(slot)


def _remember_plan(checked, out):
    """The plan op's outputs are valid plans: the merges that read them skip their checks."""
    metric, r = checked[0], checked[1]
    batch, num_tokens, _ = metric.shape
    _plan_checks.remember(*out, (batch, num_tokens, num_tokens - r, metric.device), contents_checked=True)


plan = Op(
    "plan(Tensor metric, SymInt r, str variant='pitome', float margin=0.5, bool class_token=False, "
    "bool distill_token=False, str backend='auto') -> (Tensor slot, Tensor offsets, Tensor members)",
    _check_plan, _plan_fake, on_output=_remember_plan,
)


# ----------------------------------------------------------------------------- merge
def _check_merge(x, slot, offsets, members, mode):
    batch, num_tokens, _, device = _plan_checks.plan_tensors(slot, offsets, members)
    _checks.tokens("x", x, batch, num_tokens, device)
    _checks.choice("mode", mode, _checks.MODES)
    return device, (x, slot, offsets, members, mode)


def _merge_fake(x, slot, offsets, members, mode):
    return x.new_empty(x.shape[0], offsets.shape[1] - 1, x.shape[2])


def _check_merge_backward(grad_out, x, out, slot, offsets, members, mode):
    batch, num_tokens, num_out, device = _plan_checks.plan_tensors(slot, offsets, members)
    _checks.tokens("grad_out", grad_out, batch, num_out, device)
    _checks.tokens("x", x, batch, num_tokens, device)
    _checks.tokens("out", out, batch, num_out, device)
    _checks.choice("mode", mode, _checks.MODES)
    return device, (grad_out, x, out, slot, offsets, members, mode)


def _merge_backward_fake(grad_out, x, out, slot, offsets, members, mode):
    return torch.empty_like(x)


def _merge_backward_setup_context(ctx, inputs, output):
    _, x, out, slot, offsets, members, ctx.mode, ctx.backend = inputs
    ctx.save_for_backward(x, out, slot, offsets, members)


def _merge_backward_autograd(ctx, grad_grad_x):
    """merge_backward is linear in grad_out: its adjoint is a merge of the incoming gradient
    (amax weights each member by its share of its group's maximum)."""
    x, out, slot, offsets, members = ctx.saved_tensors
    mode = ctx.mode
    if mode == "amax":
        share = merge_backward.overload(torch.ones_like(out), x, out, slot, offsets, members, "amax", ctx.backend)
        grad_grad_x, mode = grad_grad_x * share, "sum"
    grad_out = merge.overload(grad_grad_x, slot, offsets, members, mode, ctx.backend)
    return grad_out, None, None, None, None, None, None, None


merge_backward = Op(
    "merge_backward(Tensor grad_out, Tensor x, Tensor out, Tensor slot, Tensor offsets, Tensor members, "
    "str mode, str backend='auto') -> Tensor",
    _check_merge_backward, _merge_backward_fake, _merge_backward_setup_context, _merge_backward_autograd,
    verify=_plan_contents_at(3),
)


def _merge_setup_context(ctx, inputs, output):
    x, slot, offsets, members, ctx.mode, ctx.backend = inputs
    ctx.save_for_backward(x, output, slot, offsets, members)


def _merge_autograd(ctx, grad_out):
    x, out, slot, offsets, members = ctx.saved_tensors
    grad_x = merge_backward.overload(grad_out, x, out, slot, offsets, members, ctx.mode, ctx.backend)
    return grad_x, None, None, None, None, None


merge = Op(
    "merge(Tensor x, Tensor slot, Tensor offsets, Tensor members, str mode='mean', str backend='auto') -> Tensor",
    _check_merge, _merge_fake, _merge_setup_context, _merge_autograd, verify=_plan_contents_at(1),
)


# ------------------------------------------------------------------------ merge_wavg
def _check_merge_wavg(x, size, slot, offsets, members):
    batch, num_tokens, _, device = _plan_checks.plan_tensors(slot, offsets, members)
    _checks.tokens("x", x, batch, num_tokens, device)
    _checks.size(size, batch, num_tokens, device)
    return device, (x, size, slot, offsets, members)


def _merge_wavg_fake(x, size, slot, offsets, members):
    num_out = offsets.shape[1] - 1
    size_dtype = x.dtype if size is None else size.dtype
    return (
        x.new_empty(x.shape[0], num_out, x.shape[2]),
        x.new_empty(x.shape[0], num_out, 1, dtype=size_dtype),
    )


def _check_merge_wavg_backward(grad_out, size, size_out, slot, offsets, members):
    batch, num_tokens, num_out, device = _plan_checks.plan_tensors(slot, offsets, members)
    _checks.tokens("grad_out", grad_out, batch, num_out, device)
    _checks.size(size, batch, num_tokens, device)
    _checks.tokens("size_out", size_out, batch, num_out, device)
    return device, (grad_out, size, size_out, slot, offsets, members)


def _merge_wavg_backward_fake(grad_out, size, size_out, slot, offsets, members):
    return grad_out.new_empty(grad_out.shape[0], slot.shape[1], grad_out.shape[2])


def _merge_wavg_backward_setup_context(ctx, inputs, output):
    _, size, size_out, slot, offsets, members, ctx.backend = inputs
    ctx.save_for_backward(size, size_out, slot, offsets, members)


def _merge_wavg_backward_autograd(ctx, grad_grad_x):
    """merge_wavg_backward is linear in grad_out: its adjoint sums size * gradient over each
    group and divides by the group's size."""
    size, size_out, slot, offsets, members = ctx.saved_tensors
    weighted = grad_grad_x if size is None else grad_grad_x * size.to(grad_grad_x.dtype)
    grad_out = merge.overload(weighted, slot, offsets, members, "sum", ctx.backend) / size_out.to(weighted.dtype)
    return grad_out, None, None, None, None, None, None


merge_wavg_backward = Op(
    "merge_wavg_backward(Tensor grad_out, Tensor? size, Tensor size_out, Tensor slot, Tensor offsets, "
    "Tensor members, str backend='auto') -> Tensor",
    _check_merge_wavg_backward, _merge_wavg_backward_fake,
    _merge_wavg_backward_setup_context, _merge_wavg_backward_autograd, verify=_plan_contents_at(3),
)


def _merge_wavg_setup_context(ctx, inputs, output):
    _, size, slot, offsets, members, ctx.backend = inputs
    ctx.save_for_backward(size, output[1], slot, offsets, members)


def _merge_wavg_autograd(ctx, grad_x_out, grad_size_out):
    size, size_out, slot, offsets, members = ctx.saved_tensors
    grad_x = merge_wavg_backward.overload(grad_x_out, size, size_out, slot, offsets, members, ctx.backend)
    return grad_x, None, None, None, None, None


merge_wavg = Op(
    "merge_wavg(Tensor x, Tensor? size, Tensor slot, Tensor offsets, Tensor members, "
    "str backend='auto') -> (Tensor, Tensor)",
    _check_merge_wavg, _merge_wavg_fake, _merge_wavg_setup_context, _merge_wavg_autograd,
    verify=_plan_contents_at(2),
)


# --------------------------------------------------------------------------- unmerge
def _check_unmerge(y, slot, offsets, members):
    batch, _, num_out, device = _plan_checks.plan_tensors(slot, offsets, members)
    _checks.tokens("y", y, batch, num_out, device)
    return device, (y, slot, offsets, members)


def _unmerge_fake(y, slot, offsets, members):
    return y.new_empty(y.shape[0], slot.shape[1], y.shape[2])


def _unmerge_setup_context(ctx, inputs, output):
    _, slot, offsets, members, ctx.backend = inputs
    ctx.save_for_backward(slot, offsets, members)


def _unmerge_autograd(ctx, grad_out):
    slot, offsets, members = ctx.saved_tensors
    return merge.overload(grad_out, slot, offsets, members, "sum", ctx.backend), None, None, None, None


unmerge = Op(
    "unmerge(Tensor y, Tensor slot, Tensor offsets, Tensor members, str backend='auto') -> Tensor",
    _check_unmerge, _unmerge_fake, _unmerge_setup_context, _unmerge_autograd,
    verify=_plan_contents_at(1),
)

OPS: tuple[Op, ...] = (energy, plan, merge, merge_backward, merge_wavg, merge_wavg_backward, unmerge)
