"""What the kernel cache's trust model costs: compile + first call of the HNCA bandit estimator in a fresh process.

Three ways to treat Numba's on-disk cache of scg's generated modules, side by side in one run:

* ``signed``  (scg's choice): Numba's cache files are HMAC-signed at write and verified before unpickling;
* ``stock``   Numba's own unsigned pickles (the old behaviour; a crafted file in the cache runs code);
* ``none``    no Numba disk cache for any function (every process compiles everything).

For each: ``cold`` = an empty cache dir, ``warm`` = a second fresh process on the cache the cold one
left. Each process times ``scg.compile(bandit, "hnca", "numba", float32)`` plus the first call on 50
rows (what a sweep worker pays before its first step). Medians over ``--repeats`` cold/warm pairs.

    python benchmarks/cache_trust.py --repeats 3 --out benchmarks/results/cache_trust.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("signed", "stock", "none")

_CHILD = """
import sys, time, json
t_start = time.perf_counter()
mode = sys.argv[1]
sys.path.insert(0, sys.argv[2])
from scg.backends import cache_trust
if mode == "stock":
    cache_trust.uninstall()
elif mode == "none":
    import numba.core.caching as caching, numba.core.dispatcher as dispatcher
    dispatcher.FunctionCache = lambda py_func: caching.NullCache()
import numpy as np
import scg
from bandit_common import build_graph, init_params
rng = np.random.default_rng(0)
x = (rng.random((50, 784)) < 0.3).astype(np.float32)
y = rng.integers(0, 10, 50)
params = init_params()
t0 = time.perf_counter()
est = scg.compile(build_graph(), estimator="hnca", backend="numba", precision="float32")
est(params, {"x": x, "y": y}, seed=1)
t1 = time.perf_counter()
print(json.dumps({"compile_and_first_call_s": t1 - t0, "process_s": t1 - t_start}))
"""


def run_child(mode: str, cache: str) -> dict:
    env = {**os.environ, "SCG_CACHE_DIR": cache, "SCG_CACHE_KEY": "benchmark"}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _CHILD, mode, str(HERE)], capture_output=True, text=True,
                         env=env, cwd=HERE.parent, timeout=1800, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def verify_cost(cache: str, repeats: int = 20) -> dict:
    """Bytes of Numba cache files the signed cache checks on a warm start, and the time to check them all."""
    os.environ["SCG_CACHE_KEY"] = "benchmark"
    from scg.backends import cache_trust

    files = sorted(Path(cache, "__pycache__").glob("*.nb[ic]"))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in files:
            assert cache_trust.verified_payload(f) is not None
        times.append(time.perf_counter() - t0)
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files), "verify_all_s": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bandit_common import describe_environment

    sys.path.insert(0, str(HERE.parent))
    modes = [m for m in MODES if m in args.modes]
    runs: dict[str, dict[str, list[dict]]] = {m: {"cold": [], "warm": []} for m in modes}
    verify: list[dict] = []
    for rep in range(args.repeats):
        for mode in modes:  # interleaved, so machine load drifts hit every mode alike
            with tempfile.TemporaryDirectory(prefix=f"scg-trust-{mode}-") as cache:
                for phase in ("cold", "warm"):
                    r = run_child(mode, cache)
                    runs[mode][phase].append(r)
                    print(f"rep {rep} {mode:6s} {phase}: compile+first call {r['compile_and_first_call_s']:.2f} s, "
                          f"process {r['process_s']:.2f} s", flush=True)
                if mode == "signed":
                    verify.append(verify_cost(cache))
                    print(f"rep {rep} signed: checking {verify[-1]['files']} files, {verify[-1]['bytes']:,} bytes: "
                          f"{verify[-1]['verify_all_s'] * 1e3:.2f} ms", flush=True)
    table = ["| mode | cold: compile + first call (median s) | warm: compile + first call (median s) | warm / signed warm |",
             "|---|---|---|---|"]
    med = {m: {p: statistics.median(r["compile_and_first_call_s"] for r in runs[m][p]) for p in ("cold", "warm")}
           for m in modes}
    base = med.get("signed", med[modes[0]])["warm"]
    for m in modes:
        table.append(f"| {m} | {med[m]['cold']:.2f} | {med[m]['warm']:.2f} | {med[m]['warm'] / base:.2f} |")
    print("\n".join(table))
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "medians": med, "table": table, "verify": verify,
                                        "environment": describe_environment()}, indent=1))


if __name__ == "__main__":
    main()
