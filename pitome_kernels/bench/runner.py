"""Times one PiToMe layer per backend against the paper-style code and the physical floors.

Every ratio is measured in one process: ``vs paper`` = paper-style time / our time (the
speed-up), ``vs floor`` = our time / floor time, where the floor is one ``x.clone()`` for
the merge, one batched ``u @ u^T`` of the normalised metric for energy and plan, and both
for the whole layer. On CPU every timed function runs one short block of calls per round,
in turn, for many rounds: a function and its baseline are then timed within a fraction of
a second of each other, a burst of noise (another process, a busy neighbour core, a host
that slows the machine for a few seconds) lands on a few rounds of every function instead
of on whole measurements, and each ratio is the median of its per-round ratios.
"""

import gc
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import pitome_kernels as pk

from . import paper_style

ROUNDS = 25


@dataclass
class Timing:
    """One function's times in microseconds: the median and the 20th/80th percentiles (CPU:
    over the rounds; CUDA: over do_bench's runs), and every round's time (CPU) for the
    per-round ratios."""

    median_us: float
    q20_us: float
    q80_us: float
    rounds_us: list[float]


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    device: str
    threads: int
    timing: Timing
    paper: Timing
    floor: Timing
    floor_name: str
    bytes_moved: int

    @property
    def median_us(self) -> float:
        return self.timing.median_us

    @property
    def speedup_vs_paper(self) -> float:
        return _ratio(self.paper, self.timing)

    @property
    def times_floor(self) -> float:
        return _ratio(self.timing, self.floor)

    @property
    def gb_per_s(self) -> float:
        """The bytes an op must touch (inputs read once, outputs written once) per second."""
        return self.bytes_moved / self.median_us / 1e3


def _ratio(num: Timing, den: Timing) -> float:
    if len(num.rounds_us) == len(den.rounds_us) > 0:
        return statistics.median(a / b for a, b in zip(num.rounds_us, den.rounds_us))
    return num.median_us / den.median_us


def _quantiles(times: list[float]) -> tuple[float, float, float]:
    if len(times) == 1:
        return times[0], times[0], times[0]
    q = statistics.quantiles(times, n=10, method="inclusive")
    return statistics.median(times), q[1], q[7]


