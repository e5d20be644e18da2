"""patch.timm on small random timm VisionTransformers: class, register and distillation
tokens, dynamic image size, against the unpatched model and torch.compile.

timm imports torchvision, which the CPU torch wheel of the default lane lacks: these tests
run in CI's CUDA-torch lane (``.ci/cuda-lane``), where torch and torchvision match.
"""

import math

import pytest
import torch

timm = pytest.importorskip("timm", reason="timm needs a matching torchvision; run in .ci/cuda-lane")

import pitome_kernels as pk  # noqa: E402
from pitome_kernels import patch  # noqa: E402


def vit(**kwargs):
    torch.manual_seed(0)
    kwargs = {"img_size": 64, "depth": 4, **kwargs}
    return timm.create_model(kwargs.pop("name", "vit_tiny_patch16_224"), pretrained=False, **kwargs).eval()


def images(batch=2, height=64, width=64):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def official_counts(tokens, prefix, layers, ratio):
    counts = [tokens]
    for _ in range(layers):
        mergeable = tokens - prefix
        tokens -= min(math.floor(mergeable - mergeable * ratio), mergeable // 2)
        counts.append(tokens)
    return counts


MODELS = {
    "class token": {},
    "registers": {"reg_tokens": 4},
    "distilled": {"name": "deit_tiny_distilled_patch16_224"},
    "no class token": {"class_token": False, "global_pool": "avg"},
}


@pytest.mark.parametrize("kind", MODELS)
def test_keep_ratio_one_and_remove_leave_the_model_unchanged(kind):
    model = vit(**MODELS[kind])
    with torch.no_grad():
        before = model(images())
        patch.timm(model, ratio=1.0)
        assert torch.equal(model(images()), before)
        patch.remove(model)
        assert torch.equal(model(images()), before)


@pytest.mark.parametrize("kind", MODELS)
def test_counts_are_official_and_prefix_tokens_never_merge(kind):
    model = vit(**MODELS[kind])
    prefix = model.num_prefix_tokens
    patch.timm(model, ratio=0.8, trace_source=True)
    with torch.no_grad():
        features = model.forward_features(images())
    info = model.pitome_info
    # the paper's count keeps ratio of the tokens after the class token; the other prefix
    # tokens are set aside, so they count as protected too
    assert info.tokens == official_counts(16 + prefix, prefix, 4, 0.8)
    assert features.shape[1] == info.tokens[-1]
    assert torch.equal(info.source[:, :prefix], torch.arange(prefix).expand(2, -1).to(info.source.dtype))
    assert torch.equal(pk.source_matrix(info.source, info.tokens[-1]).sum(-1, keepdim=True), info.size)


def test_dynamic_image_size():
    model = vit(dynamic_img_size=True)
    patch.timm(model, ratio=0.9)
    with torch.no_grad():
        out = model.forward_features(images(2, 80, 48))
    assert model.pitome_info.tokens[0] == 1 + 5 * 3
    assert out.shape[1] == model.pitome_info.tokens[-1] < 16


def test_rows_of_a_batch_equal_the_rows_alone():
    model = vit()
    patch.timm(model, ratio=0.8)
    with torch.no_grad():
        whole = model(images(3))
        first = model(images(3)[:1])
    torch.testing.assert_close(whole[:1], first, atol=1e-5, rtol=1e-5)


def test_compiled_fullgraph_equals_eager():
    model = vit()
    patch.timm(model, ratio=0.8)
    with torch.no_grad():
        eager = model(images())
        compiled = torch.compile(model, fullgraph=True)(images())
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


def test_tome_and_bad_input():
    model = vit()
    patch.timm(model, r=3, variant="tome")
    with torch.no_grad():
        model(images())
    assert model.pitome_info.tokens == [17, 14, 11, 8, 5]
    patch.remove(model)
    with pytest.raises(TypeError, match="VisionTransformer"):
        patch.timm(torch.nn.Linear(2, 2), ratio=0.9)
    with pytest.raises(ValueError, match="ratio"):
        patch.timm(model, ratio=0.0)


def test_readme_timm_example_runs(monkeypatch):
    """The README's timm lines, with random weights instead of downloaded ones."""
    import re
    from pathlib import Path

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: create(name, pretrained=False, **kw))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "import timm" in b)
    scope = {"patch": patch}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102
    with torch.no_grad():
        scope["vit"](images(1, 224, 224))
    assert scope["vit"].pitome_info.source.shape == (1, 197)
    assert scope["vit"].pitome_info.tokens[-1] == 60
