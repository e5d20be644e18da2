"""Public API semantics beyond the golden file: ratio rule, plan structure, source maps."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, ratio_floor, well_separated_metric


@pytest.mark.parametrize("tokens, ratio, class_token", [(197, 0.9, True), (65, 0.75, False), (17, 0.5, True),
                                                        (10, 1.0, False), (10, 0.0, False), (7, 0.33, True)])
def test_ratio_to_r_floor_rule(tokens, ratio, class_token):
    mergeable = tokens - int(class_token)
    expected = 0 if ratio >= 1 else ratio_floor(mergeable, ratio)
    assert pk.ratio_to_r(tokens, ratio, class_token=class_token) == expected


@pytest.mark.parametrize("variant", ["pitome", "pitome_text", "pitome_bsm", "tome"])
@pytest.mark.parametrize("class_token", [False, True])
@pytest.mark.parametrize("tokens, r", [(12, 0), (12, 3), (13, 6), (3, 1)])
def test_plan_is_a_partition(variant, class_token, tokens, r):
    mergeable = tokens - int(class_token)
    r = min(r, mergeable // 2)
    p = pk.plan(well_separated_metric(3, tokens, 6), r, variant=variant, class_token=class_token)
    assert p.num_out == tokens - p.r and type(p.r) is int and type(p) is pk.MergePlan
    counts = p.offsets.diff(dim=1)
    assert bool((counts >= 1).all())
    assert torch.equal(p.members.sort(dim=1).values.cpu(), torch.arange(tokens).expand(3, -1).int())
    # slot and the member lists describe the same groups
    owners = torch.repeat_interleave(torch.arange(p.num_out), counts[0].cpu().long())
    assert torch.equal(p.slot[0].cpu()[p.members[0].cpu().long()], owners.int())
    if class_token:
        assert bool((p.slot[:, 0] == 0).all()) and bool((p.heads[:, 0] == 0).all())
    if r == 0:
        assert torch.equal(p.slot.cpu(), torch.arange(tokens).expand(3, -1).int())


def test_energy_protects_isolated_tokens():
    """A token far from a tight cluster gets the lowest energy and is never merged."""
    metric = torch.zeros(1, 9, 3, device=DEVICE)
    metric[0, :8, 0] = 1.0
    metric[0, :8, 1] = torch.linspace(0, 0.1, 8)
    metric[0, 8, 2] = 1.0  # orthogonal outlier
    e = pk.energy(metric, margin=0.5)
    assert int(e.argmin()) == 8
    p = pk.plan(metric, 4, margin=0.5)
    assert int(p.offsets.diff()[0, p.slot[0, 8]]) == 1


def test_source_maps_compose_over_layers():
    metric = well_separated_metric(2, 21, 8)
    x = torch.randn(2, 21, 4, device=DEVICE)
    p1 = pk.plan(metric, 5, class_token=True)
    m2 = pk.merge(p1, metric, "mean")
    p2 = pk.plan(m2, 4, variant="pitome_bsm", class_token=True)
    source = pk.merge_source(p2, pk.merge_source(p1))
    source_map = pk.track_source(p2, pk.track_source(p1))
    assert torch.equal(pk.source_matrix(source_map, p2.num_out), source)
    assert torch.equal(source.sum(dim=1), torch.ones(2, 21, device=DEVICE))
    # sizes carried through wavg equal the number of original tokens in each group
    _, size1 = pk.merge_wavg(p1, x)
    _, size2 = pk.merge_wavg(p2, pk.merge(p1, x), size1)
    torch.testing.assert_close(size2[..., 0], source.sum(dim=2))


def test_unmerge_inverts_merge_on_group_constant_inputs():
    metric = well_separated_metric(2, 16, 8)
    p = pk.plan(metric, 5, variant="pitome_text", margin=0.2)
    y = torch.randn(2, p.num_out, 7, device=DEVICE)
    back = pk.unmerge(p, y)
    for mode in ("mean", "amax", "prune"):
        torch.testing.assert_close(pk.merge(p, back, mode), y)


def test_plan_ignores_metric_gradients():
    metric = well_separated_metric(1, 10, 4).requires_grad_()
    p = pk.plan(metric, 3)
    assert not p.slot.requires_grad
    assert not pk.energy(metric, margin=0.1).requires_grad


def test_extension_loaded_when_required():
    """CI builds with PITOME_REQUIRE_EXT=1: the C++ kernels must then be registered."""
    import os

    if os.environ.get("PITOME_REQUIRE_EXT") != "1":
        pytest.skip("PITOME_REQUIRE_EXT is not set")
    assert pk.extension_loaded()
    assert pk.available("cpu", torch.device("cpu")) is None


def _readme():
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_examples_run():
    """The README's examples, as written, run and give the shapes they promise."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert scope["x_merged"].shape == (8, 178, 768) and scope["size"].shape == (8, 178, 1)
    assert scope["x_full"].shape == (8, 197, 768) and scope["e"].shape == (8, 196)
    assert scope["src"].shape == (8, 178, 197) and scope["smap"].shape == (8, 197)


def test_readme_model_example_runs(monkeypatch):
    """The README's transformers example, on a small random ViT/16 at 224 px instead of the
    downloaded weights."""
    import re

    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_labels=7)
    monkeypatch.setattr(transformers.ViTForImageClassification, "from_pretrained",
                        classmethod(lambda cls, name: cls(config).eval()))
    block = re.findall(r"```python\n(.*?)```", _readme(), re.S)[1]
    scope = {"images": torch.randn(2, 3, 224, 224)}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102
    assert scope["logits"].shape == (2, 7)
    assert not hasattr(scope["model"], "pitome_info")  # removed at the end
    assert "timm" not in block


def test_vit_block_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "vit_block.py"
    spec = importlib.util.spec_from_file_location("vit_block", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tokens, size = example.run(batch=2)
    assert tokens.shape == (2, 60, 384)
    assert torch.equal(size.sum(dim=1), torch.full((2, 1), 197.0))  # every token accounted for


def test_readme_lists_exactly_the_registered_backends():
    import re

    section = _readme().split("## Backends", 1)[1].split("##", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert listed == [b.name for b in pk.backends.REGISTRY]
    assert len(_readme().splitlines()) < 200
