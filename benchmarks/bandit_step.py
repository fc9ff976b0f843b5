"""Side-by-side benchmark of one estimator step on the HNCA contextual-bandit network.

    python benchmarks/bandit_step.py [--quick] [--out benchmarks/results/bandit_step.json]

Network: 784 -> 200 -> 200 -> 200 Bernoulli units -> 10-way softmax action, cost
``-[a == label]`` (Young 2022, "Hindsight Network Credit Assignment", contextual bandit
on MNIST), float32. One step = forward sampling + credit + parameter gradients.

Implementations, all fed the same float32 parameters and inputs:

* ``scg-numpy``  scg's NumPy reference backend (``scg.compile(..., backend="numpy")``);
* ``scg-numba``  scg's Numba CPU backend, when ``scg.compile(..., backend="numba")`` works;
* ``torch``      a straightforward PyTorch eager version (``torch_bandit.py``);
* ``jax``        the same in JAX, the whole step under ``jax.jit`` (``jax_bandit.py``).

Every configuration runs in a fresh subprocess (so peak memory is its own), one after
the other, never two at once. Also measured: a gradient cross-check (scg's samples fed
through the PyTorch and JAX code), the machine floor (``floor.py``) and an HNCA width
sweep. Results: a table on stdout and JSON at ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
from bandit_common import ESTIMATORS, describe_environment, load_data

IMPLS = ("scg-numpy", "scg-numba", "torch", "jax")
QUICK_SWEEP, FULL_SWEEP = [400], [100, 200, 400, 800, 1600]

HOW = {
    "scg-numpy": "scg.compile(graph, estimator=E, backend='numpy', precision='float32'): the derived estimator "
                 "IR run by the NumPy reference interpreter (HNCA counterfactuals in row chunks of a "
                 "(rows, parents, children) tensor, hnca_affine_delta)",
    "scg-numba": "scg.compile(graph, estimator=E, backend='numba', precision='float32'): generated Numba kernels",
    "torch": "PyTorch eager float32, autograd on a surrogate loss; HNCA counterfactuals as materialised "
             "(rows, parents, children) tensors under no_grad; MuProp's f'(xbar) by torch.autograd.grad",
    "jax": "JAX float32, the whole step (sampling, credit, jax.grad of the surrogate) under one jax.jit; "
           "same math as torch; XLA fuses the broadcasted counterfactuals",
}
ESTIMATOR_HOW = {
    "reinforce": "score function for every unit, Qhat = the row's cost (no baseline): "
                 "dl_k = (h_k - sigmoid(l_k)) R, dl_a = (onehot(a) - softmax(l_a)) R",
    "hnca": "hidden unit u: dl = (qhat(1) - sigmoid(l)) R, qhat(1) = sigmoid(l + delta), delta = log L(u=1) - "
            "log L(u=0) over u's child layer (counterfactual per row x parent x child); the action a (no "
            "stochastic children, cost depends on it directly) gets f-HNCA's exact local sum "
            "d/dl_a sum_v softmax(l_a)_v cost(v); no baseline",
    "muprop": "mean-field pass xbar, f(xbar) = -softmax(l_bar)[y], f'(xbar_k) by autodiff; hidden layer k: "
              "score term with sg(R - f(xbar) - f'(xbar_k).(h_k - xbar_k)) plus analytic term "
              "sigmoid(l_k).sg(f'(xbar_k)); action: score term with sg(R - f(xbar))",
}


# ====================================================================================
# worker side (runs in a fresh subprocess per configuration)
# ====================================================================================
def _proc_stat_busy() -> float | None:
    """Seconds of CPU time used by the whole machine so far (all CPUs, non-idle)."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
        vals = [int(v) for v in parts]
        busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _make_scg_step(cfg, params, x, y):
    from bandit_common import build_graph

    import scg

    backend = cfg["impl"].removeprefix("scg-")
    est = scg.compile(build_graph(tuple(cfg["widths"])), estimator=cfg["estimator"], backend=backend,
                      precision="float32")
    inputs = {"x": x, "y": y}
    counter = {"seed": 0}

    def run():
        counter["seed"] += 1
        return est(params, inputs, seed=counter["seed"]).grads

    return run


