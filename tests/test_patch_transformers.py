"""patch.transformers on small random models of every supported family, against the
unpatched model, an independent forward written from SPEC.md, and torch.compile."""

import math

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (make install)")

import pitome_kernels as pk  # noqa: E402
from pitome_kernels import patch, schedule  # noqa: E402

SMALL = dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128)


def vit(layers=4, image=64, patch_size=8):
    config = transformers.ViTConfig(**{**SMALL, "num_hidden_layers": layers}, image_size=image, patch_size=patch_size)
    return transformers.ViTModel(config, add_pooling_layer=False).eval()


def dinov2():
    config = transformers.Dinov2Config(**{k: v for k, v in SMALL.items() if k != "intermediate_size"},
                                       image_size=64, patch_size=8)
    return transformers.Dinov2Model(config).eval()


def clip_vision():
    return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**SMALL, image_size=64, patch_size=8)).eval()


def clip_text():
    # eos_token_id=2: the pooler reads the position of the largest input id
    return transformers.CLIPTextModel(transformers.CLIPTextConfig(**SMALL, eos_token_id=2)).eval()


def bert():
    return transformers.BertModel(transformers.BertConfig(**SMALL)).eval()


VISION = {"vit": vit, "dinov2": dinov2, "clip_vision": clip_vision}
TEXT = {"bert": bert, "clip_text": clip_text}


