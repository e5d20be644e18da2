"""End-to-end benchmark: a whole model, unmerged and with each token merging implementation.

Configurations, all at the same keep ratio (so both ToMe rows remove PiToMe's token counts):

- ``unmerged``: the model as built;
- ``pitome``: ``patch.transformers(model, ratio=R)`` on this package's kernels;
- ``tome``: the same with ``variant="tome"``, on this package's kernels;
- ``tome_code``: ToMe as ToMe's own code writes it (``tome_style.ToMeStyleMerger``);
- ``pitome_paper``: PiToMe as the paper's code writes it (``paper_merger.PaperStyleMerger``).

Models are built from their configs with random weights (nothing is downloaded). Every
configuration is its own copy of the module tree sharing the one set of weights, and all are
timed in one process by ``runner.time_all``, in alternating rounds under
``torch.inference_mode()``: drift and noise land on every configuration alike, and each
ratio is the median of the per-round ratios. FLOPs are those ``torch.utils.flop_counter``
counts for one forward (matmuls, attention, convolutions). The counter cannot see inside
this package's fused kernels, so the ``pitome`` and ``tome`` rows report the FLOPs of the
same algorithm on its plain PyTorch code (the paper-style and ToMe-code rows).
"""

import copy
import importlib.util
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import patch
from ..patch.merger import KernelMerger
from . import runner
from .paper_merger import PaperStyleMerger
from .tome_style import ToMeStyleMerger

FORMAT = "pitome_kernels.models/1"
SEQUENCE_LENGTH = 128
TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
TINY_IMAGE, TINY_PATCH, TINY_SEQUENCE = 32, 4, 16


@dataclass(frozen=True)
class ModelSpec:
    """How to build one benchmarked model and its inputs.

    ``build(tiny)`` returns the model with random weights (``tiny``: a 2-layer, 64-wide
    version for tests); ``inputs(model, batch, tiny, generator)`` the forward's keyword arguments
    on the CPU in float32 (ids stay integer); ``patch_fn`` is ``patch.transformers`` or
    ``patch.timm``; ``unit`` names what one batch element is.
    """

    name: str
    description: str
    build: Callable
    inputs: Callable
    unit: str
    patch_fn: Callable = patch.transformers


def _transformers():
    import transformers

    return transformers


def _vit(tiny: bool, **sizes):
    t = _transformers()
    config = t.ViTConfig(**TINY, image_size=TINY_IMAGE, patch_size=TINY_PATCH) if tiny else t.ViTConfig(**sizes)
    return t.ViTModel(config)


def _clip_vision(tiny: bool):
    t = _transformers()
    if tiny:
        return t.CLIPVisionModel(t.CLIPVisionConfig(**TINY, image_size=TINY_IMAGE, patch_size=TINY_PATCH))
    return t.CLIPVisionModel(t.CLIPVisionConfig(patch_size=16))


def _bert(tiny: bool):
    t = _transformers()
    return t.BertModel(t.BertConfig(**TINY) if tiny else t.BertConfig())


def _timm_vit(tiny: bool):
    import timm

    if tiny:
        return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=TINY_IMAGE,
                                 patch_size=TINY_PATCH, embed_dim=64, depth=2, num_heads=4)
    return timm.create_model("vit_base_patch16_224", pretrained=False)


def _images(model, batch: int, tiny: bool, generator, keyword: str = "pixel_values") -> dict:
    side = TINY_IMAGE if tiny else 224
    return {keyword: torch.randn(batch, 3, side, side, generator=generator)}


def _sequences(model, batch: int, tiny: bool, generator) -> dict:
    length = TINY_SEQUENCE if tiny else SEQUENCE_LENGTH
    return {"input_ids": torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)}


