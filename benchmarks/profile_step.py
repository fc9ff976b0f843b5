"""Where the time of one bandit step goes: profiles behind the discussion in README.md.

    python benchmarks/profile_step.py [--estimator hnca] [--batch 50] [--impl scg-numpy|scg-numba|torch|all]
    python benchmarks/profile_step.py --driver-steps [--estimator reinforce] [--batch 1024]

scg: ``cProfile`` of a few steps, top functions by own time (for the numpy backend
these are the per-op NumPy rules, so it reads as a per-op profile).
torch: ``torch.profiler`` table of a few steps, top ops by self CPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bandit_common import build_graph, init_params, load_data


def profile_scg(backend: str, estimator: str, batch: int, steps: int) -> None:
    import scg

    params = init_params()
    x, y, _ = load_data(batch)
    est = scg.compile(build_graph(), estimator=estimator, backend=backend, precision="float32")
    inputs = {"x": x, "y": y}
    for s in range(2):
        est(params, inputs, seed=s)
    t = time.perf_counter()
    for s in range(steps):
        est(params, inputs, seed=s)
    print(f"scg-{backend} {estimator} batch {batch}: {(time.perf_counter() - t) / steps * 1e3:.2f} ms/step")
    pr = cProfile.Profile()
    pr.enable()
    for s in range(steps):
        est(params, inputs, seed=s)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(12)
    print(buf.getvalue())


def profile_driver(estimator: str, batch: int, steps: int) -> None:
    """scg-numba: the generated driver runs every native step in one call, so cProfile sees one
    function. Here each of its steps is timed on its own (same arrays, same order, BLAS limited as
    in a call): medians over ``steps`` repeats, and their sum against the whole driver call."""
    import numpy as np

    import scg
    from scg.backends.numba_cpu import _arg, blas_limit
    from scg.backends.numba_driver import Segment
    from scg.backends.numba_render import kernel_arrays
    from scg.backends.numpy_ref import bind

    params = init_params()
    x, y, _ = load_data(batch)
    est = scg.compile(build_graph(), estimator=estimator, backend="numba", precision="float32")
    inputs = {"x": x, "y": y}
    est(params, inputs, seed=1)
    prog, variant = est.program, est.program._base
    env, values, _ = bind(prog.graph, params, inputs, precision="float32", state=est._state())
    for item in variant.schedule.items:  # the host steps before the (first) segment
        if isinstance(item, Segment):
            break
        variant.host[item.name](values, env, 1, 2)
    seg = variant.schedule.segments[0]
    arrays = {**{u: _arg(values[u]) for u in seg.reads if u in values}, **variant.workspace.arrays}
    by_uid, mod, inv_n = prog._by_uid, variant.module, np.float32(1.0 / env.n)

    def median_ms(fn) -> float:
        fn()
        ts = []
        for _ in range(steps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts)) * 1e3

    def call(k):
        node = k.nodes[0]
        if k.kind == "rows":
            f, args = getattr(mod, k.name), [arrays[u] for u in kernel_arrays(k, by_uid)]
            sites = [np.int64(s) for s in mod.SITES[k.name]]
            return lambda: f(env.n, env.n_rows, 1, 2, *sites, inv_n, *args)
        a = node.inputs[0]
        if k.kind == "blas":
            b, out = arrays[node.inputs[1].uid], arrays[node.uid]
            if node.op.name == "MATMUL":
                return lambda: np.dot(arrays[a.uid].reshape(-1, a.shape[-1]), b, out=out.reshape(-1, *b.shape[1:]))
            return lambda: np.dot(arrays[a.uid].reshape(-1, a.shape[-1]).T,
                                  arrays[node.inputs[1].uid].reshape(-1, node.inputs[1].shape[-1]), out=out)
        if node.op.name == "LOO_BASELINE":
            return lambda: prog.rt.loo(arrays[a.uid].reshape(env.n, -1), arrays[node.uid].reshape(env.n, -1),
                                       env.n_samples, env.n_rows)
        return lambda: prog.rt.colsum(arrays[a.uid].reshape(env.n, -1), arrays[node.uid].reshape(-1))

    driver = variant.drivers[seg.name]
    args = [arrays[u] for u in seg.args]
    with blas_limit():
        whole = median_ms(lambda: driver(env.n, env.n_rows, 1, 2, inv_n, *args))
        parts = [(k, median_ms(call(k))) for k in seg.kernels]
    total = sum(ms for _, ms in parts)
    print(f"scg-numba {estimator} batch {batch}: driver {seg.name} {whole:.3f} ms per call "
          f"(steps timed one by one: {total:.3f} ms)")
    for k, ms in sorted(parts, key=lambda p: -p[1]):
        what = k.nodes[0].op.pretty if len(k.nodes) == 1 else f"{len(k.nodes)} nodes"
        par = " parallel" if k.parallel else ""
        print(f"  {k.name:4s} {k.kind:5s}{par:9s} {what:24s} {ms:8.3f} ms  {ms / total:6.1%}")
    print()


def profile_torch(estimator: str, batch: int, steps: int) -> None:
    import torch
    import torch_bandit

    params = init_params()
    x, y, _ = load_data(batch)
    step = torch_bandit.make_step(estimator, params, x, y)
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"torch {estimator} batch {batch}: {(time.perf_counter() - t) / steps * 1e3:.2f} ms/step "
          f"({torch.get_num_threads()} threads)")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimator", default="hnca")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--impl", default="all")
    ap.add_argument("--driver-steps", action="store_true",
                    help="scg-numba: time each step of the generated driver on its own")
    args = ap.parse_args(argv)
    if args.driver_steps:
        profile_driver(args.estimator, args.batch, max(args.steps, 10))
        return
    impls = ["scg-numpy", "scg-numba", "torch"] if args.impl == "all" else [args.impl]
    for impl in impls:
        try:
            if impl.startswith("scg-"):
                profile_scg(impl.removeprefix("scg-"), args.estimator, args.batch, args.steps)
            else:
                profile_torch(args.estimator, args.batch, args.steps)
        except Exception as exc:  # noqa: BLE001
            print(f"{impl}: skipped ({type(exc).__name__}: {exc})\n")


if __name__ == "__main__":
    main()