def images(batch=2, size=64, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def text_batch(batch=3, tokens=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 900, (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    for row in range(1, batch):
        length = tokens - 4 * row
        mask[row, length:] = 0
        ids[row, length - 1] = 999                      # the EOS: the largest id
        ids[row, length:] = 0
    ids[0, -1] = 999
    return ids, mask


def run(model, inputs):
    with torch.no_grad():
        if isinstance(inputs, tuple):
            return model(input_ids=inputs[0], attention_mask=inputs[1])
        return model(pixel_values=inputs)


def inputs_for(name):
    return text_batch() if name in TEXT else images()


def patched(name, **kwargs):
    """A seeded small model of family ``name`` patched with ``kwargs``, and its inputs."""
    torch.manual_seed(0)
    model = {**VISION, **TEXT}[name]()
    patch.transformers(model, **kwargs)
    return model, inputs_for(name)


@pytest.mark.parametrize("name", [*VISION, *TEXT])
def test_keep_ratio_one_and_remove_leave_the_model_unchanged(name):
    torch.manual_seed(0)
    model = {**VISION, **TEXT}[name]()
    inputs = inputs_for(name)
    before = run(model, inputs).last_hidden_state
    patch.transformers(model, ratio=1.0)
    assert torch.equal(run(model, inputs).last_hidden_state, before)
    patch.remove(model)
    patch.transformers(model, ratio=0.8)
    assert run(model, inputs).last_hidden_state.shape != before.shape or name in TEXT
    patch.remove(model)
    assert torch.equal(run(model, inputs).last_hidden_state, before)
    assert not hasattr(model, "pitome_info")


def official_counts(tokens, layers, ratio, merging_layers):
    counts = [tokens]
    for layer in range(layers):
        if layer in merging_layers:
            mergeable = tokens - 1
            tokens -= min(math.floor(mergeable - mergeable * ratio), mergeable // 2)
        counts.append(tokens)
    return counts


@pytest.mark.parametrize("name", [*VISION, *TEXT])
@pytest.mark.parametrize("ratio", [0.9, 0.75])
def test_per_layer_token_counts_are_the_official_ones(name, ratio):
    torch.manual_seed(0)
    model = {**VISION, **TEXT}[name]()
    patch.transformers(model, ratio=ratio)
    inputs = inputs_for(name)
    out = run(model, inputs).last_hidden_state
    tokens = inputs[0].shape[1] if name in TEXT else 65
    merging = range(3) if name in TEXT else range(4)
    assert model.pitome_info.tokens == official_counts(tokens, 4, ratio, merging)
    # text models give every input position back; vision models the merged tokens
    assert out.shape[1] == (tokens if name in TEXT else model.pitome_info.tokens[-1])


def test_vit_b16_counts_at_224_pixels():
    model = vit(layers=12, image=224, patch_size=16)
    patch.transformers(model, ratio=0.9)
    run(model, images(1, 224))
    assert model.pitome_info.tokens == official_counts(197, 12, 0.9, range(12))
    assert model.pitome_info.tokens[-1] == 60


def spec_vit_forward(model, pixels, ratio):
    """ViT with PiToMe written from SPEC.md: reference ops, explicit softmax attention."""
    layers = model.layers
    plan_schedule = schedule.preset("vision", len(layers), ratio=ratio)
    x = model.embeddings(pixels)
    size = None
    for layer, step in zip(layers, plan_schedule):
        attn = layer.attention
        h = layer.layernorm_before(x)
        b, t, d = h.shape
        heads = attn.num_attention_heads
        q, k, v = (proj(h).view(b, t, heads, -1).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        logits = q @ k.transpose(-1, -2) * attn.scaling
        if size is not None:
            logits = logits + size.log().view(b, 1, 1, t)
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + attn.o_proj(out)
        r = math.floor((t - 1) - (t - 1) * ratio)
        plan = pk.plan(k.mean(1), r, variant=step.variant, margin=step.margin, class_token=True, backend="reference")
        x, size = pk.merge_wavg(plan, x, size, backend="reference")
        x = x + layer.mlp(layer.layernorm_after(x))
    return model.layernorm(x), size


def test_vit_equals_a_forward_written_from_the_spec():
    torch.manual_seed(0)
    model = vit()
    pixels = images(3)
    with torch.no_grad():
        expected, expected_size = spec_vit_forward(model, pixels, 0.9)
    patch.transformers(model, ratio=0.9)
    got = run(model, pixels).last_hidden_state
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(model.pitome_info.size, expected_size)


@pytest.mark.parametrize("name", [*VISION, *TEXT])
def test_rows_of_a_batch_equal_the_rows_alone(name):
    model, inputs = patched(name, ratio=0.8)
    whole = run(model, inputs).last_hidden_state
    first = run(model, tuple(t[:1] for t in inputs) if name in TEXT else inputs[:1]).last_hidden_state
    torch.testing.assert_close(whole[:1], first, atol=1e-5, rtol=1e-5)


def test_sources_sizes_and_mask_agree():
    torch.manual_seed(0)
    model = bert()
    patch.transformers(model, ratio=0.7, trace_source=True)
    ids, mask = text_batch()
    out = run(model, (ids, mask)).last_hidden_state
    info = model.pitome_info
    num_out = info.tokens[-1]
    members = pk.source_matrix(info.source, num_out)                         # [B, T_out, T0]
    assert torch.equal(members.sum(-1, keepdim=True), info.size)
    assert torch.equal(info.attention_mask, (members * mask[:, None, :]).amax(-1).long())
    assert torch.isfinite(out).all()
    # every input position reads its merged token
    merged = run_merged_text(model, ids, mask)
    assert torch.equal(out, merged.gather(1, info.source.long()[..., None].expand_as(out)))


def run_merged_text(model, ids, mask):
    """The same forward with the merged tokens, not copied back."""
    patch.remove(model)
    patch.transformers(model, ratio=0.7, trace_source=True, unmerge_output=False)
    out = run(model, (ids, mask)).last_hidden_state
    patch.remove(model)
    patch.transformers(model, ratio=0.7, trace_source=True)
    run(model, (ids, mask))
    return out


def test_padding_never_enters_a_real_token():
    torch.manual_seed(0)
    model = bert()
    patch.transformers(model, ratio=0.7, trace_source=True, unmerge_output=False)
    ids, mask = text_batch()
    out = run(model, (ids, mask)).last_hidden_state
    info = model.pitome_info
    # a padding-only group is masked out of attention and stays finite
    assert torch.isfinite(out).all()
    assert (info.attention_mask.sum(1) < info.tokens[-1]).any(), "the padded rows keep padding groups"


def test_clip_text_pools_at_the_eos_token():
    torch.manual_seed(0)
    model = clip_text()
    ids, mask = text_batch()
    unmerged = run(model, (ids, mask))
    patch.transformers(model, ratio=0.7)
    out = run(model, (ids, mask))
    eos = ids.argmax(-1)
    rows = torch.arange(ids.shape[0])
    assert model.pitome_info.tokens[-1] < ids.shape[1]
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[rows, eos])
    assert out.pooler_output.shape == unmerged.pooler_output.shape
    assert not torch.allclose(out.pooler_output, unmerged.pooler_output)


def test_causal_mask_of_merged_tokens():
    """After a merge, a CLIP text token attends to the tokens whose latest member is not
    later than its own latest member, and padding groups are masked out."""
    torch.manual_seed(0)
    model = clip_text()
    patch.transformers(model, ratio=0.7, trace_source=True)
    ids, mask = text_batch()
    run(model, (ids, mask))
    state = model._pitome_patch.state
    info = model.pitome_info
    members = pk.source_matrix(info.source, info.tokens[-1])                 # [B, T_out, T0]
    latest = (members * torch.arange(ids.shape[1])).amax(-1)                 # [B, T_out]
    torch.testing.assert_close(state.positions, latest)
    x = torch.zeros(ids.shape[0], info.tokens[-1], 8)
    bias = state.attention_mask(x, None)
    allowed = bias[:, 0] > torch.finfo(x.dtype).min / 2                      # [B, T_q, T_k]
    expected = (latest[:, None, :] <= latest[:, :, None]) & info.attention_mask.bool()[:, None, :]
    assert torch.equal(allowed, expected)


def test_tome_variant_runs_at_the_same_counts():
    torch.manual_seed(0)
    model = vit()
    patch.transformers(model, ratio=0.9)
    run(model, images())
    counts = model.pitome_info.tokens
    patch.remove(model)
    patch.transformers(model, ratio=0.9, variant="tome")
    out = run(model, images()).last_hidden_state
    assert model.pitome_info.tokens == counts and out.shape[1] == counts[-1]


def test_gradients_flow_through_a_patched_model():
    torch.manual_seed(0)
    model = vit().train()
    patch.transformers(model, ratio=0.8)
    model(pixel_values=images()).last_hidden_state.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing and all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.embeddings.cls_token.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["vit", "bert"])
def test_compiled_fullgraph_equals_eager(name):
    model, inputs = patched(name, ratio=0.8)
    eager = run(model, inputs).last_hidden_state
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        got = compiled(*inputs) if name in TEXT else compiled(inputs)
    torch.testing.assert_close(got.last_hidden_state, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: patch.transformers(m, ratio=1.5), ValueError, "ratio"),
    (lambda m: patch.transformers(m), TypeError, "ratio"),
    (lambda m: patch.transformers(m, ratio=0.9, r=4), TypeError, "ratio"),
    (lambda m: patch.transformers(m, ratio=0.9, variant="fast"), ValueError, "variant"),
    (lambda m: patch.transformers(m, ratio=0.9, prop_attn="yes"), TypeError, "prop_attn"),
    (lambda m: patch.transformers(m, ratio=0.9, trace_source=1), TypeError, "trace_source"),
    (lambda m: patch.transformers(m, r=[1, 2]), ValueError, "r has 2 entries"),
    (lambda m: patch.transformers(torch.nn.Linear(2, 2), ratio=0.9), TypeError, "model"),
    (lambda m: patch.remove(m), ValueError, "not patched"),
])
def test_bad_arguments_name_themselves(call, error, match):
    with pytest.raises(error, match=match):
        call(vit())


def test_patching_twice_and_unsupported_models_are_refused():
    model = vit()
    patch.transformers(model, ratio=0.9)
    with pytest.raises(ValueError, match="already patched"):
        patch.transformers(model, ratio=0.9)
    gpt = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2))
    with pytest.raises(NotImplementedError, match="supported layers"):
        patch.transformers(gpt, ratio=0.9)


