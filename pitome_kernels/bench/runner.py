"""Times one PiToMe layer per backend against the paper-style code and the physical floors.

Every ratio is measured in one process: ``vs paper`` = paper-style time / our time (the
speed-up), ``vs floor`` = our time / floor time, where the floor is one ``x.clone()`` for
the merge, one batched ``u @ u^T`` of the normalised metric for energy and plan, and both
for the whole layer.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import pitome_kernels as pk

from . import paper_style


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    device: str
    threads: int
    median_us: float
    paper_us: float
    floor_us: float
    floor: str
    bytes_moved: int

    @property
    def speedup_vs_paper(self) -> float:
        return self.paper_us / self.median_us

    @property
    def times_floor(self) -> float:
        return self.median_us / self.floor_us

    @property
    def gb_per_s(self) -> float:
        """The bytes an op must touch (inputs read once, outputs written once) per second."""
        return self.bytes_moved / self.median_us / 1e3


def median_us(fn, device: torch.device, min_run_time: float = 0.3) -> float:
    """Median wall time of ``fn()`` in microseconds (CUDA: ``triton.testing.do_bench``)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return 1e3 * do_bench(fn, warmup=25, rep=100, return_mode="median")
    from torch.utils.benchmark import Timer

    fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return 1e6 * timer.blocked_autorange(min_run_time=min_run_time).median


def layer_rows(batch: int, tokens: int = 197, channels: int = 64, dim: int = 768, r: int = 19,
               margin: float = 0.5, class_token: bool = True, dtype=torch.float32, device="cpu",
               backends=None, min_run_time: float = 0.3) -> list[Row]:
    """Rows for energy, plan, merge_wavg and the whole layer (plan + merge_wavg)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    metric = torch.randn(batch, tokens, channels, generator=gen).to(device, dtype)
    x = torch.randn(batch, tokens, dim, generator=gen).to(device, dtype)
    size = torch.randint(1, 4, (batch, tokens, 1), generator=gen).to(device, dtype)
    backends = backends or [b for b in ("reference", "cpu", "triton", "cuda") if pk.available(b, device) is None]

    u = F.normalize(metric[:, int(class_token):].float(), dim=-1)
    time = lambda fn: median_us(fn, device, min_run_time)  # noqa: E731
    bmm_us = time(lambda: torch.bmm(u, u.transpose(-1, -2)))
    clone_us = time(lambda: x.clone())
    indices = paper_style.plan(metric, r, margin, class_token)
    paper = {
        "energy": time(lambda: F.elu(torch.bmm(u, u.transpose(-1, -2)) - margin).mean(-1)),
        "plan": time(lambda: paper_style.plan(metric, r, margin, class_token)),
        "merge_wavg": time(lambda: paper_style.merge_wavg(indices, x, size, class_token)),
        "layer": time(lambda: paper_style.layer(metric, x, size, r, margin, class_token)),
    }
    floors = {"energy": (bmm_us, "u@uT"), "plan": (bmm_us, "u@uT"),
              "merge_wavg": (clone_us, "x.clone"), "layer": (bmm_us + clone_us, "u@uT+x.clone")}
    nbytes = lambda *ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    plan_bytes = nbytes(metric) + 4 * batch * (3 * tokens - r + 1)  # metric in, int32 plan out
    wavg_bytes = nbytes(x, size) * (2 * tokens - r) // tokens  # x and size in, T - r rows out
    moved = {"energy": nbytes(metric) + 4 * batch * (tokens - int(class_token)), "plan": plan_bytes,
             "merge_wavg": wavg_bytes, "layer": plan_bytes + wavg_bytes}
    shape = f"B{batch} T{tokens} C{channels} D{dim} r{r}"
    rows = []
    for backend in backends:
        p = pk.plan(metric, r, margin=margin, class_token=class_token, backend=backend)
        ours = {
            "energy": lambda: pk.energy(metric, margin=margin, class_token=class_token, backend=backend),
            "plan": lambda: pk.plan(metric, r, margin=margin, class_token=class_token, backend=backend),
            "merge_wavg": lambda: pk.merge_wavg(p, x, size, backend=backend),
            "layer": lambda: pk.merge_wavg(
                pk.plan(metric, r, margin=margin, class_token=class_token, backend=backend), x, size,
                backend=backend),
        }
        for op, fn in ours.items():
            floor_us, floor_name = floors[op]
            rows.append(Row(op, shape, str(dtype).replace("torch.", ""), backend, str(device),
                            torch.get_num_threads(), time(fn), paper[op], floor_us, floor_name, moved[op]))
    return rows


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pitome_kernels: one PiToMe layer (pitome plan + merge_wavg)")
    for col in ("op", "shape", "dtype", "backend", "device", "threads", "median", "GB/s", "vs paper", "vs floor"):
        table.add_column(col, justify="right" if col in ("median", "GB/s", "vs paper", "vs floor", "threads") else "left")
    for row in rows:
        table.add_row(row.op, row.shape, row.dtype, row.backend, row.device, str(row.threads),
                      f"{row.median_us:,.1f} µs", f"{row.gb_per_s:.1f}", f"{row.speedup_vs_paper:.2f}x faster",
                      f"{row.times_floor:.2f}x {row.floor}")
    Console(width=200).print(table)


def plot(rows: list[Row], path: str) -> None:
    """Bar chart of the speed-up over the paper-style code, one bar per op and backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({r.shape for r in rows}, key=[r.shape for r in rows].index)
    fig, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        sel = [r for r in rows if r.shape == shape]
        labels = [f"{r.op}\n{r.backend}" for r in sel]
        ax.bar(range(len(sel)), [r.speedup_vs_paper for r in sel], color="tab:blue")
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(sel)), labels, rotation=60, fontsize=7)
        ax.set_ylabel("speed-up vs paper-style PyTorch")
        ax.set_title(f"{shape}\n{sel[0].dtype}, {sel[0].device}, {sel[0].threads} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
