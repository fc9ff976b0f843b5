"""Long run: 1e5 small training steps, printing resident memory (RSS) over time.

    python benchmarks/long_run.py [--steps 100000] [--backend numba] [--estimator hnca]

RSS must stay flat after warm-up (no growth from kernel caches, recompiles or retained arrays).
The CI version is tests/hardening/test_long_run.py (2,000 steps; SCG_LONG=1 for 1e5).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scg
from tests.estimators.graphs import bandit


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--estimator", default="hnca")
    ap.add_argument("--bound-mb", type=float, default=16.0, help="fail if RSS grows more than this after warm-up")
    args = ap.parse_args()
    g, params, inputs = bandit()
    est = scg.compile(g, args.estimator, backend=args.backend, baseline="ema")
    params = {k: v.copy() for k, v in params.items()}
    warm, every = min(1000, args.steps // 10), max(1, args.steps // 20)
    t0, base = time.perf_counter(), None
    print(f"{'step':>8} {'rss MiB':>9} {'steps/s':>9}")
    for step in range(args.steps):
        out = est(params, inputs, seed=step, n_samples=2)
        for k in params:
            params[k] -= 0.01 * out.grads[k]
        if step == warm:
            gc.collect()
            base = rss_mb()
        if step % every == 0 or step == args.steps - 1:
            print(f"{step:>8} {rss_mb():>9.1f} {(step + 1) / (time.perf_counter() - t0):>9.0f}", flush=True)
    gc.collect()
    growth = rss_mb() - (base if base is not None else rss_mb())
    print(f"RSS growth after warm-up: {growth:+.1f} MiB (bound {args.bound_mb} MiB); "
          f"compiled variants: {len(getattr(est.program, '_variants', {})) or 'n/a'}")
    return 0 if growth < args.bound_mb else 1


if __name__ == "__main__":
    sys.exit(main())