def test_image_classification_head_reads_the_class_token():
    torch.manual_seed(0)
    config = transformers.ViTConfig(**SMALL, image_size=64, patch_size=8, num_labels=5)
    model = transformers.ViTForImageClassification(config).eval()
    patch.transformers(model, ratio=0.8)
    with torch.no_grad():
        logits = model(pixel_values=images()).logits
        hidden = model.vit(pixel_values=images()).last_hidden_state
    assert logits.shape == (2, 5) and model.pitome_info.tokens[-1] < 65
    torch.testing.assert_close(logits, model.classifier(hidden[:, 0]))


def test_gradient_checkpointing_is_refused():
    model = vit().train()
    model.gradient_checkpointing_enable()
    with pytest.raises(NotImplementedError, match="gradient checkpointing"):
        patch.transformers(model, ratio=0.9)


def test_two_tower_models_are_patched_one_tower_at_a_time():
    tower = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    config = transformers.CLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32, "patch_size": 8})
    model = transformers.CLIPModel(config).eval()
    with pytest.raises(NotImplementedError, match="several towers"):
        patch.transformers(model, ratio=0.9)
    patch.transformers(model.vision_model, ratio=0.8)
    patch.transformers(model.text_model, ratio=0.8)
    ids, mask = text_batch()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=images(3, 32))
    assert out.logits_per_image.shape == (3, 3)
    assert model.vision_model.pitome_info.tokens == official_counts(17, 2, 0.8, range(2))
    assert model.text_model.pitome_info.tokens[-1] < ids.shape[1]


