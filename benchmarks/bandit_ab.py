"""A/B of the numba backend's bandit step between two checkouts of scg, alternated in fresh processes.

    python benchmarks/bandit_ab.py --a PATH_TO_CHECKOUT_A --b PATH_TO_CHECKOUT_B [--rounds 2]

For each round and configuration (estimator x batch), one fresh process per checkout runs
``scg.compile(bandit, E, backend="numba", precision="float32")``, 3 warm-up steps and the
median of the timed steps (the loop of ``bandit_step.py``'s scg worker without its
bookkeeping). The two checkouts alternate line by line so both see the same machine load; each
uses its own kernel cache (``SCG_CACHE_DIR`` + ``-a`` / ``-b``). Prints one line per pair.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = [("reinforce", 50, 60), ("reinforce", 1024, 12), ("muprop", 50, 60), ("muprop", 1024, 12),
           ("hnca", 50, 40), ("hnca", 1024, 8)]

_CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
import numpy as np
from bandit_common import build_graph, init_params, load_data
import scg
params = init_params()
x, y, _ = load_data({batch})
est = scg.compile(build_graph(), estimator={est!r}, backend="numba", precision="float32")
for s in range(3):
    est(params, {{"x": x, "y": y}}, seed=s)
ts = []
for s in range({reps}):
    t = time.perf_counter()
    est(params, {{"x": x, "y": y}}, seed=s)
    ts.append(time.perf_counter() - t)
print(f"{{np.median(ts) * 1e3:.2f}}")
"""


def run(root: Path, est: str, batch: int, reps: int, cache: str) -> str:
    code = _CHILD.format(bench=str(root / "benchmarks"), batch=batch, est=est, reps=reps)
    env = {**os.environ, "PYTHONPATH": str(root), "SCG_CACHE_DIR": cache}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else f"error: {proc.stderr[-200:]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="checkout A (e.g. this branch)")
    ap.add_argument("--b", required=True, help="checkout B (e.g. main)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = os.environ.get("SCG_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "scg", "kernels"))
    for r in range(args.rounds):
        for est, batch, reps in CONFIGS:
            a = run(Path(args.a).resolve(), est, batch, reps, base + "-a")
            b = run(Path(args.b).resolve(), est, batch, reps, base + "-b")
            print(f"round {r + 1} {est:9s} batch {batch:4d}: A {a} ms | B {b} ms", flush=True)


if __name__ == "__main__":
    main()
