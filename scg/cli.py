"""The ``scg`` command line: inspect a model's IR, draw it, run the benchmark.

    scg inspect model.py[:graph] --estimator hnca     # model IR, estimator IR, fused plan
    scg dot model.py[:graph] -o model.svg             # Graphviz drawing (or .dot text)
    scg bench [--quick ...]                           # benchmarks/bandit_step.py of the repo
    scg sweep FILE.py:fn --grid seed=0,1 --out r.csv  # one Dask task per configuration (scg.sweeps.cli)
    scg report r.csv                                  # mean ± std over seeds, learning curves

``model.py`` is executed with :func:`runpy.run_path` (under the module name
``__scg_cli__``, so its ``if __name__ == "__main__":`` block does not run); the
graph is the module-level ``scg.Graph`` named after the colon, or the only one.
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from scg.errors import ScgError

ESTIMATORS = ("reinforce", "scg", "muprop", "hnca", "arm", "disarm", "vimco", "concrete", "gumbel_st", "rebar",
              "relax")
BENCH_SCRIPT = Path("benchmarks") / "bandit_step.py"


class CliError(ScgError):
    """A command-line usage problem (bad file, no such graph)."""


def load_graph(spec: str):
    """``FILE.py[:name]`` -> the ``scg.Graph`` it defines (the one named ``name``, or the only one)."""
    from scg.ir.graph import Graph

    path, name = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        path, name = head, tail
    file = Path(path)
    if not file.is_file():
        raise CliError(f"no such file: {path!r} (expected FILE.py or FILE.py:graph_variable)")
    sys.path.insert(0, str(file.resolve().parent))
    try:
        module = runpy.run_path(str(file), run_name="__scg_cli__")
    finally:
        sys.path.pop(0)
    graphs = {k: v for k, v in module.items() if isinstance(v, Graph) and not k.startswith("__")}
    if name is not None:
        if name not in module:
            raise CliError(f"{path} defines no module-level variable {name!r}; graphs there: "
                           f"{', '.join(graphs) or 'none'}")
        if not isinstance(module[name], Graph):
            raise CliError(f"{path}:{name} is a {type(module[name]).__name__}, not an scg.Graph")
        return module[name]
    unique = {id(g): k for k, g in graphs.items()}
    if len(unique) == 1:
        return graphs[next(iter(unique.values()))]
    if not graphs:
        raise CliError(f"{path} defines no module-level scg.Graph (build one at module level, e.g. g = scg.Graph(...))")
    raise CliError(f"{path} defines several graphs ({', '.join(graphs)}); pick one: {path}:{next(iter(graphs))}")


def _parse_estimator(text: str):
    """``hnca`` or ``default=hnca,a=reinforce`` -> what ``scg.compile`` takes."""
    if "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def _compile(graph, args):
    from scg.compiled import compile as scg_compile

    options = None if getattr(args, "temperature", None) is None else {"temperature": args.temperature}
    return scg_compile(graph, estimator=_parse_estimator(args.estimator), backend=args.backend,
                       baseline=args.baseline, precision=args.precision,
                       objective=getattr(args, "objective", "mean"), options=options)


def cmd_inspect(args) -> int:
    graph = load_graph(args.file)
    print(f"=== model IR: {graph.name} ===")
    print(graph)
    est = _compile(graph, args)
    print(f"\n=== estimator IR: {args.estimator}" + (f", baseline {args.baseline}" if args.baseline else "") + " ===")
    for node, kind in est.assignment.items():
        print(f"# {node}: {kind}")
    print(est.ir)
    print(f"\n=== fused plan ({args.backend}) ===")
    plan = est.plan
    if plan is None:
        from scg.backends.registry import BACKENDS

        hint = " Try --backend numba for a fused plan." if "numba" in BACKENDS and args.backend != "numba" else ""
        print(f"(none: the {args.backend} backend has no fused plan; the numpy reference interpreter runs the "
              f"estimator IR above op by op.{hint})")
    else:
        print(plan)
    if args.source:
        print(f"\n=== generated source ({args.backend}) ===")
        print(est.source if est.source is not None else f"(none: the {args.backend} backend generates no code)")
    return 0


def cmd_dot(args) -> int:
    graph = load_graph(args.file)
    target = graph if args.estimator is None else _compile(graph, args).ir
    text = target.to_dot()
    out = Path(args.output) if args.output else Path(f"{graph.name}.svg")
    fmt = out.suffix.lstrip(".").lower() or "svg"
    if not out.parent.is_dir():
        raise CliError(f"cannot write {str(out)!r}: directory {str(out.parent)!r} does not exist")
    if fmt == "dot" or fmt == "gv":
        out.write_text(text)
        print(f"wrote {out} (DOT text)")
        return 0
    dot = shutil.which("dot")
    if dot is None:
        dot_file = out.with_suffix(".dot")
        dot_file.write_text(text)
        print(f"Graphviz's `dot` program is not installed, so no {fmt.upper()} was drawn; wrote the DOT text to "
              f"{dot_file} instead (render it with `dot -T{fmt} {dot_file} -o {out}` after installing graphviz, "
              "e.g. `apt-get install graphviz`).")
        return 0
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=text, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise CliError(f"`dot -T{fmt}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    print(f"wrote {out}")
    return 0


def find_bench_script() -> Path | None:
    """``benchmarks/bandit_step.py`` under the current directory or the scg source checkout."""
    candidates = [Path.cwd() / BENCH_SCRIPT, Path(__file__).resolve().parent.parent / BENCH_SCRIPT]
    return next((c for c in candidates if c.is_file()), None)


def cmd_bench(extra: list[str]) -> int:
    script = find_bench_script()
    if script is None:
        print(f"scg bench: no {BENCH_SCRIPT} here. It lives in the scg source repository: run `scg bench` from a "
              "checkout (git clone ...; pip install -e \".[bench]\"). Looked in the current directory and next to "
              "the installed scg package.", file=sys.stderr)
        return 2
    cmd = [sys.executable, str(script), *extra]
    print("running: " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=str(script.parent.parent))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scg", formatter_class=argparse.RawDescriptionHelpFormatter, description="scg: a compiler for stochastic computation graphs. Inspect what it derives.",
        epilog="FILE.py[:graph] runs FILE.py with runpy (its __main__ block is skipped) and picks the\nmodule-level "
               "scg.Graph named `graph`, or the only one.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def compile_flags(sp, estimator_default):
        sp.add_argument("file", metavar="FILE.py[:graph]", help="a Python file defining an scg.Graph at module level")
        sp.add_argument("--estimator", "-e", default=estimator_default,
                        help=f"one of {', '.join(ESTIMATORS)}, or per node: default=hnca,a=reinforce")
        sp.add_argument("--baseline", choices=["ema", "loo"], default=None, help="baseline (default: none)")
        sp.add_argument("--backend", default="numpy", help="numpy (reference interpreter), numba, cuda")
        sp.add_argument("--precision", default="float64", choices=["float32", "float64"])
        sp.add_argument("--objective", default="mean", choices=["mean", "iwae"],
                        help="mean: E[total cost]; iwae: the K-sample bound (with --estimator vimco)")
        sp.add_argument("--temperature", type=float, default=None, help="concrete / gumbel_st temperature")

    sp = sub.add_parser("inspect", help="print the model IR, the derived estimator IR and the backend's fused plan",
                        description="Print the model IR, the estimator IR derived for it (with which estimator "
                                    "serves each stochastic node) and the fused kernel plan, if the backend has "
                                    "one (numpy does not).")
    compile_flags(sp, "hnca")
    sp.add_argument("--source", action="store_true", help="also print the generated kernel source")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("dot", help="draw a graph with Graphviz (SVG/PNG/PDF), or write DOT text",
                        description="Draw the model graph (or, with --estimator, the derived estimator IR). Uses "
                                    "Graphviz's `dot` program when installed; otherwise writes the DOT text next "
                                    "to the requested output and says so.")
    compile_flags(sp, None)
    sp.add_argument("-o", "--output", help="output file; the suffix picks the format (.svg, .png, .pdf, .dot); "
                                           "default GRAPHNAME.svg")
    sp.set_defaults(func=cmd_dot)

    sp = sub.add_parser("bench", help="run benchmarks/bandit_step.py (HNCA bandit step vs PyTorch/JAX)",
                        description="Run the repository's benchmarks/bandit_step.py (found in the current directory "
                                    "or the scg checkout); every argument after `bench` is passed to it, e.g. "
                                    "`scg bench --quick`; `scg bench --help` shows the script's own options.", add_help=False)
    sp.set_defaults(func=None)

    from scg.sweeps.cli import add_commands

    add_commands(sub)  # sweep, report
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv and argv[0] == "bench":  # everything after `bench` (including --help) goes to the script
        return cmd_bench(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ScgError as e:
        print(f"scg {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except BrokenPipeError:  # `scg inspect ... | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silence the interpreter's flush at exit)
        return 0
    except OSError as e:  # e.g. an output file scg may not write: a message, not a traceback
        print(f"scg {args.command}: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

