"""Shared plumbing for the examples: threads, flags, results files, plots.

Imported by the example scripts (their folder is on ``sys.path`` when run as
``python examples/<name>.py``). Import this module **before numpy**: it pins
BLAS to one thread unless the environment already says otherwise. On the
2-core machines we measured, one BLAS thread made a batch-50 bandit step ~4x
faster (the threads fight over tiny matmuls), and it lets two experiments run
side by side, one per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "examples" / "results"


def shown(path) -> str:
    """A path as recorded in results and logs: relative to the repo when inside it (no machine paths)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run (smoke test, well under 2 minutes)")
    p.add_argument("--backend", default="numpy", help="scg backend: numpy (the reference interpreter), numba (faster), cuda")
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.add_argument("--out", default=str(RESULTS / default_out), help="folder for the results (JSON, CSV, PNG)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--no-plot", action="store_true", help="skip the matplotlib figure")
    return p


def progress_flag(args) -> bool | None:
    return False if args.no_progress else None


def cast_params(params: dict[str, np.ndarray], precision: str) -> dict[str, np.ndarray]:
    dtype = np.float32 if precision == "float32" else np.float64
    return {k: np.asarray(v, dtype=dtype).copy() for k, v in params.items()}


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def environment() -> dict[str, str]:
    return {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cpus": str(os.cpu_count()), "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "?"),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None (with a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: skipping plots (pip install -e ".[examples]")', file=sys.stderr)
        return None
    return plt


def mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
