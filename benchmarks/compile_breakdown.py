"""Where the cold-compile seconds of a numba estimator go, and compile against depth.

    python benchmarks/compile_breakdown.py            # ~2-4 minutes; writes benchmarks/results/compile_breakdown.json

Each measurement is a fresh process with an empty kernel cache (cold) followed by a second
process on the same cache (warm). Phases: importing numba, deriving the estimator IR (what the
numpy backend does), loading the runtime module, importing the generated kernel module (Numba
compiles every distinct kernel here, explicit signatures) and the first call. Numba's own
``numba:compile`` events give the seconds per compiled function (kernels and the runtime
helpers they call). Depth sweep: the 64-wide HNCA net with a softmax output, 1, 4 and 16
Bernoulli layers (issue 13's measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _graph(kind: str):
    sys.path.insert(0, str(HERE))
    import numpy as np

    import scg
    if kind == "bandit":
        from bandit_common import build_graph, init_params, load_data
        g = build_graph()
        params = {k: v.astype(np.float32) for k, v in init_params().items()}
        x, y, _ = load_data(50)
        return g, params, {"x": x.astype(np.float32), "y": y}
    layers = int(kind.removeprefix("deep"))
    g = scg.Graph(f"deep{layers}")
    with g:
        x = scg.input("x", shape=(64,))
        y = scg.input("y", dtype="int64")
        prev = x
        for i in range(layers):
            w = scg.param(f"W{i}", shape=(64, 64))
            prev = scg.sample(f"h{i}", scg.Bernoulli(logits=prev @ w))
        a = scg.sample("a", scg.Categorical(logits=prev @ scg.param("Wo", shape=(64, 10))))
        scg.cost("c", -scg.equal(a, y))
    params = {k: v.astype(np.float32) for k, v in g.init_params(seed=0).items()}
    gen = np.random.default_rng(0)
    return g, params, {"x": gen.random((50, 64), dtype=np.float32), "y": gen.integers(0, 10, 50)}


def worker(kind: str, estimator: str) -> dict:
    t0 = time.perf_counter()
    import numba
    from numba.core import event
    t_import = time.perf_counter() - t0

    from scg.backends import numba_cpu
    from scg.backends.numba_cpu import NumbaProgram
    from scg.estimators.derive import derive
    g, params, inputs = _graph(kind)
    t0 = time.perf_counter()
    ir = derive(g, estimator, None).graph
    t_derive = time.perf_counter() - t0
    t0 = time.perf_counter()
    numba_cpu.runtime_module("float32")
    t_runtime = time.perf_counter() - t0
    with event.install_recorder("numba:compile") as rec:
        t0 = time.perf_counter()
        prog = NumbaProgram(ir, "float32")
        t_kernels = time.perf_counter() - t0
        t0 = time.perf_counter()
        prog.run(params, inputs, seed=0, state={})
        t_first = time.perf_counter() - t0
    per_fn: dict[str, float] = {}
    starts = {}
    for ts, ev in rec.buffer:
        disp = (ev.data or {}).get("dispatcher")
        name = getattr(getattr(disp, "py_func", None), "__qualname__", "?")
        key = (name, str((ev.data or {}).get("args")))
        if ev.is_start:
            starts[key] = ts
        elif key in starts:  # inclusive: a kernel's time includes the runtime helpers it compiles
            per_fn[name] = per_fn.get(name, 0.0) + ts - starts.pop(key)
    rows = [k for k in prog.plan.kernels if k.kind == "rows"]
    return {"kind": kind, "estimator": estimator, "import_numba_s": t_import, "derive_s": t_derive,
            "runtime_module_s": t_runtime, "kernel_module_s": t_kernels, "first_call_s": t_first,
            "ir_nodes": len(ir.nodes), "steps": len(prog.plan.kernels), "rows_kernels": len(rows),
            "compiled_kernels": prog.source.count("@njit("), "numba_compile_s_by_function": per_fn,
            "numba": numba.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2)
    ap.add_argument("--out", default=str(HERE / "results" / "compile_breakdown.json"))
    ap.add_argument("--cases", default="bandit:hnca,bandit:reinforce,deep1:hnca,deep4:hnca,deep16:hnca")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    results = []
    for case in args.cases.split(","):
        kind, est = case.split(":")
        with tempfile.TemporaryDirectory() as cache:
            for phase in ("cold", "warm"):
                env = {**os.environ, "SCG_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--worker", kind, est], cwd=ROOT, env=env,
                                      capture_output=True, text=True, check=False)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    res = {"kind": kind, "estimator": est, "error": proc.stderr[-500:]}
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                res.update(phase=phase, process_wall_s=wall)
                results.append(res)
                short = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()
                         if k != "numba_compile_s_by_function"}
                print(short, flush=True)
                _write(args.out, results)


def _write(out: str, results: list) -> None:
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "load_average_at_end": os.getloadavg(),
               "note": "2 cores shared with other jobs during the run: absolute seconds are inflated, "
                       "compare phases and cases within the run"}
    Path(out).write_text(json.dumps({"runs": results, "machine": machine}, indent=1))


if __name__ == "__main__":
    main()
