"""Helpers shared by the tests (the Triton interpreter switch lives in conftest.py)."""

import math
import os
from pathlib import Path

import torch

import pitome_kernels as pk

# The authors' and ToMe's outputs (docs/SPEC.md), kept in the repository so a clone tests itself.
GOLDEN_PATH = Path(os.environ.get("PITOME_GOLDEN", Path(__file__).resolve().parent / "data" / "official_vectors.pt"))

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def runnable_backends(device=DEVICE):
    """Every concrete backend that can run on ``device`` here."""
    return pk.runnable(device)


def load_golden():
    if not GOLDEN_PATH.exists():
        raise FileNotFoundError(f"golden vectors not found at {GOLDEN_PATH} (set PITOME_GOLDEN)")
    data = torch.load(GOLDEN_PATH, weights_only=True)
    inputs = {tuple(item["shape"]): item for item in data["inputs"]}
    return inputs, data["cases"]


def golden_r(case) -> int:
    """The case's r: ToMe cases store r in ``ratio``, PiToMe cases the keep ratio."""
    if case["variant"] == "tome":
        return int(case["ratio"])
    _, tokens, _, _ = case["input"]
    return pk.ratio_to_r(tokens, case["ratio"], class_token=case["class_token"])


def well_separated_metric(batch, tokens, channels, seed=0, dtype=torch.float32, device=DEVICE):
    """Random metric whose similarities, energies and matchings have no near ties."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, channels, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def ratio_floor(tokens, ratio):
    return math.floor(tokens - tokens * ratio)
