"""Where the time of one bandit step goes: profiles behind the discussion in README.md.

    python benchmarks/profile_step.py [--estimator hnca] [--batch 50] [--impl scg-numpy|scg-numba|torch|all]

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
    args = ap.parse_args(argv)
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
