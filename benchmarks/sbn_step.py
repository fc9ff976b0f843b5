"""Side-by-side benchmark of one SBN-VAE gradient step: scg (Numba) vs PyTorch eager vs JAX jit.

    python benchmarks/sbn_step.py [--quick] [--out benchmarks/results/sbn_step.json]

Model: the linear one-layer SBN VAE of ``examples/sbn_zoo.py`` (784 -> 200 Bernoulli ->
784, learned prior, cost = -ELBO per row), float32, binarised MNIST rows; see
``sbn_common.py``. One step = sampling (K draws per row) + the estimator's extra
evaluations + every parameter gradient, no optimiser update. Estimators: rloo (K=2),
muprop, hnca (f-HNCA on the ELBO), arm, disarm, vimco (K=5, the IWAE bound), concrete
and gumbel_st (temperature 0.5).

Implementations, all fed the same float32 parameters and rows:

* ``scg-numba``  ``scg.compile(g, estimator=E, backend="numba", precision="float32")``,
  called as ``est(params, {"x": X}, seed=s, n_samples=K)``, a new seed every step;
* ``torch``      ``torch_sbn.py``: the same estimator by hand, PyTorch eager + autograd;
* ``jax``        ``jax_sbn.py``: the same, the whole step (noise, surrogate, ``jax.grad``)
  under one ``jax.jit``, blocking on the result.

Before any timing, a cross-check: scg-numpy (float64, 16 rows, seeds 1 and 2) draws; its
noise and samples go through the torch and JAX code (JAX with x64 enabled), and every
gradient must agree to 1e-9 relative; scg-numba (float32) must draw the same samples as
scg-numpy (float32) and agree with its gradients to 1e-4 relative.

Timing: every configuration runs in a fresh subprocess, one at a time; ``--procs`` passes
over the whole plan (configurations interleaved, so load drift hits every implementation
alike); medians pool the timed steps of all passes. Threads: ``--threads`` (default 1) for
every library (BLAS/OpenMP/Numba env vars, ``torch.set_num_threads``, XLA's
``intra_op_parallelism_threads``). Memory: peak RSS (VmHWM) over build, warm-up and timed
steps minus the RSS after imports and data (``bandit_common``'s probes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np
from bandit_common import describe_environment, peak_mb, reset_peak, rss_mb
from bandit_step import _own_cpu, _proc_stat_busy, fmt_mb, fmt_ms
from sbn_common import ESTIMATORS

IMPLS = ("scg-numba", "torch", "jax")
BATCHES = (50, 1024)
TARGET = 2.0  # issue 11: every scg estimator step >= 2x faster than both comparators


# ====================================================================================
# worker side (a fresh subprocess per configuration)
# ====================================================================================
def _make_step(cfg, params, x):
    impl, label = cfg["impl"], cfg["label"]
    if impl == "scg-numba":
        from sbn_common import compile_scg

        est = compile_scg(label, backend="numba", precision="float32")
        inputs, k, counter = {"x": x}, ESTIMATORS[label][2], {"seed": 0}

        def step():
            counter["seed"] += 1
            return est(params, inputs, seed=counter["seed"], n_samples=k).grads

        return step
    if impl == "torch":
        import torch_sbn

        return torch_sbn.make_step(label, params, x)
    import jax_sbn

    return jax_sbn.make_step(label, params, x)


def worker_time(cfg: dict) -> dict:
    import resource

    from sbn_common import init_params, load_rows

    if cfg["impl"] == "scg-numba":  # the backend's libraries are part of the baseline, like torch and jax
        import numba  # noqa: F401
        import scipy.linalg  # noqa: F401

        import scg  # noqa: F401
    elif cfg["impl"] == "torch":
        import torch

        torch.set_num_threads(cfg["threads"])
    else:
        import jax  # noqa: F401
    x, _ = load_rows(cfg["batch"])
    params = init_params()
    base = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    step = _make_step(cfg, params, x)
    step()
    t_first = time.perf_counter() - t0   # build + compile (scg kernels, jax.jit) + the first step
    budget = cfg["budget_s"]
    t_step = t_first
    for _ in range(cfg["warmup"]):
        t0 = time.perf_counter()
        step()
        t_step = time.perf_counter() - t0
        if t_step * cfg["warmup"] > budget * 0.3:
            break
    n_timed = max(cfg["min_repeats"], min(cfg["repeats"], int(budget * 0.7 / max(t_step, 1e-6))))
    times = []
    busy0, own0, w0 = _proc_stat_busy(), _own_cpu(), time.perf_counter()
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n_timed):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    busy1, own1, w1 = _proc_stat_busy(), _own_cpu(), time.perf_counter()
    others = None
    if busy0 is not None:
        others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / ((w1 - w0) * (os.cpu_count() or 1)))
    return {"median_s": float(np.median(times)), "times_s": times, "first_s": t_first,
            "peak_extra_mb": peak_mb() - base, "baseline_rss_mb": base, "other_processes_cpu_frac": others,
            "own_cpu_per_wall": (own1 - own0) / (w1 - w0),
            "minor_faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0) / n_timed}


def worker_crosscheck(cfg: dict) -> dict:
    from sbn_common import compile_scg, init_params, load_rows, reference, rel_err

    results, skipped = [], {}
    comparators = {}
    try:
        import torch_sbn

        comparators["torch"] = lambda lab, p, x, u, z: torch_sbn.grads_given_noise(lab, p, x, u, z)
    except ImportError as exc:
        skipped["torch"] = str(exc)
    try:
        import jax
        import jax_sbn

        def jax_grads(lab, p, x, u, z):
            with jax.enable_x64(True):
                return jax_sbn.grads_given_noise(lab, p, x, u, z)

        comparators["jax"] = jax_grads
    except ImportError as exc:
        skipped["jax"] = str(exc)
    x32, _ = load_rows(cfg["rows"])
    p32 = init_params()
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    x64 = x32.astype(np.float64)
    for label in cfg["labels"]:
        k = ESTIMATORS[label][2]
        for seed in cfg["seeds"]:
            out, u, z = reference(label, p64, x64, seed)
            for name, fn in comparators.items():
                err, worst = rel_err(fn(label, p64, x64, u, z), out.grads)
                results.append({"label": label, "seed": seed, "against": f"{name} (float64)", "max_rel_err": err,
                                "worst_param": worst, "tol": 1e-9, "ok": err <= 1e-9})
            ref32 = compile_scg(label, backend="numpy", precision="float32")(p32, {"x": x32}, seed=seed, n_samples=k)
            fast = compile_scg(label, backend="numba", precision="float32")(p32, {"x": x32}, seed=seed, n_samples=k)
            same = all(np.array_equal(fast.samples[s], ref32.samples[s]) for s in ref32.samples)
            err, worst = rel_err(fast.grads, ref32.grads)
            results.append({"label": label, "seed": seed, "against": "scg-numba vs scg-numpy (float32)",
                            "same_samples": same, "max_rel_err": err, "worst_param": worst, "tol": 1e-4,
                            "ok": same and err <= 1e-4})
    return {"results": results, "skipped": skipped, "all_ok": all(r["ok"] for r in results)}


def worker_probe(_cfg: dict) -> dict:
    out = {"environment": describe_environment()}
    for name in ("torch", "jax"):
        try:
            out[name] = {"ok": True, "version": __import__(name).__version__}
        except ImportError as exc:
            out[name] = {"ok": False, "why": f"not installed ({exc}); pip install -e '.[bench]'"}
    out["scg-numba"] = {"ok": True}
    return out


WORKERS = {"time": worker_time, "crosscheck": worker_crosscheck, "probe": worker_probe}


# ====================================================================================
# driver side
# ====================================================================================
def thread_env(threads: int) -> dict[str, str]:
    env = {v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMBA_NUM_THREADS", "SCG_BLAS_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def run_worker(kind: str, cfg: dict, timeout: float, threads: int) -> dict:
    env = dict(os.environ, **thread_env(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def pool(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    times = np.concatenate([r["times_s"] for r in good])
    return {"median_s": float(np.median(times)), "q25_s": float(np.percentile(times, 25)),
            "q75_s": float(np.percentile(times, 75)), "timed_steps": int(times.size),
            "process_medians_s": [r["median_s"] for r in good], "first_s": [r["first_s"] for r in good],
            "peak_extra_mb": max(r["peak_extra_mb"] for r in good),
            "other_processes_cpu_frac": max((r["other_processes_cpu_frac"] or 0) for r in good),
            "minor_faults_per_step": [r["minor_faults_per_step"] for r in good], "runs": runs}


def table(results: dict, labels: list[str], impls: list[str], batches: list[int]) -> str:
    def med(impl, label, b):
        r = results.get((impl, label, b), {})
        return r.get("median_s")

    lines = []
    for b in batches:
        lines += [f"\nbatch {b}: median ms per step (peak extra MB); ratio = comparator time / scg-numba time",
                  "| estimator | K | " + " | ".join(f"{i} ms (MB)" for i in impls)
                  + " | torch / scg | jax / scg | >= 2x both |",
                  "|---|---|" + "---|" * (len(impls) + 3)]
        for label in labels:
            cells = []
            for impl in impls:
                r = results.get((impl, label, b), {})
                cells.append("error" if "error" in r else
                             f"{fmt_ms(r.get('median_s'))} ({fmt_mb(r.get('peak_extra_mb'))})")
            s = med("scg-numba", label, b)
            ratios = [None if s is None or med(c, label, b) is None else med(c, label, b) / s for c in ("torch", "jax")]
            rcells = ["-" if q is None else f"{q:.2f}x" for q in ratios]
            hit = "-" if None in ratios else ("yes" if min(ratios) >= TARGET else "no")
            lines.append(f"| {label} | {ESTIMATORS[label][2]} | " + " | ".join(cells) + f" | {rcells[0]} | "
                         f"{rcells[1]} | {hit} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one pass, few repeats")
    ap.add_argument("--out", default=str(HERE / "results" / "sbn_step.json"))
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--procs", type=int, default=None, help="passes over the plan (default 2; --quick 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-crosscheck", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, cfg = args.worker
        print("@@RESULT " + json.dumps(WORKERS[kind](json.loads(cfg))), flush=True)
        return 0

    t_start = time.time()
    procs = args.procs or (1 if args.quick else 2)
    labels = [s for s in args.estimators.split(",") if s]
    batches = [int(b) for b in args.batches.split(",")]

    def log(*a):
        print(*a, flush=True)

    probe = run_worker("probe", {}, timeout=300, threads=args.threads)
    env = probe.pop("environment", {})
    impls = [i for i in args.impls.split(",") if probe.get(i, {}).get("ok")]
    for i in args.impls.split(","):
        if i not in impls:
            log(f"skipped {i}: {probe.get(i, {}).get('why', 'unknown implementation')}")
    log(f"scg SBN-step benchmark ({'quick' if args.quick else 'full'}), {procs} pass(es), {args.threads} thread(s)")
    log(f"machine: {env.get('cpu')} ({', '.join(env.get('cpu_flags', []))}), {env.get('usable_cpus')} usable CPUs, "
        f"{env.get('mem_total_gb')} GB; python {env.get('python')}, numpy {env.get('numpy')}, numba {env.get('numba')}, "
        f"torch {env.get('torch')}, jax {env.get('jax')}; scg git {env.get('scg_git')}")
    cc = None
    if not args.no_crosscheck:
        log("cross-check (scg-numpy float64 noise+samples through torch/JAX; scg-numba vs scg-numpy float32) ...")
        cc = run_worker("crosscheck", {"rows": 16, "seeds": [1, 2], "labels": labels}, timeout=900,
                        threads=args.threads)
        for r in cc.get("results", []):
            log(f"  {r['label']:9s} seed {r['seed']} {r['against']:34s} max rel err {r['max_rel_err']:.1e} "
                f"({r['worst_param']}) tol {r['tol']:.0e} {'ok' if r['ok'] else 'MISMATCH'}")
        log(f"  cross-check: {cc.get('error') or ('all match' if cc.get('all_ok') else 'MISMATCHES')}")

    plan = [{"impl": i, "label": lab, "batch": b, "threads": args.threads,
             "warmup": 2 if args.quick else 4, "repeats": 5 if args.quick else (20 if b <= 50 else 10),
             "min_repeats": 3, "budget_s": 6.0 if args.quick else 15.0}
            for b in batches for lab in labels for i in impls]
    runs: dict[tuple, list] = {}
    log(f"timing {len(plan)} configurations x {procs} pass(es), each a fresh subprocess ...")
    for p in range(procs):
        for n, cfg in enumerate(plan, 1):
            r = run_worker("time", cfg, timeout=300 + 4 * cfg["budget_s"], threads=args.threads)
            runs.setdefault((cfg["impl"], cfg["label"], cfg["batch"]), []).append(r)
            what = f"[pass {p + 1} {n}/{len(plan)}] {cfg['impl']:9s} {cfg['label']:9s} batch {cfg['batch']:4d}"
            if "error" in r:
                log(f"{what}: ERROR {r['error']}")
            else:
                log(f"{what}: median {r['median_s'] * 1e3:8.2f} ms ({len(r['times_s'])} timed, first "
                    f"{r['first_s']:.1f} s) peak +{r['peak_extra_mb']:.0f} MB, others used "
                    f"{(r['other_processes_cpu_frac'] or 0):.0%} CPU")
    results = {key: pool(v) for key, v in runs.items()}
    text = table(results, labels, impls, batches)
    log(text)
    busy = [f"{k[0]}/{k[1]}/{k[2]}" for k, r in results.items() if (r.get("other_processes_cpu_frac") or 0) > 0.1]
    if busy:
        log(f"\nNOTE: {len(busy)} of {len(results)} configurations ran while other processes used > 10% of the CPUs "
            "(shared machine); times are inflated for every implementation alike only to the extent the load was even.")
    out = {"benchmark": "SBN VAE (linear, 784-200), float32, one gradient step", "mode": "quick" if args.quick else "full",
           "threads": args.threads, "passes": procs, "command": " ".join([Path(sys.executable).name] + sys.argv),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": env, "crosscheck": cc,
           "results": [{"impl": k[0], "estimator": k[1], "batch": k[2], **v} for k, v in results.items()],
           "table_markdown": text, "wall_s": time.time() - t_start}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    log(f"\nwrote {args.out} ({time.time() - t_start:.0f} s)")
    return 0 if cc is None or cc.get("all_ok") else 1


if __name__ == "__main__":
    sys.exit(main())
