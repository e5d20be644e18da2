"""Schedules: keep ratios, explicit r, ToMe's (r, inflection), the paper's presets."""

import math

import pytest

from pitome_kernels import schedule


def test_vision_preset_is_the_papers_setting():
    layers = schedule.preset("vision", 12, ratio=0.9)
    assert [s.variant for s in layers] == ["pitome_bsm"] * 6 + ["pitome"] * 6
    assert [s.margin for s in layers] == pytest.approx([0.75 * (1 - i / 12) for i in range(12)])
    assert all(s.ratio == 0.9 for s in layers)
    odd = schedule.preset("vision", 7, ratio=0.9)
    assert [s.variant for s in odd].count("pitome_bsm") == math.ceil(7 / 2)


def test_clip_and_text_presets():
    clip = schedule.preset("clip_vision", 12, ratio=0.9)
    assert [s.margin for s in clip] == pytest.approx([0.9 * (1 - i / 12) for i in range(12)])
    text = schedule.preset("text", 6, ratio=0.8)
    assert [s.ratio for s in text] == [0.8, 0.8, 0.8, 1.0, 1.0, 1.0]
    assert {s.variant for s in text} == {"pitome_text"}
    assert [s.margin for s in text] == pytest.approx([0.9 - 0.25 * i / 6 for i in range(6)])
    assert [s.merges for s in text] == [True, True, True, False, False, False]


def test_variant_and_margin_overrides():
    layers = schedule.preset("vision", 4, ratio=0.9, variant="tome", margin=0.3)
    assert {(s.variant, s.margin) for s in layers} == {("tome", 0.3)}


def test_tokens_removed_follows_the_official_formula():
    layer = schedule.LayerSchedule(ratio=0.9)
    tokens = 197
    for _ in range(12):
        r = layer.tokens_removed(tokens, protected=1)
        assert r == math.floor((tokens - 1) - (tokens - 1) * 0.9)
        tokens -= r
    assert tokens == 60
    assert schedule.LayerSchedule(r=100).tokens_removed(21, protected=1) == 10  # 2r <= T'


def test_tome_inflection_schedule():
    flat = schedule.tome_r(12, 8)
    assert [s.r for s in flat] == [8] * 12
    tilted = schedule.tome_r(12, 8, -0.5)
    counts = [s.r for s in tilted]
    assert counts[0] > counts[-1] and counts == sorted(counts, reverse=True)
    assert abs(sum(counts) / 12 - 8) <= 1
    assert [s.r for s in schedule.preset("vision", 12, r=(8, -0.5))] == counts


def test_explicit_r_lists():
    layers = schedule.fixed_r([4, 0, 2])
    assert [s.r for s in layers] == [4, 0, 2]
    assert [s.merges for s in layers] == [True, False, True]
    text = schedule.preset("text", 5, r=3)
    assert [s.r for s in text] == [3, 3, 3, 0, 0]


@pytest.mark.parametrize("call, error, name", [
    (lambda: schedule.keep_ratio(4, 1.5), ValueError, "ratio"),
    (lambda: schedule.keep_ratio(4, "0.9"), TypeError, "ratio"),
    (lambda: schedule.keep_ratio(4, [0.9, 0.9]), ValueError, "ratio"),
    (lambda: schedule.keep_ratio(0, 0.9), ValueError, "num_layers"),
    (lambda: schedule.fixed_r([1, -1]), ValueError, "r[1]"),
    (lambda: schedule.fixed_r(3), TypeError, "num_layers"),
    (lambda: schedule.tome_r(4, 8, 2.0), ValueError, "inflection"),
    (lambda: schedule.preset("audio", 4, ratio=0.9), ValueError, "family"),
    (lambda: schedule.preset("vision", 4), TypeError, "ratio"),
    (lambda: schedule.preset("vision", 4, ratio=0.9, r=2), TypeError, "ratio"),
    (lambda: schedule.preset("vision", 4, ratio=0.9, variant="fast"), ValueError, "variant"),
    (lambda: schedule.keep_ratio(4, 0.9, layers=[7]), ValueError, "layers"),
])
def test_bad_schedules_name_the_argument(call, error, name):
    with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
        call()