def worker_time(cfg: dict) -> dict:
    from bandit_common import init_params, peak_mb, reset_peak, rss_mb

    impl = cfg["impl"]
    if impl.startswith("scg-"):
        import scg  # noqa: F401
        if impl == "scg-numba":  # the backend's library is part of the baseline, like torch and jax
            import numba
            import scipy.linalg  # noqa: F401
    elif impl == "torch":
        import torch  # noqa: F401
        import torch_bandit
    elif impl == "jax":
        import jax  # noqa: F401
        import jax_bandit
    data = np.load(cfg["data"])
    b = cfg["batch"]
    x, y = np.ascontiguousarray(data["x"][:b]), np.ascontiguousarray(data["y"][:b])
    params = init_params(tuple(cfg["widths"]))
    base = rss_mb()
    have_reset = reset_peak()
    t0 = time.perf_counter()
    if impl.startswith("scg-"):
        step = _make_scg_step(cfg, params, x, y)
    elif impl == "torch":
        step = torch_bandit.make_step(cfg["estimator"], params, x, y)
    else:
        step = jax_bandit.make_step(cfg["estimator"], params, x, y)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    step()
    t_first = time.perf_counter() - t0
    budget = cfg.get("budget_s", 60.0)
    n_warm = max(0, min(cfg["warmup"] - 1, int(budget * 0.25 / max(t_first, 1e-6))))
    t_step = t_first
    for _ in range(n_warm):
        t0 = time.perf_counter()
        step()
        t_step = time.perf_counter() - t0
    peak_warm = peak_mb() - base
    reset_peak()
    rss_before_timed = rss_mb() - base
    n_timed = max(cfg.get("min_repeats", 3), min(cfg["repeats"], int(budget * 0.75 / max(t_step, 1e-6))))
    times = []
    import resource

    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    busy0, own0, w0 = _proc_stat_busy(), _own_cpu(), time.perf_counter()
    for _ in range(n_timed):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    busy1, own1, w1 = _proc_stat_busy(), _own_cpu(), time.perf_counter()
    flt1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    peak_timed = peak_mb() - base
    others = None
    if busy0 is not None:
        others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / ((w1 - w0) * (os.cpu_count() or 1)))
    ts = np.array(times)
    extra = {}
    if impl == "scg-numba":
        try:
            import numba

            extra["numba_threading_layer"] = numba.threading_layer()
        except (ImportError, ValueError):  # ValueError: no parallel region has run
            extra["numba_threading_layer"] = None
    return {
        **extra,
        **{k: cfg[k] for k in ("impl", "estimator", "batch", "widths", "kind")},
        "median_s": float(np.median(ts)), "min_s": float(ts.min()),
        "q25_s": float(np.percentile(ts, 25)), "q75_s": float(np.percentile(ts, 75)),
        "times_s": [float(t) for t in ts], "warmup_steps": 1 + n_warm, "timed_steps": n_timed,
        "build_s": t_build, "first_step_s": t_first,
        "baseline_rss_mb": base, "peak_extra_mb": max(peak_warm, peak_timed),
        "peak_extra_steady_mb": peak_timed, "retained_extra_mb": rss_before_timed,
        "peak_reset_supported": have_reset,
        "other_processes_cpu_frac": others,
        "own_cpu_per_wall": (own1 - own0) / (w1 - w0),
        "minor_faults_per_step": (flt1 - flt0) / n_timed,
    }


