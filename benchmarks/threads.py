"""Calls of one numba estimator from several Python threads: what each thread-safety option costs.

    python benchmarks/threads.py            # ~1 minute on 2 cores; writes benchmarks/results/threads.json

Options measured side by side, each in a fresh process (the threading layer is fixed per process):

* ``lock``: scg's design: the default ``workqueue`` layer, calls take turns through the kernels
  (``numba_cpu.RUN_LOCK``); reported for 1 thread and for 4 threads sharing one estimator;
* ``lock-free serial``: the same single-thread loop with the lock replaced by a no-op (the lock's cost);
* ``omp``: ``NUMBA_THREADING_LAYER=omp`` (thread-safe), no lock, 4 threads;
* ``per-thread``: 4 threads, each with its own estimator compiled with serial kernels
  (``parallel=False``): no parallel region at all, so no lock is needed; compile cost reported.

Median seconds per call over the whole run (calls / wall time), HNCA bandit 32-64-64-4, batch 512.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # this checkout's scg, not an installed one
    sys.path.insert(0, str(ROOT))
CALLS = 64


def _graph():
    sys.path.insert(0, str(ROOT / "tests" / "backends"))
    from numba_graphs import bandit, data
    g = bandit(layers=2, d_in=32, hidden=64, k=4)
    return g, data(g, rows=512)


def worker(option: str, threads: int) -> dict:
    import numpy as np

    import scg
    from scg.backends import numba_cpu

    g, (params, inputs) = _graph()
    t0 = time.perf_counter()
    if option == "per-thread":
        from scg.backends.numba_cpu import NumbaProgram
        progs = []
        for _ in range(threads):
            est = scg.compile(g, estimator="hnca", backend="numpy")
            est.program = NumbaProgram(est.ir, "float64", parallel=False)
            progs.append(est)
    else:
        progs = [scg.compile(g, estimator="hnca", backend="numba")] * threads
    compile_s = time.perf_counter() - t0
    if option in ("lock-free", "omp"):
        numba_cpu.RUN_LOCK = contextlib.nullcontext()
    for est in progs:  # warm every program
        est(params, inputs, seed=0)
    ref = progs[0](params, inputs, seed=1).grads

    def run(i):
        for s in range(CALLS // threads):
            out = progs[i](params, inputs, seed=1 if s == 0 else s + 2)
            if s == 0:
                assert all(np.allclose(out.grads[k], ref[k], rtol=1e-12) for k in ref)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    try:
        layer = __import__("numba").threading_layer()
    except ValueError:  # no parallel region ran (per-thread programs are serial)
        layer = "none"
    return {"option": option, "threads": threads, "s_per_call": wall / CALLS, "compile_s": compile_s,
            "layer": layer}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2)
    ap.add_argument("--out", default=str(HERE / "results" / "threads.json"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    runs = [("lock", 1, {}), ("lock-free", 1, {}), ("lock", 4, {}), ("omp", 4, {"NUMBA_THREADING_LAYER": "omp"}),
            ("per-thread", 4, {})]
    results = []
    for rep in range(args.repeats):
        for option, threads, env in runs:
            proc = subprocess.run([sys.executable, __file__, "--worker", option, str(threads)], cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, check=False)
            if proc.returncode:
                res = {"option": option, "threads": threads, "error": f"rc={proc.returncode}",
                       "tail": proc.stderr[-300:]}
            else:
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["repeat"] = rep
            results.append(res)
            print(res, flush=True)
    summary = {}
    for option, threads, _ in runs:
        got = sorted(r["s_per_call"] for r in results if r["option"] == option and r["threads"] == threads
                     and "s_per_call" in r)
        if got:
            summary[f"{option} x{threads}"] = {"median_ms_per_call": 1e3 * got[len(got) // 2],
                                               "runs": len(got)}
    base = summary.get("lock x1", {}).get("median_ms_per_call")
    for v in summary.values():
        v["ratio_to_lock_x1"] = v["median_ms_per_call"] / base if base else None
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "note": "2 shared cores; other jobs were running on the machine during the run"}
    Path(args.out).write_text(json.dumps({"summary": summary, "runs": results, "machine": machine}, indent=1))
    for k, v in summary.items():
        print(f"{k:16s} {v['median_ms_per_call']:8.2f} ms/call  x{v['ratio_to_lock_x1']:.2f}")


if __name__ == "__main__":
    main()