def test_explicit_r_tome_schedules_and_custom_schedules():
    torch.manual_seed(0)
    model = vit()
    patch.transformers(model, r=[6, 0, 5, 4])
    run(model, images())
    assert model.pitome_info.tokens == [65, 59, 59, 54, 50]
    patch.remove(model)
    patch.transformers(model, r=(6, -1.0), variant="tome")            # ToMe's linear schedule: 12 -> 0
    run(model, images())
    removed = [a - b for a, b in zip(model.pitome_info.tokens, model.pitome_info.tokens[1:])]
    assert removed == [s.r for s in schedule.tome_r(4, 6, -1.0)] and removed[0] > removed[-1]
    patch.remove(model)
    custom = schedule.keep_ratio(4, [0.5, 1.0, 1.0, 0.9], margins=0.3, variants="pitome")
    patch.transformers(model, schedule=custom)
    run(model, images())
    assert model.pitome_info.tokens == official_counts(65, 4, 0.5, [0])[:2] + [33, 33, 30]
    with pytest.raises(ValueError, match="schedule has 2 layers"):
        patch.transformers(vit(), schedule=custom[:2])


hypothesis = pytest.importorskip("hypothesis")


@hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
@hypothesis.given(layers=hypothesis.strategies.integers(1, 3), side=hypothesis.strategies.sampled_from([16, 24, 40]),
                  batch=hypothesis.strategies.integers(1, 3), ratio=hypothesis.strategies.floats(0.3, 1.0),
                  variant=hypothesis.strategies.sampled_from([None, "tome", "pitome"]),
                  trace=hypothesis.strategies.booleans())
def test_any_small_vit_keeps_count_size_and_source_consistent(layers, side, batch, ratio, variant, trace):
    torch.manual_seed(0)
    model = vit(layers=layers, image=side)
    patch.transformers(model, ratio=ratio, variant=variant, trace_source=trace)
    tokens = 1 + (side // 8) ** 2
    out = run(model, images(batch, side)).last_hidden_state
    info = model.pitome_info
    assert info.tokens == official_counts(tokens, layers, ratio, range(layers))
    assert out.shape == (batch, info.tokens[-1], 64) and torch.isfinite(out).all()
    if info.tokens[-1] < tokens:
        assert torch.equal(info.size.sum(1), torch.full((batch, 1), float(tokens)))
    if trace and info.source is not None:
        assert torch.equal(pk.source_matrix(info.source, info.tokens[-1]).sum(-1, keepdim=True), info.size)
        assert torch.equal(info.source[:, 0], torch.zeros(batch, dtype=info.source.dtype))  # class token


def test_transformers_4_is_refused(monkeypatch):
    import sys

    model = vit()
    # transformers may swap the module in sys.modules while it loads lazily: patch the live one
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "4.57.6")
    with pytest.raises(NotImplementedError, match="transformers 5.x, found 4.57.6"):
        patch.transformers(model, ratio=0.9)
