"""What runs inside a Dask worker: one configuration, its error captured, its metrics split from its curves.

A configuration that raises becomes a result with ``error`` set (the other
configurations go on); only a worker that dies takes a task down, and Dask
then reschedules it on another worker (its ``allowed-failures``). Kept free of
heavy imports: workers import this module for every sweep.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from scg.sweeps.grid import RESERVED


def set_numba_threads(n: int) -> None:
    """Give Numba ``n`` threads in this worker (Dask caps BLAS and OpenMP threads, not Numba's)."""
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)  # read when numba is first imported
        return
    import numba

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


def split_result(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A function's returned dict -> (scalar metrics for the CSV, everything else for the curves file)."""
    if not isinstance(result, Mapping):
        raise TypeError(f"the function returned a {type(result).__name__}; expected a dict of metrics")
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name, value in result.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be strings, got {name!r}")
        if name in RESERVED:
            raise TypeError(f"metric name {name!r} is reserved for the sweep's own column ({', '.join(RESERVED)})")
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            value = value.item()  # numpy scalar or 0-d array
        if value is None or isinstance(value, (str, bool, numbers.Number)):
            if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float)):
                value = float(value)
            metrics[name] = value
        else:
            curves[name] = _plain(value)
    return metrics, curves


def _plain(value: Any) -> Any:
    """Arrays, tuples, nested dicts -> JSON-ready lists/dicts/floats."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return value


def run_config(payload: tuple, config: dict[str, Any], numba_threads: int) -> dict[str, Any]:
    """Run one configuration in this worker; never raises for the function's own errors."""
    from distributed import get_worker

    t0 = time.perf_counter()
    worker = get_worker()
    set_numba_threads(numba_threads)
    out: dict[str, Any] = {"config": config, "worker": worker.address, "pid": os.getpid(),
                           "metrics": {}, "curves": {}, "error": "", "traceback": ""}
    try:
        fn = _function(payload, worker.local_directory)
        out["metrics"], out["curves"] = split_result(fn(**config))
    except (Exception, SystemExit) as e:  # noqa: BLE001 (the user's function may raise anything; record it)
        out["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}".rstrip(": ")
        out["traceback"] = traceback.format_exc()
    out["wall_s"] = time.perf_counter() - t0
    return out


def _function(payload: tuple, local_directory: str):
    kind = payload[0]
    if kind == "pickle":
        import cloudpickle

        return cloudpickle.loads(payload[1])
    from scg.sweeps.shipping import resolve

    return resolve(payload[1], local_directory)


def run_warmup(payload: tuple, grid: dict[str, list[Any]], numba_threads: int) -> str:
    """Run the warm-up function once in this worker (it fills this host's kernel cache); returns the address."""
    from distributed import get_worker

    worker = get_worker()
    set_numba_threads(numba_threads)
    _function(payload, worker.local_directory)(grid)
    return worker.address