def time_all(fns: dict, device: torch.device, min_run_time: float = 0.3, rounds: int = ROUNDS) -> dict:
    """``{name: Timing}`` for every function of ``fns``.

    CUDA: ``triton.testing.do_bench`` (median and quantiles of its runs). CPU: ``rounds``
    rounds, each running every function in turn for one block of calls of about
    ``min_run_time / rounds`` seconds (at least one call), with the garbage collector off
    as ``timeit`` does; a round's time is its block's mean, and the median and quantiles
    are taken over the rounds.
    """
    if device.type == "cuda":
        from triton.testing import do_bench

        out = {}
        for name, fn in fns.items():
            q20, med, q80 = do_bench(fn, warmup=25, rep=100, quantiles=[0.2, 0.5, 0.8])
            out[name] = Timing(1e3 * med, 1e3 * q20, 1e3 * q80, [])
        return out
    block_s = min_run_time / rounds
    calls = {name: _calls_per_block(fn, block_s) for name, fn in fns.items()}  # also warms up
    per_round = {name: [] for name in fns}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                n = calls[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                per_round[name].append(1e6 * (time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    out = {}
    for name, times in per_round.items():
        med, q20, q80 = _quantiles(times)
        out[name] = Timing(med, q20, q80, times)
    return out


def _calls_per_block(fn, block_s: float) -> int:
    """How many calls of ``fn`` take about ``block_s`` seconds, after a warm-up call (first-call
    allocations and lazy initialisation) and a few timed ones."""
    fn()
    n, elapsed = 0, 0.0
    start = time.perf_counter()
    while n < 3 or (elapsed < min(block_s, 0.05) and n < 10_000):
        fn()
        n += 1
        elapsed = time.perf_counter() - start
    return max(1, round(block_s * n / elapsed))


def layer_rows(batch: int, tokens: int = 197, channels: int = 64, dim: int = 768, r: int = 19,
               margin: float = 0.5, class_token: bool = True, dtype=torch.float32, device="cpu",
               backends=None, min_run_time: float = 0.3) -> list[Row]:
    """Rows for energy, plan, merge_wavg and the whole layer (plan + merge_wavg)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    metric = torch.randn(batch, tokens, channels, generator=gen).to(device, dtype)
    x = torch.randn(batch, tokens, dim, generator=gen).to(device, dtype)
    size = torch.randint(1, 4, (batch, tokens, 1), generator=gen).to(device, dtype)
    backends = backends or pk.runnable(device)

    u = F.normalize(metric[:, int(class_token):].float(), dim=-1)
    indices = paper_style.plan(metric, r, margin, class_token)
    fns = {
        "floor:u@uT": lambda: torch.bmm(u, u.transpose(-1, -2)),
        "floor:x.clone": lambda: x.clone(),
        "paper:energy": lambda: F.elu(torch.bmm(u, u.transpose(-1, -2)) - margin).mean(-1),
        "paper:plan": lambda: paper_style.plan(metric, r, margin, class_token),
        "paper:merge_wavg": lambda: paper_style.merge_wavg(indices, x, size, class_token),
        "paper:layer": lambda: paper_style.layer(metric, x, size, r, margin, class_token),
    }
    for backend in backends:
        p = pk.plan(metric, r, margin=margin, class_token=class_token, backend=backend)
        fns.update({
            f"{backend}:energy": lambda b=backend: pk.energy(metric, margin=margin, class_token=class_token, backend=b),
            f"{backend}:plan": lambda b=backend: pk.plan(metric, r, margin=margin, class_token=class_token, backend=b),
            f"{backend}:merge_wavg": lambda b=backend, p=p: pk.merge_wavg(p, x, size, backend=b),
            f"{backend}:layer": lambda b=backend: pk.merge_wavg(
                pk.plan(metric, r, margin=margin, class_token=class_token, backend=b), x, size, backend=b),
        })
    t = time_all(fns, device, min_run_time)

    layer_floor = Timing(*(t["floor:u@uT"].__dict__[k] + t["floor:x.clone"].__dict__[k]
                           for k in ("median_us", "q20_us", "q80_us")),
                         [a + b for a, b in zip(t["floor:u@uT"].rounds_us, t["floor:x.clone"].rounds_us)])
    floors = {"energy": (t["floor:u@uT"], "u@uT"), "plan": (t["floor:u@uT"], "u@uT"),
              "merge_wavg": (t["floor:x.clone"], "x.clone"), "layer": (layer_floor, "u@uT+x.clone")}
    nbytes = lambda *ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    plan_bytes = nbytes(metric) + 4 * batch * (3 * tokens - r + 1)  # metric in, int32 plan out
    wavg_bytes = nbytes(x, size) * (2 * tokens - r) // tokens  # x and size in, T - r rows out
    moved = {"energy": nbytes(metric) + 4 * batch * (tokens - int(class_token)), "plan": plan_bytes,
             "merge_wavg": wavg_bytes, "layer": plan_bytes + wavg_bytes}
    shape = f"B{batch} T{tokens} C{channels} D{dim} r{r}"
    rows = []
    for backend in backends:
        # the C++ CPU kernels' ISA clone, with the device
        where = f"{device} ({pk.cpu_isa()})" if backend == "cpu" else str(device)
        for op in ("energy", "plan", "merge_wavg", "layer"):
            floor, floor_name = floors[op]
            rows.append(Row(op, shape, str(dtype).replace("torch.", ""), backend, where,
                            torch.get_num_threads(), t[f"{backend}:{op}"], t[f"paper:{op}"], floor, floor_name,
                            moved[op]))
    return rows


def _speedup_text(speedup: float) -> str:
    """'3.50x faster' or, below 1, '2.00x slower' (the paper-style time over ours)."""
    return f"{speedup:.2f}x faster" if speedup >= 1.0 else f"{1.0 / speedup:.2f}x slower"


def print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pitome_kernels: one PiToMe layer (pitome plan + merge_wavg)")
    numeric = ("threads", "median", "q20-q80", "GB/s", "vs paper", "vs floor")
    for col in ("op", "shape", "dtype", "backend", "device") + numeric:
        table.add_column(col, justify="right" if col in numeric else "left")
    for row in rows:
        table.add_row(row.op, row.shape, row.dtype, row.backend, row.device, str(row.threads),
                      f"{row.median_us:,.1f} µs", f"{row.timing.q20_us:,.1f}-{row.timing.q80_us:,.1f}",
                      f"{row.gb_per_s:.1f}", _speedup_text(row.speedup_vs_paper),
                      f"{row.times_floor:.2f}x {row.floor_name}")
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
        labels = [f"{r.op}\n{r.backend}" + (f"\n{r.device}" if r.backend == "cpu" else "") for r in sel]
        ax.bar(range(len(sel)), [r.speedup_vs_paper for r in sel], color="tab:blue")
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(sel)), labels, rotation=60, fontsize=7)
        ax.set_ylabel("speed-up vs paper-style PyTorch")
        ax.set_title(f"{shape}\n{sel[0].dtype}, {sel[0].device}, {sel[0].threads} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
