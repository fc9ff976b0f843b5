"""``scg sweep`` and ``scg report``: the command-line face of :func:`scg.sweep` and :mod:`scg.sweeps.report`.

    scg sweep FILE.py:function --grid estimator=hnca,muprop seed=0,1,2 --workers 2 --out results.csv [--plot]
    scg sweep FILE.py:function --grid lr=1e-3,3e-4 seed=0,1 --scheduler tcp://10.0.0.5:8786 --out results.csv
    scg report results.csv                    # mean ± std table over seeds + learning-curve PNGs

Exit status: 0 when every configuration succeeded, 1 when some raised (their
``error`` column says why), 2 for bad input (one line on stderr), 130 on Ctrl-C
(finished configurations are kept: rerun with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from scg.sweeps.errors import SweepError


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """argparse prints a usage block on bad arguments; sweeps promise one line and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    parser.error = types.MethodType(error, parser)


def add_commands(sub) -> None:
    """Register ``sweep`` and ``report`` on the ``scg`` command's subparsers."""
    sp = sub.add_parser("sweep", help="run FILE.py:function once per grid configuration on Dask, into a CSV",
                        description="Run FILE.py:function once per configuration of the grid (Cartesian product) "
                                    "as one Dask task each, on an embedded LocalCluster (default) or a running "
                                    "Dask scheduler, streaming rows to --out as they finish.",
                        epilog="The function gets one keyword argument per grid name (values parsed as int, "
                               "float, else str) and returns a dict: scalars become CSV columns, lists (learning "
                               "curves) go to OUT.curves.jsonl. Columns: grid values, metrics, error (empty on "
                               "success), worker, wall_s.")
    sp.add_argument("function", metavar="FILE.py:function", help="the function to sweep (FILE.py is sent to workers)")
    sp.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                    help="one item per argument, e.g. --grid estimator=hnca,muprop seed=0,1,2")
    where = sp.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of the embedded LocalCluster (default: one per core, at most one "
                            "per configuration)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    sp.add_argument("--out", required=True, metavar="RESULTS.csv", help="results file (rewritten after each row)")
    sp.add_argument("--resume", action="store_true",
                    help="keep the finished rows of --out and run only the missing or failed configurations")
    sp.add_argument("--overwrite", action="store_true", help="start again when --out exists")
    sp.add_argument("--plot", action="store_true", help="afterwards, write the mean ± std table and curve PNGs")
    sp.add_argument("--warmup", metavar="NAME",
                    help="a function in FILE.py called as NAME(grid) once per worker host before the fan-out "
                         "(e.g. to fill the Numba kernel cache)")
    sp.add_argument("--numba-threads", type=int, default=1, help="NUMBA_NUM_THREADS per worker")
    sp.add_argument("--seed-column", default="seed", help="the grid name averaged over by --plot")
    sp.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for --scheduler")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_sweep)
    _one_line_errors(sp)

    sp = sub.add_parser("report", help="mean ± std over seeds and learning-curve plots of a sweep's CSV",
                        description="Summarise a results CSV written by `scg sweep`: RESULTS.summary.md "
                                    "(mean ± std over seeds per setting) and RESULTS_<curve>.png.")
    sp.add_argument("results", metavar="RESULTS.csv")
    sp.add_argument("--seed-column", default="seed", help="the grid name to average over")
    sp.add_argument("--no-plots", action="store_true", help="only the table")
    sp.set_defaults(func=cmd_report)
    _one_line_errors(sp)


def cmd_sweep(args) -> int:
    from scg.sweeps.grid import config_key, expand, parse_grid
    from scg.sweeps.runner import sweep
    from scg.sweeps.shipping import split_spec
    from scg.sweeps.store import read_csv

    split_spec(args.function)  # a bad FILE.py:function fails before any cluster starts
    grid = parse_grid(args.grid)
    if args.workers is not None and args.workers < 1:
        raise SweepError(f"--workers must be at least 1, got {args.workers}")
    out = Path(args.out)
    configs = expand(grid)
    if args.resume and out.is_file():
        _, rows = read_csv(out)
        have = {config_key(r, list(grid)) for r in rows if all(n in r for n in grid) and not r.get("error")}
        done = sum(config_key(c, list(grid)) in have for c in configs)
        print(f"resuming {out}: {done} of {len(configs)} configurations already done", flush=True)
    try:
        rows = sweep(args.function, grid, workers=args.workers, scheduler=args.scheduler, out=out,
                     resume=args.resume, overwrite=args.overwrite, warmup=args.warmup,
                     numba_threads=args.numba_threads, progress=False if args.no_progress else None,
                     connect_timeout=args.connect_timeout)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished configurations are in {out}; continue with --resume", file=sys.stderr)
        return 130
    failed = [r for r in rows if r["error"]]
    print(f"{len(rows)} configurations: {len(rows) - len(failed)} ok, {len(failed)} failed; wrote {out}")
    for r in failed[:5]:
        print("  failed: " + ", ".join(f"{n}={r[n]}" for n in grid) + f": {r['error']}")
    if args.plot:
        _print_report(out, args.seed_column, plots=True)
    return 1 if failed else 0


def cmd_report(args) -> int:
    _print_report(Path(args.results), args.seed_column, plots=not args.no_plots)
    return 0


def _print_report(out: Path, seed_column: str, plots: bool) -> None:
    from scg.sweeps.report import report

    text, files = report(out, seed_column=seed_column, plots=plots)
    print(text, end="")
    print("wrote " + ", ".join(str(f) for f in files))