def worker_crosscheck(cfg: dict) -> dict:
    """Feed scg's samples through the torch and JAX code; compare the gradients."""
    from bandit_common import build_graph, init_params

    import scg

    data = np.load(cfg["data"])
    b = cfg["batch"]
    x, y = data["x"][:b], data["y"][:b]
    params = init_params()
    g = build_graph()
    report = {"batch": b, "seeds": cfg["seeds"], "metric": "max_k max|g_other - g_scg| / max|g_scg| per param",
              "results": []}
    comparators = {}
    try:
        import torch
        import torch_bandit

        comparators["torch"] = lambda e, s, prec: torch_bandit.grads_given_samples(
            e, params, x, y, s, dtype=torch.float32 if prec == "float32" else torch.float64)
    except ImportError as exc:
        report["torch"] = f"skipped: {exc}"
    try:
        import jax_bandit

        comparators["jax"] = lambda e, s, prec: jax_bandit.grads_given_samples(e, params, x, y, s)
    except ImportError as exc:
        report["jax"] = f"skipped: {exc}"
    numba_est = {}
    for e in ESTIMATORS:
        for prec in ("float32", "float64"):
            est = scg.compile(g, estimator=e, backend="numpy", precision=prec)
            for seed in cfg["seeds"]:
                out = est(params, {"x": x, "y": y}, seed=seed)
                for name, fn in comparators.items():
                    if name == "jax" and prec == "float64":
                        continue  # JAX runs float32 unless jax_enable_x64
                    other = fn(e, out.samples, prec)
                    err = {k: float(np.abs(other[k] - out.grads[k]).max() / (np.abs(out.grads[k]).max() + 1e-30))
                           for k in out.grads}
                    tol = cfg["tol"][prec]
                    worst = max(err, key=err.get)
                    report["results"].append({
                        "estimator": e, "precision": prec, "seed": seed, "against": name,
                        "max_rel_err": err[worst], "worst_param": worst, "tol": tol, "ok": err[worst] <= tol,
                        "cost": out.cost})
            if prec == "float32" and cfg.get("numba"):
                try:
                    if e not in numba_est:
                        numba_est[e] = scg.compile(g, estimator=e, backend="numba", precision=prec)
                    for seed in cfg["seeds"]:
                        ref = est(params, {"x": x, "y": y}, seed=seed)
                        out = numba_est[e](params, {"x": x, "y": y}, seed=seed)
                        same = all(np.array_equal(out.samples[k], ref.samples[k]) for k in ref.samples)
                        err = {k: float(np.abs(out.grads[k] - ref.grads[k]).max()
                                        / (np.abs(ref.grads[k]).max() + 1e-30)) for k in ref.grads}
                        worst = max(err, key=err.get)
                        report["results"].append({
                            "estimator": e, "precision": prec, "seed": seed, "against": "scg-numba vs scg-numpy",
                            "same_samples": same, "max_rel_err": err[worst], "worst_param": worst,
                            "tol": cfg["tol"][prec], "ok": same and err[worst] <= cfg["tol"][prec]})
                except Exception as exc:  # noqa: BLE001  (report, do not crash the benchmark)
                    report["results"].append({"estimator": e, "against": "scg-numba vs scg-numpy",
                                              "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    report["all_ok"] = all(r["ok"] for r in report["results"])
    return report


def worker_floor(cfg: dict) -> dict:
    import floor

    m = floor.measure(quick=cfg["quick"])
    out = {"measured": m, "counts": {}, "floor_s": {}, "floor_store_s": {}}
    for e in ESTIMATORS:
        for b in cfg["batches"]:
            c = floor.counts(e, b)
            key = f"{e}/{b}"
            out["counts"][key] = c
            out["floor_s"][key] = floor.floor_seconds(c, m["rates"])
            out["floor_store_s"][key] = floor.floor_seconds(c, m["rates_store"])
    for w in cfg["widths"]:
        c = floor.counts("hnca", cfg["sweep_batch"], (w, w, w))
        out["counts"][f"sweep/{w}"] = c
        out["floor_s"][f"sweep/{w}"] = floor.floor_seconds(c, m["rates"])
        out["floor_store_s"][f"sweep/{w}"] = floor.floor_seconds(c, m["rates_store"])
    return out


def worker_probe(cfg: dict) -> dict:
    """Which implementations can run here (cheap: import + compile, no timing)."""
    out = {}
    try:
        from bandit_common import build_graph

        import scg
        from scg.backends.registry import BACKENDS

        out["scg-numpy"] = {"ok": True}
        if "numba" not in BACKENDS:
            out["scg-numba"] = {"ok": False, "why": "'numba' not in scg.backends.registry.BACKENDS "
                                                    f"(have: {', '.join(sorted(BACKENDS))})"}
        else:
            try:
                scg.compile(build_graph(), estimator="hnca", backend="numba", precision="float32")
                out["scg-numba"] = {"ok": True}
            except scg.ScgError as exc:
                out["scg-numba"] = {"ok": False, "why": f"scg.compile(..., backend='numba') raised "
                                                        f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # noqa: BLE001
        out["scg-numpy"] = {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
        out.setdefault("scg-numba", {"ok": False, "why": "scg itself failed"})
    for name, mod in (("torch", "torch"), ("jax", "jax")):
        try:
            m = __import__(mod)
            out[name] = {"ok": True, "version": m.__version__}
        except ImportError as exc:
            out[name] = {"ok": False, "why": f"not installed ({exc}); pip install -e '.[bench]'"}
    out["environment"] = describe_environment()
    return out


def worker_compile(cfg: dict) -> dict:
    """Time ``scg.compile`` + the first call with an empty kernel cache, then again from the cache."""
    from bandit_common import build_graph, init_params

    import scg

    data = np.load(cfg["data"])
    x, y = data["x"][:50], data["y"][:50]
    params = init_params()
    out = {}
    for label in ("cold", "warm_cache_same_process"):
        t0 = time.perf_counter()
        est = scg.compile(build_graph(), estimator=cfg["estimator"], backend="numba", precision="float32")
        t1 = time.perf_counter()
        est(params, {"x": x, "y": y}, seed=1)
        t2 = time.perf_counter()
        out[label] = {"compile_s": t1 - t0, "first_call_s": t2 - t1, "total_s": t2 - t0}
    return out


WORKERS = {"compile": worker_compile, "time": worker_time, "crosscheck": worker_crosscheck, "floor": worker_floor, "probe": worker_probe}


# ====================================================================================
# driver side
# ====================================================================================
def _others_busy(seconds: float = 1.0) -> float | None:
    """Fraction of the machine's CPU used by other processes over ``seconds``."""
    b0, o0 = _proc_stat_busy(), _own_cpu()
    time.sleep(seconds)
    b1, o1 = _proc_stat_busy(), _own_cpu()
    if b0 is None:
        return None
    return max(0.0, ((b1 - b0) - (o1 - o0)) / (seconds * (os.cpu_count() or 1)))


def wait_quiet(max_wait: float, threshold: float = 0.1, log=print) -> float | None:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` of the CPUs."""
    t0 = time.time()
    busy = _others_busy(0.5)
    announced = False
    while busy is not None and busy > threshold and time.time() - t0 < max_wait:
        if not announced:
            log(f"  (machine busy: other processes use {busy:.0%} of the CPUs; waiting up to {max_wait:.0f} s)")
            announced = True
        busy = _others_busy(1.0)
    return busy


def run_worker(kind: str, cfg: dict, timeout: float, threads: int | None = None, extra_env=None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(cfg)]
    env = dict(os.environ, **(extra_env or {}))
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
        env["SCG_BENCH_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def fmt_ms(s: float | None) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{a / b:.2f}x"


def fmt_mb(m: float | None) -> str:
    return "-" if m is None else f"{m:.0f}"


def build_tables(results: list[dict], floor_out: dict | None, impls: list[str]) -> str:
    """Markdown tables: step times (+ ratios, floor), peak memory, HNCA width sweep.

    A time marked ``*`` was measured while other processes used > 10% of the CPUs.
    """
    by = {(r["impl"], r["estimator"], r["batch"], tuple(r["widths"]), r["kind"]): r
          for r in results if "median_s" in r}
    main_w = (200, 200, 200)

    def get(impl, e, b, w=main_w, kind="main"):
        return by.get((impl, e, b, tuple(w), kind))

    def med(impl, e, b, w=main_w, kind="main"):
        r = get(impl, e, b, w, kind)
        return None if r is None else r["median_s"]

    def cell(impl, e, b, w=main_w, kind="main"):
        r = get(impl, e, b, w, kind)
        if r is None:
            return "-"
        busy = (r.get("other_processes_cpu_frac") or 0) > 0.1
        pm = r.get("process_medians_s") or [r["median_s"]]
        return fmt_ms(r["median_s"]) + ("*" if busy else "") + ("~" if max(pm) > 1.3 * min(pm) else "")

    def mem(impl, e, b, w=main_w, kind="main"):
        r = get(impl, e, b, w, kind)
        return "-" if r is None else f"{r['peak_extra_mb']:.0f} ({r['retained_extra_mb']:.0f})"

    cols = [i for i in IMPLS if i in impls]
    ratio_cols = []
    for s in ("scg-numpy", "scg-numba"):
        if s in cols:
            ratio_cols += [(s, o) for o in ("torch", "jax") if o in cols]
    if "scg-numpy" in cols and "scg-numba" in cols:
        ratio_cols.append(("scg-numba", "scg-numpy"))

    def table(hdr, rows):
        out = ["| " + " | ".join(hdr) + " |", "|" + "|".join("---" for _ in hdr) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return out

    lines = ["Median step time, ms (floor: machine floor of the step, see floor.py; ratio < 1: scg faster):", ""]
    main_keys = sorted({(r["estimator"], r["batch"]) for r in results if r.get("kind") == "main"},
                       key=lambda k: (ESTIMATORS.index(k[0]), k[1]))
    rows = []
    for e, b in main_keys:
        fl = None if not floor_out else floor_out["floor_s"].get(f"{e}/{b}")
        rows.append([e, str(b)] + [cell(c, e, b) for c in cols] + [fmt_ms(fl)]
                    + [fmt_ratio(med(x, e, b), med(y, e, b)) for x, y in ratio_cols])
    lines += table(["estimator", "batch"] + cols + ["floor"] + [f"{a} / {b}" for a, b in ratio_cols], rows)
    lines += ["", ("Peak extra memory, MB over the after-import, after-data baseline (RSS high-water mark over "
                   "compile, warm-up and timed steps); in brackets what stays resident between steps "
                   "(compiled code, caches, buffers):"), ""]
    rows = [[e, str(b)] + [mem(c, e, b) for c in cols] for e, b in main_keys]
    lines += table(["estimator", "batch"] + cols, rows)
    sweep = sorted({r["widths"][0] for r in results if r.get("kind") == "sweep"})
    if sweep:
        sb = next(r["batch"] for r in results if r.get("kind") == "sweep")
        lines += ["", (f"HNCA width sweep, batch {sb}, 784-w-w-w-10 (edges = 784w + 2w^2 + 10w); median ms, "
                       "then peak extra MB (whole run):"), ""]
        rows = []
        for w in sweep:
            ws = (w, w, w)
            fl = None if not floor_out else floor_out["floor_s"].get(f"sweep/{w}")
            row = [str(w), f"{784 * w + 2 * w * w + 10 * w:,}"]
            row += [cell(c, "hnca", sb, ws, "sweep") for c in cols] + [fmt_ms(fl)]
            row += [fmt_ratio(med(x, "hnca", sb, ws, "sweep"), med(y, "hnca", sb, ws, "sweep"))
                    for x, y in ratio_cols]
            row += [mem(c, "hnca", sb, ws, "sweep").split(" ")[0] for c in cols]
            rows.append(row)
        lines += table(["width", "edges"] + cols + ["floor"] + [f"{a} / {b}" for a, b in ratio_cols]
                       + [f"{c} MB" for c in cols], rows)
    if any((r.get("other_processes_cpu_frac") or 0) > 0.1 for r in results):
        lines += ["", "`*`: other processes used > 10% of the CPUs while this was timed (inflated)."]
    spread = [r for r in results if len(r.get("process_medians_s") or []) > 1
              and max(r["process_medians_s"]) > 1.3 * min(r["process_medians_s"])]
    if spread:
        lines += ["", ("`~`: the per-process medians of this configuration differ by more than 1.3x (pooled median "
                       "shown; see process_medians_s and minor_faults_per_step in the JSON).")]
    return "\n".join(lines)


def plan(args, available: list[str]) -> list[dict]:
    if args.quick:  # batch 1024 only for hnca (the point of the benchmark)
        batch_reps = {50: (2, 7), 1024: (1, 3)}
        sweep_widths, sweep_reps = QUICK_SWEEP, (1, 3)
        budget = 4.0
    else:
        batch_reps = {50: (5, 20), 1024: (3, 10)}
        sweep_widths, sweep_reps = FULL_SWEEP, (2, 7)
        budget = 40.0
    if args.budget is not None:
        budget = args.budget
    cfgs = []
    for e in ESTIMATORS:
        for b, (w, r) in batch_reps.items():
            if args.quick and b > 50 and e != "hnca":
                continue
            for impl in available:
                cfgs.append({"kind": "main", "impl": impl, "estimator": e, "batch": b, "widths": [200, 200, 200],
                             "warmup": w, "repeats": r, "budget_s": budget})
    if not args.no_sweep:
        for width in sweep_widths:
            for impl in available:
                cfgs.append({"kind": "sweep", "impl": impl, "estimator": "hnca", "batch": args.sweep_batch,
                             "widths": [width] * 3, "warmup": sweep_reps[0], "repeats": sweep_reps[1],
                             "budget_s": budget, "min_repeats": 2})
    return cfgs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, shorter sweep (~1-2 minutes)")
    ap.add_argument("--out", default=str(HERE / "results" / "bandit_step.json"), help="JSON output path")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument("--no-sweep", action="store_true", help="skip the width sweep")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of steps per configuration and process (default 40, 4 with --quick)")
    ap.add_argument("--sweep-batch", type=int, default=50)
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="before each configuration, wait up to this many seconds for other processes to "
                         "leave the CPUs idle (0: never wait; default 60, 10 with --quick); the contention "
                         "seen during each timing is recorded either way")
    ap.add_argument("--max-total-wait", type=float, default=None,
                    help="cap on the total time spent waiting for a quiet machine (default 300, 30 with --quick)")
    ap.add_argument("--retries", type=int, default=1,
                    help="re-time a configuration this many times when other processes used >10%% of the CPUs "
                         "during its timing (the least contended attempt is kept)")
    ap.add_argument("--procs", type=int, default=None,
                    help="time each configuration in this many fresh processes and pool their steps "
                         "(default 2, 1 with --quick): some step times depend on the process's allocator state")
    ap.add_argument("--malloc-tuned", action="store_true",
                    help="run the workers with glibc's MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised so "
                         "freed large temporaries are reused instead of returned to the OS (fewer page faults)")
    ap.add_argument("--threads", type=int, default=None,
                    help="run every worker with this many threads (sets OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, "
                         "torch.set_num_threads, and pins the worker to that many CPUs); default: libraries' own")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        kind, cfg = args.worker
        threads = int(os.environ.get("SCG_BENCH_THREADS", "0"))
        if threads and hasattr(os, "sched_setaffinity"):
            # pin to the first `threads` CPUs: every library then sees that many (JAX/XLA included)
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
        if threads and kind in ("time", "crosscheck", "floor"):
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
        result = WORKERS[kind](json.loads(cfg))
        print("@@RESULT " + json.dumps(result), flush=True)
        return 0

    if args.procs is None:
        args.procs = 1 if args.quick else 2
    if args.malloc_tuned:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)  # glibc's maximum on 64-bit
        os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 34)
    if args.wait_quiet is None:
        args.wait_quiet = 10.0 if args.quick else 60.0
    if args.max_total_wait is None:
        args.max_total_wait = 30.0 if args.quick else 300.0
    if args.wait_quiet <= 0:
        args.max_total_wait = 0.0
    t_start = time.time()

    def log(*a):
        print(*a, flush=True)

    x, y, data_desc = load_data(1024)
    fd, tmp_name = tempfile.mkstemp(prefix="scg_bandit_", suffix=".npz")
    os.close(fd)
    np.savez(tmp_name, x=x, y=y)
    try:
        probe = run_worker("probe", {}, timeout=300, threads=args.threads)
        env = probe.pop("environment", {})
        wanted = [i.strip() for i in args.impls.split(",") if i.strip()]
        available, skipped = [], {}
        for impl in wanted:
            info = probe.get(impl, {"ok": False, "why": probe.get("error", "unknown implementation")})
            if info.get("ok"):
                available.append(impl)
            else:
                skipped[impl] = info.get("why")
        log(f"scg bandit-step benchmark ({'quick' if args.quick else 'full'} run)")
        log(f"machine: {env.get('cpu')} ({', '.join(env.get('cpu_flags', []))}), {env.get('usable_cpus')} usable "
            f"CPUs, {env.get('mem_total_gb')} GB; python {env.get('python')}, numpy {env.get('numpy')}, "
            f"numba {env.get('numba')}, torch {env.get('torch')} ({env.get('torch_threads')} threads), "
            f"jax {env.get('jax')}")
        log(f"BLAS: {env.get('blas')}")
        log(f"threading env: {env.get('threading_env')}")
        log(f"data: {data_desc}")
        log(f"implementations: {', '.join(available)}")
        for impl, why in skipped.items():
            log(f"  skipped {impl}: {why}")

        log("cross-check: scg's samples (batch 32) through the torch/JAX gradient code; scg-numba vs scg-numpy "
            "with the same seed ...")
        cc = run_worker("crosscheck", {"data": tmp_name, "batch": 32, "seeds": [1, 2],
                                       "tol": {"float32": 2e-4, "float64": 1e-9},
                                       "numba": "scg-numba" in available}, timeout=600, threads=args.threads)
        if "error" in cc:
            log(f"  cross-check FAILED to run: {cc['error']}")
        else:
            for r in cc["results"]:
                if "error" in r:
                    log(f"  {r['estimator']:9s} {r['against']}: ERROR {r['error']}")
                    continue
                against = r["against"] if r["against"].startswith("scg-") else "scg-numpy vs " + r["against"]
                log(f"  {r['estimator']:9s} {r['precision']} seed {r['seed']} {against:24s} max rel err "
                    f"{r['max_rel_err']:.1e} ({r['worst_param']}) tol {r['tol']:.0e} "
                    f"{'ok' if r['ok'] else 'MISMATCH'}")
            for name in ("torch", "jax"):
                if name in cc:
                    log(f"  {name}: {cc[name]}")
            verdict = "all match" if cc["all_ok"] else "MISMATCHES (see above)"
            log(f"  cross-check: {verdict if cc['results'] else 'nothing to compare (no comparator available)'}")

        sweep_widths = QUICK_SWEEP if args.quick else FULL_SWEEP
        log("machine floor: measuring softplus and sgemm rates ...")
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet, log=log)
        fl = run_worker("floor", {"quick": args.quick, "batches": [50, 1024], "widths": sweep_widths,
                                  "sweep_batch": args.sweep_batch}, timeout=600, threads=args.threads)
        if "error" in fl:
            log(f"  floor FAILED: {fl['error']}")
            fl = None
        else:
            rates = fl["measured"]["rates"]
            log(f"  best softplus rate {rates['softplus_per_s'] / 1e9:.2f} G/s ({fl['measured']['softplus']['best']}), "
                f"best sgemm {rates['sgemm_flops_per_s'] / 1e9:.0f} GFLOP/s")
            for e in ESTIMATORS:
                for b in (50, 1024):
                    c = fl["counts"][f"{e}/{b}"]
                    log(f"  {e:9s} batch {b:4d}: {c['transcendentals'] / 1e6:7.2f} M transcendentals, "
                        f"{c['matmul_flops'] / 1e6:7.0f} MFLOP -> floor {fl['floor_s'][f'{e}/{b}'] * 1e3:.2f} ms")

        cfgs = plan(args, available)
        results = []
        log(f"timing {len(cfgs)} configurations, each in a fresh subprocess ...")
        wait_left = args.max_total_wait

        def timed_once(cfg):
            """One worker process, re-run (up to --retries) when other processes disturbed it."""
            nonlocal wait_left
            r = None
            for attempt in range(1 + args.retries):
                t_wait = time.time()
                busy = wait_quiet(min(args.wait_quiet, wait_left), log=log) if wait_left > 0 else None
                wait_left -= time.time() - t_wait
                new = run_worker("time", cfg, timeout=120 + 3 * cfg["budget_s"], threads=args.threads)
                new["others_busy_before"] = busy
                new["attempt"] = attempt + 1
                if r is None or "error" in r or (
                        "error" not in new
                        and (new.get("other_processes_cpu_frac") or 0) < (r.get("other_processes_cpu_frac") or 0)):
                    r = new
                contention = r.get("other_processes_cpu_frac")
                if "error" in r or contention is None or contention <= 0.1 or wait_left <= 0:
                    break
                log(f"  (other processes used {contention:.0%} of the CPUs during the timing; retrying)")
            return r

        for i, cfg in enumerate(cfgs, 1):
            cfg["data"] = tmp_name
            runs = [timed_once(cfg) for _ in range(args.procs)]
            good = [x for x in runs if "error" not in x]
            if not good:
                r = runs[0]
            else:
                # pool the timed steps of every process; keep the worst memory and contention
                r = dict(good[0])
                pooled = np.concatenate([x["times_s"] for x in good])
                r.update({
                    "median_s": float(np.median(pooled)), "min_s": float(pooled.min()),
                    "q25_s": float(np.percentile(pooled, 25)), "q75_s": float(np.percentile(pooled, 75)),
                    "times_s": [float(t) for t in pooled], "timed_steps": int(pooled.size),
                    "processes": len(good), "process_medians_s": [x["median_s"] for x in good],
                    "peak_extra_mb": max(x["peak_extra_mb"] for x in good),
                    "peak_extra_steady_mb": max(x["peak_extra_steady_mb"] for x in good),
                    "retained_extra_mb": max(x["retained_extra_mb"] for x in good),
                    "other_processes_cpu_frac": max((x.get("other_processes_cpu_frac") or 0) for x in good),
                    "minor_faults_per_step": [x.get("minor_faults_per_step") for x in good],
                    "first_step_s": [x["first_step_s"] for x in good],
                })
            r.update({k: cfg[k] for k in ("impl", "estimator", "batch", "widths", "kind")})
            results.append(r)
            label = f"[{i}/{len(cfgs)}] {cfg['kind']:5s} {cfg['impl']:9s} {cfg['estimator']:9s} " \
                    f"batch {cfg['batch']:4d} widths {cfg['widths'][0]:4d}"
            if "error" in r:
                log(f"{label}: ERROR {r['error']}")
            else:
                contention = r.get("other_processes_cpu_frac")
                pm = r.get("process_medians_s", [r["median_s"]])
                spread = "" if len(pm) < 2 else " per process " + "/".join(f"{m * 1e3:.3g}" for m in pm) + ";"
                log(f"{label}: median {r['median_s'] * 1e3:9.2f} ms (min {r['min_s'] * 1e3:.2f},{spread} "
                    f"{r['timed_steps']} timed) peak +{r['peak_extra_mb']:.0f} MB"
                    + (f"  [others used {contention:.0%} CPU]" if contention is not None and contention > 0.05
                       else ""))
        compile_times = {}
        if "scg-numba" in available and not args.quick:
            log("scg-numba compile time (fresh kernel cache per estimator, then a new process on that cache):")
            for e in ESTIMATORS:
                with tempfile.TemporaryDirectory(prefix="scg_bench_cache_") as cache:
                    cold = run_worker("compile", {"data": tmp_name, "estimator": e}, timeout=600,
                                      threads=args.threads, extra_env={"SCG_CACHE_DIR": cache})
                    warm = run_worker("compile", {"data": tmp_name, "estimator": e}, timeout=600,
                                      threads=args.threads, extra_env={"SCG_CACHE_DIR": cache})
                compile_times[e] = {"empty_cache": cold.get("cold", cold), "disk_cache": warm.get("cold", warm)}
                if "error" not in cold and "error" not in warm:
                    log(f"  {e:9s}: empty cache {cold['cold']['total_s']:.2f} s (compile {cold['cold']['compile_s']:.2f}"
                        f" + first call {cold['cold']['first_call_s']:.2f}); from disk cache, new process "
                        f"{warm['cold']['total_s']:.2f} s")
        table = build_tables(results, fl, available)
        log("")
        log(table)
        busy_runs = [r for r in results if (r.get("other_processes_cpu_frac") or 0) > 0.1]
        if busy_runs:
            log(f"\nNOTE: {len(busy_runs)} configuration(s) ran while other processes used >10% of the CPUs; "
                "their times are inflated (see other_processes_cpu_frac in the JSON).")
        out = {
            "benchmark": "HNCA contextual bandit, 784-200-200-200-10, float32, one estimator step",
            "mode": "quick" if args.quick else "full",
            "threads": args.threads or "library defaults",
            "processes_per_configuration": args.procs,
            "malloc_tuned": args.malloc_tuned,
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "environment": env,
            "data": data_desc,
            "implementations": {k: HOW[k] for k in available},
            "skipped": skipped,
            "estimators": ESTIMATOR_HOW,
            "crosscheck": cc,
            "scg_numba_compile_s": compile_times,
            "floor": fl,
            "results": results,
            "table_markdown": table,
            "wall_s": time.time() - t_start,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        log(f"\nwrote {args.out} ({time.time() - t_start:.0f} s)")
        return 0 if ("error" not in cc and cc.get("all_ok")) else 1
    finally:
        os.unlink(tmp_name)


if __name__ == "__main__":
    sys.exit(main())
