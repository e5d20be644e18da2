"""The end-to-end model benchmark: its ToMe-code and paper-style mergers compute what the
kernels compute (same rows, same order, SPEC.md), and the CLI runs a tiny model."""

import json

import pytest
import torch

from pitome_kernels import cli
from pitome_kernels.bench.paper_merger import PaperStyleMerger
from pitome_kernels.bench.tome_style import ToMeStyleMerger
from pitome_kernels.patch.merger import KernelMerger


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(2, 17, 8, generator=g)
    x = torch.randn(2, 17, 16, generator=g)
    size = torch.randint(1, 4, (2, 17, 1), generator=g).float()
    return metric, x, size


def _assert_same_merges(merger, variant, class_token=True):
    metric, x, size = _inputs()
    kernels = KernelMerger("reference")
    expected_plan = kernels.plan(metric, 4, variant, 0.5, class_token)
    plan = merger.plan(metric, 4, variant, 0.5, class_token)
    for given_size in (None, size):
        want_x, want_size = kernels.merge_wavg(expected_plan, x, given_size)
        got_x, got_size = merger.merge_wavg(plan, x, given_size)
        assert got_x.shape == (2, 13, 16)
        torch.testing.assert_close(got_x, want_x, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_size, want_size, atol=1e-5, rtol=1e-5)
    for mode in ("sum", "mean", "amax"):
        torch.testing.assert_close(merger.merge(plan, x, mode), kernels.merge(expected_plan, x, mode),
                                   atol=1e-5, rtol=1e-5)
    assert torch.equal(merger.source(plan, None), kernels.source(expected_plan, None))


@pytest.mark.parametrize("class_token", [True, False])
def test_tome_code_merges_as_the_tome_variant(class_token):
    # the variant and margin passed to the ToMe code are ignored: it is always ToMe
    _assert_same_merges(ToMeStyleMerger(), "tome", class_token)


@pytest.mark.parametrize("variant", ["pitome", "pitome_bsm", "pitome_text"])
@pytest.mark.parametrize("class_token", [True, False])
def test_paper_style_merges_as_the_kernels(variant, class_token):
    _assert_same_merges(PaperStyleMerger(), variant, class_token)


def test_tome_code_ignores_the_variant_and_clamps_r():
    metric, x, _ = _inputs()
    merger = ToMeStyleMerger()
    plan = merger.plan(metric, 100, "pitome", 0.9, True)
    assert plan.r == 8 and merger.merge_wavg(plan, x, None)[0].shape == (2, 9, 16)


def test_mergers_name_the_bad_argument():
    metric, x, _ = _inputs()
    with pytest.raises(ValueError, match="variant"):
        PaperStyleMerger().plan(metric, 4, "tome", 0.5, True)
    plan = ToMeStyleMerger().plan(metric, 4, "tome", 0.5, True)
    with pytest.raises(ValueError, match="mode"):
        ToMeStyleMerger().merge(plan, x, "prune")


CONFIGS = ("unmerged", "pitome", "tome", "tome_code", "pitome_paper")


@pytest.mark.parametrize("model", ["vit_b16", "bert_base"])
def test_cli_times_a_tiny_model(model, tmp_path, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    path, plot = tmp_path / "models.json", tmp_path / "models.png"
    cli.main(["bench", "--model", model, "--tiny", "--batch", "2", "--min-run-time", "0.01",
              "--json", str(path), "--plot", str(plot)])
    out = capsys.readouterr().out
    for config in CONFIGS:
        assert f"│ {config} " in out
    doc = json.loads(path.read_text())
    assert doc["machine"]["threads"] == torch.get_num_threads()
    rows = {row["config"]: row for row in doc["rows"]}
    assert list(rows) == list(CONFIGS)
    for row in rows.values():
        assert row["model"] == model and row["batch"] == 2 and row["items_per_s"] > 0
    assert rows["unmerged"]["flops_vs_unmerged"] == 1.0 and rows["unmerged"]["vs_unmerged"] == 1.0
    assert rows["pitome"]["flops_vs_unmerged"] < 1.0
    # every merging configuration removes the same tokens
    assert len({row["tokens_out"] for name, row in rows.items() if name != "unmerged"}) == 1
    assert rows["pitome"]["tokens_out"] < rows["unmerged"]["tokens_out"]
    assert plot.stat().st_size > 0


def test_cli_model_refuses_compare(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--model", "vit_b16", "--tiny", "--compare", str(tmp_path / "none.json")])
    assert exit_info.value.code == 2 and "--compare" in capsys.readouterr().err
