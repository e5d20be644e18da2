"""The calls whose launches the compile check compiles: every op of the Triton backend on
the shapes of the models people merge, through the same host code as a real call.

Metric widths ``C`` are the head widths of ViT-S/B/L (64), ViT-H (80) and BERT (64), and a
full hidden state (768); merged widths ``K`` are the hidden sizes of ViT-S/B/L/H and BERT
(384, 768, 1024, 1280), the token sizes (1) and a source map (K = T). Token counts run
over every power of two from 2 to 4096 and its neighbours (where the tile sizes change),
and the usual ViT/BERT sequence lengths; every dtype, variant, mode and flag.
"""

import torch

from .backward import merge_backward, merge_wavg_backward, unmerge
from .energy import energy
from .merge import merge, merge_wavg
from .plan import plan

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")
MERGE_MODES = ("sum", "mean", "amax", "prune")
METRIC_WIDTHS = (64, 80, 768)
MERGED_WIDTHS = (1, 384, 768, 1024, 1280)
MODEL_TOKENS = (50, 128, 197, 257, 384, 512, 577, 785, 1025)


def token_counts(largest: int = 4096):
    """2..largest: every power of two, its neighbours, and the models' sequence lengths."""
    counts = {t for k in range(1, 13) for t in (2**k - 1, 2**k, 2**k + 1, 2**k + 2)} | set(MODEL_TOKENS)
    return sorted(t for t in counts if 2 <= t <= largest)


def _plans(tokens, channels, dtype):
    """Every variant and flag, with r at 1, T'/4 and T'/2; returns one plan of each kind."""
    metric = torch.zeros(1, tokens, channels, dtype=dtype)
    made = []
    for variant in VARIANTS:
        for class_token in (False, True):
            n = tokens - int(class_token)
            for r in sorted({1, n // 4, n // 2} - {0}):
                distill = variant == "tome" and class_token and tokens > 2
                made.append(plan(metric, r, variant, 0.5, class_token, distill))
    energy(metric, 0.5, "elu", True)
    energy(metric, 0.75, "gauss", False)
    return made[-1]


def _merges(tokens, width, dtype, p):
    x = torch.zeros(1, tokens, width, dtype=dtype)
    t_out = p[1].shape[1] - 1
    for mode in MERGE_MODES:
        out = merge(x, *p, mode)
        merge_backward(torch.zeros_like(out), x, out, *p, mode)
    for size in (None, torch.ones(1, tokens, 1, dtype=dtype), torch.ones(1, tokens, 1)):
        out, size_out = merge_wavg(x, size, *p)
        if size is not None:
            merge_wavg_backward(torch.zeros_like(out), size, size_out, *p)
    unmerge(torch.zeros(1, t_out, width, dtype=dtype), *p)


def run_all(full: bool = False) -> None:
    """Calls every op on every shape above (the full sweep: every token count for the merges
    too, and every metric width; otherwise the merges at the models' token counts)."""
    for tokens in token_counts():
        for channels in METRIC_WIDTHS if full else (64, 80):
            for dtype in DTYPES:
                p = _plans(tokens, channels, dtype)
        if full or tokens in MODEL_TOKENS or tokens <= 17:
            for dtype in DTYPES:
                for width in MERGED_WIDTHS + (tokens,):
                    _merges(tokens, width, dtype, p)
