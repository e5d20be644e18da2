"""backend="auto" among several backends (Triton and CUDA C++ on a GPU) runs, per op and
class of inputs, the one measured fastest. The choice logic is tested here with given
timings; on a GPU the timer is CUDA events (test_golden and test_ops run "auto" there)."""

import time

import pytest
import torch

from pitome_kernels import backends, reference
from pitome_kernels.measured import MeasuredChoice, input_class


class FakeTable:
    def __init__(self, name):
        self.name, self.calls = name, []

    def merge(self, x, mode):
        self.calls.append(tuple(x.shape))
        return self.name


def _choice(times, capturing=lambda: False):
    tables = {name: FakeTable(name) for name in times}
    measured = []

    def timer(fn, args):
        measured.append((fn.__self__.name, tuple(args[0].shape)))
        return times[fn.__self__.name]

    return MeasuredChoice(list(times), list(tables.values()), timer=timer, capturing=capturing), tables, measured


def test_the_fastest_runs_and_each_class_is_measured_once():
    choice, tables, measured = _choice({"triton": 2.0, "cuda": 1.0})
    assert choice.merge(torch.zeros(2, 197, 8), "mean") == "cuda"
    assert choice.merge(torch.zeros(2, 178, 8), "mean") == "cuda"  # same class: 178 and 197 round to 256
    assert measured == [("triton", (2, 197, 8)), ("cuda", (2, 197, 8))]
    assert choice.merge(torch.zeros(2, 300, 8), "mean") == "cuda"  # a new class is measured
    assert len(measured) == 4
    assert tables["cuda"].calls[-1] == (2, 300, 8)


def test_classes_differ_by_dtype_and_string_arguments_but_not_by_floats():
    x = torch.zeros(2, 197, 8)
    assert input_class((x, "mean")) != input_class((x, "amax"))
    assert input_class((x, "mean")) != input_class((x.half(), "mean"))
    assert input_class((x, 0.5, True)) == input_class((x, 0.9, True))
    assert input_class((x, 3)) == input_class((x, 4)) != input_class((x, 5))


def test_ties_keep_the_registry_order():
    choice, _, _ = _choice({"triton": 1.0, "cuda": 1.0})
    assert choice.merge(torch.zeros(1, 4, 4), "sum") == "triton"


def test_nothing_is_timed_while_a_graph_is_captured():
    capturing = [True]
    choice, _, measured = _choice({"triton": 2.0, "cuda": 1.0}, capturing=lambda: capturing[0])
    assert choice.merge(torch.zeros(1, 4, 4), "sum") == "triton"
    assert measured == [] and choice.choices == {}
    capturing[0] = False
    assert choice.merge(torch.zeros(1, 4, 4), "sum") == "cuda"
    capturing[0] = True  # a measured class keeps its choice during a capture
    assert choice.merge(torch.zeros(1, 4, 4), "sum") == "cuda"


def test_an_op_missing_from_a_candidate_is_an_error():
    choice, _, _ = _choice({"triton": 1.0, "cuda": 1.0})
    with pytest.raises(AttributeError):
        choice.plan  # noqa: B018


def test_real_kernels_through_a_measured_choice_give_the_reference_result():
    def cpu_timer(fn, args):
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    choice = MeasuredChoice(["cpu", "reference"], [backends._table("cpu"), reference], timer=cpu_timer)
    metric = torch.randn(2, 50, 16, dtype=torch.float64)
    got = choice.plan(metric, 10, "pitome", 0.5, True, False)
    want = reference.plan(metric, 10, "pitome", 0.5, True, False)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert set(choice.choices.values()) <= {"cpu", "reference"} and len(choice.choices) == 1


def test_auto_measures_only_where_several_backends_qualify(monkeypatch):
    cpu = torch.device("cpu")
    table, _ = backends.kernels("auto", cpu)
    assert not isinstance(table, MeasuredChoice)  # one CPU backend: no measurement
    monkeypatch.setattr(backends, "auto_candidates", lambda device: ["cpu", "reference"])
    monkeypatch.setattr(backends, "_MEASURED", {})
    table, checks_arguments = backends.kernels("auto", cpu)
    assert isinstance(table, MeasuredChoice) and not checks_arguments
    assert backends.kernels("auto", cpu)[0] is table  # one choice table per device: choices persist
    monkeypatch.setenv("PITOME_AUTO", "first")
    assert backends.kernels("auto", cpu)[0] is backends._table("cpu")
