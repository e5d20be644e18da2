"""``python -m pitome_kernels compile-check``: compiles every Triton kernel configuration
the package launches for sm_80, sm_90 and sm_100, without a GPU, and fails on a compile
error, a register spill or shared memory above the target's limit.

The configurations come from the package's own host code (``triton/sweep.py`` calls every
op on the models' shapes while ``triton/recorder.py`` records each launch as that GPU
would compile it); launches that compile to the same binary are compiled once. By default
a covering subset is compiled: per target and kernel, launches are taken, largest tiles
first, until every value of every constexpr, pointer dtype and launch option has been
compiled at least once. ``--full`` (or ``PITOME_COMPILE_CHECK=full``) compiles them all.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time


def _features(launch):
    names = launch.kernel.arg_names
    found = {(names[path[0]], repr(value)) for path, value in launch.constexprs.items()
             if launch.kernel.params[path[0]].is_constexpr}
    found |= {(name, kind) for name, kind in launch.signature.items() if str(kind).startswith("*")}
    found |= {("num_warps", launch.options["num_warps"]), ("num_stages", launch.options["num_stages"])}
    return found


def _tile_volume(launch):
    names = launch.kernel.arg_names
    volume = 1
    for path, value in launch.constexprs.items():
        if names[path[0]].startswith("BLOCK") and isinstance(value, int):
            volume *= value
    return volume


def covering(launches):
    """Per kernel, launches (largest tiles first) until every feature is covered."""
    chosen, covered = [], set()
    for launch in sorted(launches, key=lambda x: (x.name, -_tile_volume(x), x.key())):
        new = {(launch.name,) + f for f in _features(launch)} - covered
        if new:
            chosen.append(launch)
            covered |= new
    return chosen


def record(arch: int, full: bool):
    """The distinct launches of the sweep for sm_``arch``."""
    from .triton import sweep
    from .triton.recorder import recording

    with recording(arch) as launches:
        sweep.run_all(full=full)
    unique = {}
    for launch in launches:
        unique.setdefault(launch.key(), launch)
    return list(unique.values())


_JOBS = []  # (arch, launch), inherited by the forked workers


def _compile_job(index):
    from .triton.resources import compile_launch, resources

    arch, launch = _JOBS[index]
    started = time.perf_counter()
    try:
        used = resources(*compile_launch(launch, arch), arch)
        return index, used, None, time.perf_counter() - started
    except Exception as error:  # a compile error is a finding, reported with the launch
        return index, None, f"{type(error).__name__}: {str(error)[-2000:]}", time.perf_counter() - started


def _parser():
    parser = argparse.ArgumentParser(prog="python -m pitome_kernels compile-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90, 100], help="compute capabilities")
    parser.add_argument("--full", action="store_true", default=os.environ.get("PITOME_COMPILE_CHECK") == "full",
                        help="every distinct launch, not a covering subset")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiler processes")
    parser.add_argument("--kernel", nargs="+", default=None, help="only these kernels (e.g. _merge_kernel)")
    parser.add_argument("--report", default=None, help="write every compiled launch's resources to this JSON file")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    from .triton.resources import TARGETS

    started = time.perf_counter()
    for arch in args.arch:
        if arch not in TARGETS:
            sys.exit(f"--arch: {arch} is not one of {sorted(TARGETS)}")
        distinct = [launch for launch in record(arch, args.full) if not args.kernel or launch.name in args.kernel]
        chosen = distinct if args.full else covering(distinct)
        print(f"sm_{arch}: {len(distinct)} distinct launches, compiling {len(chosen)}")
        _JOBS.extend((arch, launch) for launch in chosen)

    results = [None] * len(_JOBS)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs), mp_context=context) as pool:
        for index, used, error, seconds in pool.map(_compile_job, range(len(_JOBS))):
            results[index] = (used, error, seconds)

    failures = []
    rows = {}
    for (arch, launch), (used, error, seconds) in zip(_JOBS, results):
        row = rows.setdefault((launch.name, arch), {"n": 0, "regs": 0, "spill": 0, "shared": 0, "occ": 1.0,
                                                    "warps": set(), "seconds": 0.0})
        row["n"] += 1
        row["seconds"] += seconds
        if error is not None:
            failures.append(f"sm_{arch} {launch.name} [{launch.summary()}]: {error}")
            continue
        problems = used.problems(TARGETS[arch])
        if problems:
            failures.append(f"sm_{arch} {launch.name} [{launch.summary()}]: {', '.join(problems)}"
                            f" ({used.registers} registers)")
        row["regs"] = max(row["regs"], used.registers)
        row["spill"] = max(row["spill"], used.spill_bytes)
        row["shared"] = max(row["shared"], used.shared)
        row["occ"] = min(row["occ"], used.occupancy)
        row["warps"].add(used.warps)

    print(f"\n{'kernel':<24} {'target':<7} {'configs':>7} {'max regs':>8} {'max spill':>9} "
          f"{'max smem':>9} {'warps':>7} {'min occ':>7} {'compile s':>9}")
    for (name, arch), row in sorted(rows.items()):
        warps = "/".join(str(w) for w in sorted(row["warps"])) or "-"
        print(f"{name:<24} sm_{arch:<4} {row['n']:>7} {row['regs']:>8} {row['spill']:>9} "
              f"{row['shared']:>9} {warps:>7} {row['occ']:>7.0%} {row['seconds']:>9.1f}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump([{"arch": arch, "kernel": launch.name, "launch": launch.summary(),
                        "resources": used._asdict() if used else None, "error": error, "seconds": seconds}
                       for (arch, launch), (used, error, seconds) in zip(_JOBS, results)], f, indent=1)
        print(f"report written to {args.report}")
    print(f"\n{len(_JOBS)} compilations in {time.perf_counter() - started:.0f} s, {len(failures)} failed the check")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0
