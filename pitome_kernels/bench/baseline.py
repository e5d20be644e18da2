"""Benchmark results as JSON, and their comparison with a stored baseline.

Only ratios measured within one run are compared (time over the floor, speed-up over the
paper-style code): absolute times move with the machine and its load, ratios much less.
"""

import json
import platform

import torch

from .runner import Row

FORMAT = 1


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "processor": _cpu_model(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        import pitome_kernels as pk

        info["cpu_isa"] = pk.cpu_isa()
    except RuntimeError:
        info["cpu_isa"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def row_key(row: dict) -> str:
    return f"{row['op']} {row['shape']} {row['dtype']} {row['backend']}"


def row_record(row: Row) -> dict:
    return {
        "op": row.op, "shape": row.shape, "dtype": row.dtype, "backend": row.backend, "device": row.device,
        "threads": row.threads, "median_us": row.median_us, "q20_us": row.timing.q20_us,
        "q80_us": row.timing.q80_us, "paper_median_us": row.paper.median_us,
        "floor": row.floor_name, "floor_median_us": row.floor.median_us,
        "speedup_vs_paper": row.speedup_vs_paper, "times_floor": row.times_floor, "gb_per_s": row.gb_per_s,
    }


def write(rows: list[Row], path: str) -> dict:
    """Write ``rows`` and the machine to ``path``; returns what was written."""
    doc = {"format": FORMAT, "machine": machine(), "rows": [row_record(r) for r in rows]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def compare(rows: list[Row], baseline: dict, max_slowdown: float) -> tuple[list[str], list[str]]:
    """``(regressions, notes)``: a regression is a row of ``rows`` whose time over the floor
    grew, or whose speed-up over the paper-style code shrank, by more than ``max_slowdown``
    against the row of the same op, shape, dtype and backend in ``baseline``."""
    if not max_slowdown >= 1.0:
        raise ValueError(f"max_slowdown must be >= 1, got {max_slowdown}")
    old = {row_key(r): r for r in baseline["rows"]}
    regressions, notes = [], []
    for row in map(row_record, rows):
        key = row_key(row)
        ref = old.pop(key, None)
        if ref is None:
            notes.append(f"{key}: not in the baseline")
            continue
        floor_growth = row["times_floor"] / ref["times_floor"]
        paper_loss = ref["speedup_vs_paper"] / row["speedup_vs_paper"]
        if floor_growth > max_slowdown:
            regressions.append(f"{key}: {row['times_floor']:.3f}x {row['floor']} against {ref['times_floor']:.3f}x "
                               f"in the baseline ({floor_growth:.2f}x slower)")
        if paper_loss > max_slowdown:
            regressions.append(f"{key}: {row['speedup_vs_paper']:.3f}x the paper-style code's speed against "
                               f"{ref['speedup_vs_paper']:.3f}x in the baseline ({paper_loss:.2f}x slower)")
    notes += [f"{key}: in the baseline, not measured now" for key in old]
    return regressions, notes


def load(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != FORMAT or "rows" not in doc:
        raise ValueError(f"{path} is not a pitome_kernels benchmark file (format {FORMAT})")
    return doc