SPECS = {spec.name: spec for spec in (
    ModelSpec("vit_b16", "transformers ViTModel, ViT-B/16 224 px", _vit, _images, "images"),
    ModelSpec("vit_s16", "transformers ViTModel, ViT-S/16 224 px",
              lambda tiny: _vit(tiny, hidden_size=384, num_attention_heads=6, intermediate_size=1536),
              _images, "images"),
    ModelSpec("bert_base", f"transformers BertModel, BERT-base, {SEQUENCE_LENGTH} tokens", _bert, _sequences,
              "sequences"),
    ModelSpec("clip_b16_vision", "transformers CLIPVisionModel, ViT-B/16 224 px", _clip_vision, _images, "images"),
    ModelSpec("timm_vit_b16", "timm vit_base_patch16_224", _timm_vit,
              lambda model, batch, tiny, generator: _images(model, batch, tiny, generator, "x"), "images",
              patch_fn=patch.timm),
)}


def names() -> list[str]:
    """The models this Python can build (``timm_vit_b16`` only where timm is installed)."""
    return [n for n in SPECS if n != "timm_vit_b16" or importlib.util.find_spec("timm") is not None]


def configurations(backend: str = "auto") -> dict:
    """``{name: (what it runs, patch keyword arguments or None for unmerged)}``."""
    return {
        "unmerged": ("the model as built", None),
        "pitome": ("PiToMe, pitome_kernels", {"merger": KernelMerger(backend)}),
        "tome": ("ToMe, pitome_kernels", {"variant": "tome", "merger": KernelMerger(backend)}),
        "tome_code": ("ToMe, ToMe's code", {"variant": "tome", "merger": ToMeStyleMerger()}),
        "pitome_paper": ("PiToMe, paper-style code", {"merger": PaperStyleMerger()}),
    }


@dataclass
class ModelRow:
    """One configuration of one model: throughput (items per second, from the median round
    time) and its ratios (median of per-round time ratios: above 1 = faster than that one),
    tokens entering every layer and out of the last, FLOPs of one forward."""

    model: str
    config: str
    what: str
    input_shape: str
    batch: int
    ratio: float
    dtype: str
    device: str
    threads: int
    unit: str
    timing: runner.Timing = field(repr=False)
    items_per_s: float = 0.0
    vs_unmerged: float = 0.0
    vs_tome_code: float = 0.0
    vs_paper: float = 0.0
    tokens: list = field(default_factory=list)
    flops: int = 0
    flops_vs_unmerged: float = 0.0
    tiny: bool = False

    @property
    def tokens_out(self) -> int:
        return self.tokens[-1]


def _sibling(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model``'s module tree sharing its parameters and buffers: each configuration
    patches its own layers while every one reads the same weights."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo=shared)


def model_rows(name: str, batch: int = 8, ratio: float = 0.9, *, dtype=torch.float32, device="cpu",
               backend: str = "auto", min_run_time: float = 0.3, tiny: bool = False) -> list[ModelRow]:
    """Time every configuration of model ``name`` on ``batch`` inputs keeping ``ratio`` of the
    tokens in each merging layer; one row per configuration, ``unmerged`` first."""
    if name not in SPECS:
        raise ValueError(f"model must be one of {names()}, got {name!r}")
    if name not in names():
        raise ValueError(f"model {name!r} needs timm, which is not installed")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1] (the fraction of tokens kept), got {ratio!r}")
    spec, device = SPECS[name], torch.device(device)
    torch.manual_seed(0)
    base = spec.build(tiny).eval().to(device, dtype)
    inputs = spec.inputs(base, batch, tiny, torch.Generator().manual_seed(0))
    inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}
    configs = configurations(backend)
    models = {}
    for config, (_, kwargs) in configs.items():
        models[config] = _sibling(base)
        if kwargs is not None:
            spec.patch_fn(models[config], ratio=ratio, **kwargs)

    with torch.inference_mode():
        tokens, flops = {}, {}
        for config, model in models.items():
            with FlopCounterMode(display=False) as counter:
                model(**inputs)
            flops[config] = counter.get_total_flops()
            info = getattr(model, "pitome_info", None)
            if info is not None:
                tokens[config] = list(info.tokens)
        tokens["unmerged"] = tokens["pitome"][:1]  # what enters the first layer, unchanged to the last
        # the counter cannot see inside the fused kernels: count each algorithm on its PyTorch code
        flops["pitome"], flops["tome"] = flops["pitome_paper"], flops["tome_code"]
        fns = {config: (lambda m=model: m(**inputs)) for config, model in models.items()}
        timings = runner.time_all(fns, device, min_run_time)

    shape = " ".join(f"{k}{list(v.shape)}" for k, v in inputs.items())
    rows = []
    for config, (what, _) in configs.items():
        t = timings[config]
        rows.append(ModelRow(
            name, config, what, shape, batch, float(ratio), str(dtype).replace("torch.", ""), str(device),
            torch.get_num_threads(), spec.unit, t, items_per_s=batch / t.median_us * 1e6,
            vs_unmerged=runner._ratio(timings["unmerged"], t), vs_tome_code=runner._ratio(timings["tome_code"], t),
            vs_paper=runner._ratio(timings["pitome_paper"], t), tokens=tokens[config], flops=flops[config],
            flops_vs_unmerged=flops[config] / flops["unmerged"] if flops["unmerged"] else float("nan"), tiny=tiny))
    return rows


