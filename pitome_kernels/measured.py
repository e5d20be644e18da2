"""``backend="auto"`` where several backends can run on a device (Triton and CUDA C++ on a
GPU): the faster one, measured.

The first call of an op on a class of inputs times every candidate on those very inputs and
remembers the fastest for the class; later calls run it directly. A class is the op, each
tensor's dtype and its sizes rounded up to powers of two, and the other arguments except
floats (a margin does not change the kernel). The ops are functional, so running each
candidate a few times has no effect beyond the time it takes. While a CUDA graph is being
captured nothing can be timed: an unmeasured class then takes the first candidate (the
registry's order). ``PITOME_AUTO=first`` turns the measurement off.
"""

import os
import statistics
import threading
from typing import Callable, Sequence

import torch


def _bucket(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def input_class(args: tuple) -> tuple:
    """What identifies a class of inputs: dtypes, sizes up to the next power of two, and the
    non-float arguments."""
    key = []
    for a in args:
        if isinstance(a, torch.Tensor):
            key.append((a.dtype, tuple(_bucket(s) for s in a.shape)))
        elif isinstance(a, (bool, str)) or a is None:
            key.append(a)
        elif isinstance(a, int):
            key.append(("int", _bucket(a)))
    return tuple(key)


def cuda_event_timer(fn: Callable, args: tuple, repeats: int = 5) -> float:
    """Median milliseconds of ``fn(*args)`` on the current CUDA stream, after one warm-up call
    (which also compiles what a JIT compiles)."""
    fn(*args)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def measuring_enabled() -> bool:
    return os.environ.get("PITOME_AUTO", "measure") != "first"


class MeasuredChoice:
    """A kernel table over several backends' tables (``names``, ``tables``, in the registry's
    order): each op runs on the backend that was fastest for its input class. ``timer(fn,
    args)`` returns a time; ``capturing()`` says when nothing may be timed."""

    def __init__(self, names: Sequence[str], tables: Sequence[object],
                 timer: Callable = cuda_event_timer, capturing: Callable[[], bool] = _capturing):
        if len(names) != len(tables) or not names:
            raise ValueError("MeasuredChoice needs one table per backend name, and at least one")
        self._names, self._tables = tuple(names), dict(zip(names, tables))
        self._timer, self._capturing = timer, capturing
        self._lock = threading.Lock()
        self.choices: dict[tuple, str] = {}  # (op, input class) -> backend name

    def __getattr__(self, op: str):
        if op.startswith("_"):
            raise AttributeError(op)
        for table in self._tables.values():
            getattr(table, op)  # every candidate has the op (an AttributeError otherwise)

        def run(*args):
            return getattr(self._tables[self.choose(op, args)], op)(*args)

        run.__name__ = op
        setattr(self, op, run)
        return run

    def choose(self, op: str, args: tuple) -> str:
        """The backend that runs ``op`` on ``args``, measured on first sight of their class."""
        key = (op, input_class(args))
        name = self.choices.get(key)
        if name is not None:
            return name
        if len(self._names) == 1 or self._capturing():
            return self._names[0]
        with self._lock:
            name = self.choices.get(key)
            if name is None:
                times = {n: self._timer(getattr(self._tables[n], op), args) for n in self._names}
                name = self.choices[key] = min(self._names, key=lambda n: times[n])  # ties: registry order
        return name
