"""The benchmark CLI (the README's first command) on a tiny layer: it runs, and its rows
hold what the table prints."""

import math

import pytest
import torch

from pitome_kernels import cli
from pitome_kernels.bench import runner


def test_layer_rows_cover_every_op_and_backend():
    rows = runner.layer_rows(2, tokens=17, channels=8, dim=16, r=4, backends=["reference", "cpu"],
                             min_run_time=0.01)
    assert [(r.backend, r.op) for r in rows] == [
        (b, op) for b in ("reference", "cpu") for op in ("energy", "plan", "merge_wavg", "layer")]
    for row in rows:
        assert row.shape == "B2 T17 C8 D16 r4" and row.threads == torch.get_num_threads()
        assert 0 < row.timing.q20_us <= row.median_us <= row.timing.q80_us
        assert len(row.timing.rounds_us) == runner.ROUNDS
        for value in (row.speedup_vs_paper, row.times_floor, row.gb_per_s):
            assert math.isfinite(value) and value > 0
    layer = next(r for r in rows if r.op == "layer")
    assert layer.floor_name == "u@uT+x.clone"


def test_ratio_is_the_median_of_per_round_ratios():
    slow = runner.Timing(10.0, 9.0, 11.0, [10.0, 10.0, 40.0])  # one noisy round
    fast = runner.Timing(5.0, 4.0, 6.0, [5.0, 5.0, 5.0])
    assert runner._ratio(slow, fast) == 2.0
    assert runner._ratio(slow, runner.Timing(5.0, 5.0, 5.0, [])) == 2.0  # no rounds (CUDA): medians


def test_cli_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "layer.png"
    cli.main(["bench", "--batch", "1", "--tokens", "9", "--channels", "4", "--dim", "8", "--r", "2",
              "--backend", "cpu", "--min-run-time", "0.01", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert "merge_wavg" in out and "x.clone" in out and "u@uT" in out
    assert plot.stat().st_size > 0


def test_speedup_text_says_slower_below_one():
    assert runner._speedup_text(3.5) == "3.50x faster"
    assert runner._speedup_text(0.5) == "2.00x slower"


def test_cli_times_each_cpu_isa_clone_asked_for(capsys):
    import pitome_kernels as pk

    if pk.available("cpu", torch.device("cpu")) is not None:
        pytest.skip("the C++ extension is not loaded")
    before = pk.cpu_isa()
    try:
        cli.main(["bench", "--batch", "1", "--tokens", "9", "--channels", "4", "--dim", "8", "--r", "2",
                  "--backend", "cpu", "--min-run-time", "0.01", "--cpu-isa", "default", "avx512"])
    finally:
        pk.set_cpu_isa(before)
    out = capsys.readouterr().out
    assert "cpu (default)" in out and f"cpu ({pk.supported_cpu_isa()})" in out
    assert out.count("│ merge_wavg") == 2  # one set of rows per clone


def _tiny_bench(*extra):
    return ["bench", "--batch", "1", "--tokens", "9", "--channels", "4", "--dim", "8", "--r", "2",
            "--backend", "reference", "--min-run-time", "0.01", *extra]


def test_json_then_compare_passes_against_itself_and_fails_a_doctored_baseline(tmp_path, capsys):
    import json

    path = tmp_path / "baseline.json"
    cli.main(_tiny_bench("--json", str(path)))
    doc = json.loads(path.read_text())
    assert doc["machine"]["torch"] == torch.__version__ and doc["machine"]["threads"] == torch.get_num_threads()
    assert {(r["op"], r["backend"]) for r in doc["rows"]} == {
        (op, "reference") for op in ("energy", "plan", "merge_wavg", "layer")}

    # A baseline far worse than any run passes; one whose merge_wavg was 100x closer to the
    # floor fails, naming that row only.
    for row in doc["rows"]:
        row["times_floor"] *= 100.0
        row["speedup_vs_paper"] /= 100.0
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(doc))
    cli.main(_tiny_bench("--compare", str(worse)))
    assert "no ratio worse" in capsys.readouterr().out

    for row in doc["rows"]:
        if row["op"] == "merge_wavg":
            row["times_floor"] /= 10_000.0
    better = tmp_path / "better.json"
    better.write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_tiny_bench("--compare", str(better), "--max-slowdown", "1.15"))
    assert exit_info.value.code not in (0, None)
    out = capsys.readouterr().out
    assert "REGRESSION: merge_wavg B1 T9 C4 D8 r2 float32 reference" in out
    assert out.count("REGRESSION") == 1


def test_compare_is_on_ratios_with_the_given_margin():
    from pitome_kernels.bench import baseline

    rows = runner.layer_rows(1, tokens=9, channels=4, dim=8, r=2, backends=["reference"], min_run_time=0.01)
    doc = {"format": baseline.FORMAT, "rows": [baseline.row_record(r) for r in rows]}
    assert baseline.compare(rows, doc, 1.15) == ([], [])
    doc["rows"][0]["times_floor"] /= 1.2  # 1.2x worse now: fails at 1.15, passes at 1.25
    assert len(baseline.compare(rows, doc, 1.15)[0]) == 1
    assert baseline.compare(rows, doc, 1.25)[0] == []
    doc["rows"].pop()
    assert any("not in the baseline" in note for note in baseline.compare(rows, doc, 1.25)[1])
    with pytest.raises(ValueError, match="max_slowdown"):
        baseline.compare(rows, doc, 0.9)