def print_table(rows: list[ModelRow]) -> None:
    """One rich table per model and batch."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for (model, batch), group in itertools.groupby(rows, key=lambda r: (r.model, r.batch)):
        group = list(group)
        first = group[0]
        what = "a tiny 2-layer test model" if first.tiny else SPECS[model].description
        table = Table(title=f"pitome_kernels: {model} end to end ({what}), keep ratio {first.ratio}",
                      caption=f"input {first.input_shape}, batch {batch}, {first.dtype}, {first.threads} threads, "
                              f"{first.device}; ratios: median of per-round ratios, above 1 = faster; FLOPs: "
                              "torch.utils.flop_counter, each algorithm counted on its PyTorch code")
        numeric = ("tokens out", f"{first.unit}/s", "q20-q80 ms", "vs unmerged", "vs ToMe code", "vs paper code",
                   "FLOPs vs unmerged")
        for col in ("config", "code") + numeric:
            table.add_column(col, justify="right" if col in numeric else "left")
        for row in group:
            table.add_row(row.config, row.what, str(row.tokens_out), f"{row.items_per_s:,.1f}",
                          f"{row.timing.q20_us / 1e3:,.2f}-{row.timing.q80_us / 1e3:,.2f}", f"{row.vs_unmerged:.3f}x",
                          f"{row.vs_tome_code:.3f}x", f"{row.vs_paper:.3f}x", f"{row.flops_vs_unmerged:.3f}")
        console.print(table)


def plot(rows: list[ModelRow], path: str) -> None:
    """Bar chart of the throughput of every configuration, one panel per model and batch,
    each bar labelled with its ratio to the unmerged model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [list(g) for _, g in itertools.groupby(rows, key=lambda r: (r.model, r.batch))]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        first = group[0]
        bars = ax.bar(range(len(group)), [r.items_per_s for r in group], color="tab:blue")
        for bar, row in zip(bars, group):
            ax.annotate(f"{row.vs_unmerged:.2f}x\n{row.tokens_out} tok", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(group)), [r.config for r in group], rotation=30, fontsize=8)
        ax.set_ylabel(f"{first.unit}/s")
        ax.margins(y=0.2)
        ax.set_title(f"{first.model}, batch {first.batch}, keep {first.ratio}\n{first.dtype}, {first.device}, "
                     f"{first.threads} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def row_record(row: ModelRow) -> dict:
    record = asdict(row)
    timing = record.pop("timing")
    record.update(median_ms=timing["median_us"] / 1e3, q20_ms=timing["q20_us"] / 1e3,
                  q80_ms=timing["q80_us"] / 1e3, tokens_out=row.tokens_out)
    return record


def write(rows: list[ModelRow], path: str) -> dict:
    """Write ``rows`` and the machine to ``path`` as JSON; returns what was written."""
    from .baseline import machine

    doc = {"format": FORMAT, "machine": machine(), "rows": [row_record(r) for r in rows]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc
