"""``python -m pitome_kernels bench``: time a PiToMe layer on every available backend, or with
``--model``, whole models unmerged, with PiToMe and with ToMe (``bench/models.py``);
``python -m pitome_kernels compile-check``: see ``compile_check.py``."""

import argparse
import sys

import torch

from .backends import REGISTRY
from .cpu_isa import CPU_ISAS

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _parser() -> argparse.ArgumentParser:
    from .bench import models

    parser = argparse.ArgumentParser(prog="python -m pitome_kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("compile-check", add_help=False,
                   help="compile every Triton launch for sm_80/90/100 and check spills (see --help there)")
    bench = sub.add_parser("bench", help="time energy, plan, merge_wavg and the whole layer, or with --model "
                                          "a whole model")
    bench.add_argument("--model", choices=models.names(), default=None,
                       help="time this model end to end (random weights) instead of one layer: unmerged, "
                            "PiToMe and ToMe on these kernels, ToMe's code and the paper-style PiToMe")
    bench.add_argument("--ratio", type=float, default=0.9, help="with --model: fraction of tokens each layer keeps")
    bench.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # 2-layer models, for tests
    bench.add_argument("--batch", type=int, nargs="+", default=None, help="default: 1 64 (layer), 8 (--model)")
    bench.add_argument("--tokens", type=int, default=197)
    bench.add_argument("--channels", type=int, default=64, help="metric width C")
    bench.add_argument("--dim", type=int, default=768, help="hidden width D")
    bench.add_argument("--r", type=int, default=19)
    bench.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    bench.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    bench.add_argument("--backend", nargs="+", choices=[b.name for b in REGISTRY], default=None,
                       help="default: every one that runs on the device")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument("--min-run-time", type=float, default=0.3, help="seconds per CPU measurement")
    bench.add_argument("--plot", default=None, help="write a PNG bar chart here")
    bench.add_argument("--cpu-isa", nargs="+", choices=CPU_ISAS, default=None,
                       help="run the CPU kernels in these ISA clones, one set of rows each "
                            "(default: the best this CPU supports)")
    bench.add_argument("--json", default=None, help="write the rows and the machine to this JSON file")
    bench.add_argument("--compare", default=None, metavar="BASELINE",
                       help="a JSON file of --json: exit 1, naming the rows, where a ratio got worse")
    bench.add_argument("--max-slowdown", type=float, default=1.15,
                       help="with --compare: how much worse a ratio may get (default 1.15)")
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compile-check"]:
        from .compile_check import main as compile_check

        sys.exit(compile_check(argv[1:]))
    parser = _parser()
    args = parser.parse_args(argv)
    import pitome_kernels as pk

    from .bench import baseline, runner

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is not None:
        _bench_model(args, parser, pk)
        return
    reference_doc = baseline.load(args.compare) if args.compare else None  # fail before timing
    rows = []
    for isa in args.cpu_isa or [None]:
        if isa is not None:
            pk.set_cpu_isa(isa)
        for batch in args.batch or [1, 64]:
            rows += runner.layer_rows(batch, args.tokens, args.channels, args.dim, args.r,
                                      dtype=DTYPES[args.dtype], device=args.device, backends=args.backend,
                                      min_run_time=args.min_run_time)
    _report(rows, args, runner.print_table, runner.plot, baseline.write)
    if reference_doc is not None:
        regressions, notes = baseline.compare(rows, reference_doc, args.max_slowdown)
        for note in notes:
            print(f"note: {note}")
        for regression in regressions:
            print(f"REGRESSION: {regression}")
        if regressions:
            sys.exit(f"{len(regressions)} ratio(s) worse than {args.compare} by more than {args.max_slowdown}x")
        print(f"no ratio worse than {args.compare} by more than {args.max_slowdown}x")


def _bench_model(args, parser, pk) -> None:
    """``bench --model``: the end-to-end rows of every batch, then the table, plot and JSON."""
    from .bench import models

    if args.compare:
        parser.error("--compare takes a layer benchmark baseline; it cannot be used with --model")
    for name, values in (("--backend", args.backend), ("--cpu-isa", args.cpu_isa)):
        if values is not None and len(values) > 1:
            parser.error(f"{name} takes one value with --model, got {len(values)}")
    if not 0.0 < args.ratio <= 1.0:
        parser.error(f"--ratio must be in (0, 1] (the fraction of tokens kept), got {args.ratio}")
    if args.batch is not None and min(args.batch) < 1:
        parser.error(f"--batch must be >= 1, got {min(args.batch)}")
    if args.cpu_isa:
        pk.set_cpu_isa(args.cpu_isa[0])
    rows = []
    for batch in args.batch or [8]:
        rows += models.model_rows(args.model, batch, args.ratio, dtype=DTYPES[args.dtype], device=args.device,
                                  backend=args.backend[0] if args.backend else "auto",
                                  min_run_time=args.min_run_time, tiny=args.tiny)
    _report(rows, args, models.print_table, models.plot, models.write)


def _report(rows, args, print_table, plot, write) -> None:
    """The table, then the PNG (``--plot``) and the JSON (``--json``) where asked for."""
    print_table(rows)
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    if args.json:
        write(rows, args.json)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
