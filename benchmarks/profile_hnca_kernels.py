"""HNCA counterfactual kernels of the Numba backend, before/after, in one process.

    python benchmarks/profile_hnca_kernels.py [--batches 50 1024] [--repeats 15] [--before-rev b80e140]

"before" is the Numba runtime (``scg/backends/numba_runtime.py``) of git revision
``--before-rev`` (the HNCA loop nests live there), "after" the working tree's. Both
run in this process, interleaved call by call, so machine noise hits both alike:

1. isolated nests: ``rt.hnca_bern_row`` (200 parents x 200 Bernoulli children) and
   ``rt.hnca_cat_row`` (200 parents x 10 categories) over all rows in a ``prange``,
   random 0/1 parents and N(0, 0.1) weights; G pairs/s = rows*parents*children / time
   (one softplus, resp. one exp, per pair);
2. the whole HNCA step of the 784-200-200-200-10 bandit (float32, ``scg.compile``,
   backend numba) with the time of every plan step (rows kernels by name; BLAS, host
   and cross-row steps summed), medians over ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bandit_common import build_graph, describe_environment, init_params, load_data


def old_runtime(rev: str, precision: str = "float32"):
    """The runtime module of git revision ``rev`` (None when git or the revision is not there)."""
    from scg.backends import kernel_cache

    try:
        text = subprocess.run(["git", "show", f"{rev}:scg/backends/numba_runtime.py"], cwd=HERE.parent,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no 'before' runtime ({type(e).__name__}): only the working tree is measured")
        return None
    mod = types.ModuleType("scg_numba_runtime_before")
    exec(compile(text, f"<numba_runtime@{rev}>", "exec"), mod.__dict__)  # noqa: S102 -- our own file at rev
    return kernel_cache.load(f"scg_rt_before_{precision}", mod.runtime_source(precision))


def row_driver(rt):
    import numba

    bern, cat = rt.hnca_bern_row, rt.hnca_cat_row

    @numba.njit(parallel=True)
    def bern_rows(u, w, lg, c, out):
        for r in numba.prange(u.shape[0]):
            bern(u[r], w, lg[r], c[r], out[r])

    @numba.njit(parallel=True)
    def cat_rows(u, w, lg, c, out):
        for r in numba.prange(u.shape[0]):
            cat(u[r], w, lg[r], c[r], out[r])

    return bern_rows, cat_rows


def isolated(rts: dict, batch: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    f32 = np.float32
    n = 200
    cases = {}
    for child, m in (("bernoulli", 200), ("categorical", 10)):
        u = (rng.random((batch, n)) < 0.5).astype(f32)
        w = rng.normal(0.0, 0.1, (n, m)).astype(f32)
        lg = rng.normal(0.0, 2.0, (batch, m)).astype(f32)
        c = (rng.random((batch, m)) < 0.5).astype(f32) if child == "bernoulli" else rng.integers(0, m, batch)
        cases[child] = (u, w, lg, c)
    drivers = {name: dict(zip(("bernoulli", "categorical"), row_driver(rt), strict=True)) for name, rt in rts.items()}
    times = {(name, child): [] for name in rts for child in cases}
    outs = {}
    for name in rts:
        for child, args in cases.items():
            out = np.empty((batch, n), f32)
            drivers[name][child](*args, out)  # compile
            outs[name, child] = out
    for _ in range(repeats):
        for child, args in cases.items():
            for name in rts:
                t = time.perf_counter()
                drivers[name][child](*args, outs[name, child])
                times[name, child].append(time.perf_counter() - t)
    for child, (u, w, _, _) in cases.items():
        pairs = batch * w.size
        line = [f"  {child:11s} nest, batch {batch:5d} ({pairs / 1e6:6.2f} M pairs):"]
        for name in rts:
            t = float(np.median(times[name, child]))
            line.append(f"{name} {t * 1e3:8.3f} ms = {pairs / t / 1e9:5.2f} G/s")
        if len(rts) == 2:
            a, b = (float(np.median(times[nm, child])) for nm in rts)
            line.append(f"x{a / b:.1f}")
        print("  ".join(line))


def _label(kernel, by_uid) -> str:
    from scg.ir.ops import Op

    if kernel.kind != "rows":
        return {"blas": "BLAS steps", "cross": "cross-row steps"}.get(kernel.kind, "host steps")
    nodes = [by_uid[x] if isinstance(x, int) else x for x in kernel.nodes]
    hn = [n for n in nodes if n.op is Op.HNCA_AFFINE_DELTA]
    what = "+".join(f"hnca[{n.attrs['child'][:4]} {n.inputs[1].shape[0]}x{n.inputs[1].shape[1]}]" for n in hn)
    return f"{kernel.name} {what or 'other'}"


def timed_steps(est, sink: dict) -> None:
    """Wrap every plan step of every compiled variant to add its time to sink[label]."""
    prog = est.program
    by_uid = {n.uid: n for n in prog.graph.nodes}
    for variant in prog._variants.values():
        for i, (k, step) in enumerate(zip(variant.plan.kernels, variant.steps, strict=True)):
            label = _label(k, by_uid)

            def wrapped(V, env, k0, k1, _step=step, _label=label):
                t = time.perf_counter()
                _step(V, env, k0, k1)
                sink[_label] = sink.get(_label, 0.0) + time.perf_counter() - t
            variant.steps[i] = wrapped


def whole_step(rts: dict, batch: int, repeats: int) -> None:
    import scg
    from scg.backends import numba_cpu

    params = init_params()
    x, y, _ = load_data(batch)
    inputs = {"x": x, "y": y}
    ests = {}
    real = numba_cpu.runtime_module
    for name, rt in rts.items():
        numba_cpu.runtime_module = (lambda precision, _rt=rt: _rt) if name == "before" else real
        try:
            ests[name] = scg.compile(build_graph(), estimator="hnca", backend="numba", precision="float32")
        finally:
            numba_cpu.runtime_module = real
        for s in range(2):
            ests[name](params, inputs, seed=s)
    totals = {name: [] for name in rts}
    for rep in range(repeats):  # plain calls, interleaved
        for name, est in ests.items():
            t = time.perf_counter()
            est(params, inputs, seed=100 + rep)
            totals[name].append(time.perf_counter() - t)
    per = {name: [] for name in rts}
    sinks = {name: {} for name in rts}
    for name, est in ests.items():
        timed_steps(est, sinks[name])
    for rep in range(repeats):  # per-step times, interleaved
        for name, est in ests.items():
            sinks[name].clear()
            est(params, inputs, seed=100 + rep)
            per[name].append(dict(sinks[name]))
    g = {name: ests[name](params, inputs, seed=7).grads for name in rts}
    print(f"  whole HNCA step, batch {batch}:")
    labels = sorted({lab for name in rts for d in per[name] for lab in d})
    for lab in labels:
        cells = [f"{name} {np.median([d.get(lab, 0.0) for d in per[name]]) * 1e3:8.2f} ms" for name in rts]
        print(f"    {lab:40s} " + "  ".join(cells))
    cells = [f"{name} {np.median(totals[name]) * 1e3:8.2f} ms" for name in rts]
    print(f"    {'step (median of ' + str(repeats) + ' calls)':40s} " + "  ".join(cells)
          + (f"  x{np.median(totals['before']) / np.median(totals['after']):.1f}" if len(rts) == 2 else ""))
    if len(rts) == 2:
        worst = max(float(np.abs(g["before"][k] - g["after"][k]).max() / (np.abs(g["before"][k]).max() + 1e-30))
                    for k in g["after"])
        print(f"    same seed, before vs after: max |d grad| / max |grad| over params = {worst:.2e}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[50, 1024])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--before-rev", default="b80e140")
    ap.add_argument("--no-step", action="store_true", help="isolated nests only")
    args = ap.parse_args(argv)
    from scg.backends.numba_cpu import runtime_module

    env = describe_environment()
    print(f"cpu {env['cpu']} {env['cpu_flags']}, {env['usable_cpus']} usable cpus, numba {env['numba']}, "
          f"threading layer {env.get('numba_threading_layer_config')}")
    rts = {}
    before = old_runtime(args.before_rev)
    if before is not None:
        rts["before"] = before
    rts["after"] = runtime_module("float32")
    for batch in args.batches:
        isolated(rts, batch, args.repeats)
        if not args.no_step:
            whole_step(rts, batch, args.repeats)


if __name__ == "__main__":
    main()
