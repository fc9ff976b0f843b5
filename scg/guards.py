"""Argument checks of the public call surface (``scg.compile``, estimator calls, ``load_state``).

Each function refuses one kind of bad argument with an :class:`~scg.errors.ScgError` that names
the argument and says what was expected, before any work starts, so a user never sees a raw
``TypeError``/``MemoryError`` from deep inside NumPy or Numba. Backends validate the arrays
themselves (``numpy_ref.bind``); this module covers what lies around them.

>>> check_number("ema_decay", 0.5, low=0.0, high=1.0, high_open=True)
0.5
>>> check_number("ema_decay", "0.5", low=0.0, high=1.0)
Traceback (most recent call last):
...
scg.errors.ScgError: ema_decay must be a real number, got '0.5' (str)
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from scg.errors import BackendError, GraphError, InputError, ScgError
from scg.ir.ops import STOCHASTIC_OPS, Op


def check_number(what: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, error=ScgError) -> float:
    """``value`` as a float: a real number (not a bool or string), finite, within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{what} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"
    lo_s, hi_s = ("-inf" if low is None else f"{low:g}"), ("inf" if high is None else f"{high:g}")
    span = f"in {lo}{lo_s}, {hi_s}{hi}" if low is not None or high is not None else "finite"
    if not math.isfinite(v) or (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise error(f"{what} must be {span}, got {value!r}")
    return v


def check_int(what: str, value: Any, *, low: int | None = None, error=ScgError) -> int:
    """``value`` as an int (Python or NumPy integer, not a bool), at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise error(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise error(f"{what} must be >= {low}, got {value!r}")
    return int(value)


def check_compile_args(graph: Any, backend: Any, ema_decay: Any) -> None:
    """What ``scg.compile`` can refuse before deriving anything."""
    from scg.ir.graph import Graph

    if not isinstance(graph, Graph):
        raise GraphError(f"scg.compile expects an scg.Graph as its first argument, got {type(graph).__name__} "
                         f"{_short(graph)}")
    if not isinstance(backend, str):
        raise BackendError(f"backend must be a name ('numpy', 'numba' or 'cuda'), got {type(backend).__name__} "
                           f"{_short(backend)}")
    check_number("ema_decay", ema_decay, low=0.0, high=1.0, high_open=True)
    if backend in ("numba", "cuda"):
        blas_threads()


def blas_threads() -> int | None:
    """``$SCG_BLAS_THREADS`` as an int (default 1); None for "", "0" or "none" (BLAS left alone)."""
    raw = os.environ.get("SCG_BLAS_THREADS", "1").strip()
    if raw.lower() in ("", "0", "none"):
        return None
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise BackendError(f"SCG_BLAS_THREADS={raw!r}: expected a non-negative int (threads BLAS may use while "
                           "a compiled program runs), or 0/none to leave BLAS alone")
    return n


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ baseline state


def check_state(state: Any, known: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """A ``load_state`` argument as ``{name: float64 array}``: a mapping whose keys are all known
    baseline names, whose values are finite real numbers of the expected shape."""
    listing = ", ".join(sorted(known)) or "none (this estimator keeps no baseline state)"
    if not isinstance(state, Mapping):
        raise ScgError(f"load_state expects a dict of baseline name -> value (e.g. est.state), got "
                       f"{type(state).__name__} {_short(state)}")
    out = {}
    for name, value in state.items():
        if name not in known:
            raise ScgError(f"load_state: unknown baseline {name!r}; this estimator's baselines: {listing}")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "fiu" or arr.shape != known[name]:
            raise ScgError(f"load_state: baseline {name!r} must be a real number of shape {known[name]}, got "
                           f"{_short(value)}")
        if not np.all(np.isfinite(arr)):
            raise ScgError(f"load_state: baseline {name!r} is {arr.item() if arr.ndim == 0 else 'non-finite'}; "
                           "a baseline must be finite (reset_baseline() starts it afresh)")
        out[name] = arr.astype(np.float64)
    return out


# ------------------------------------------------------------------ call size


def memory_limit() -> int | None:
    """Bytes this process may use at most: physical memory, lowered by an address-space rlimit or a
    cgroup (v2) memory limit where one is set; None if unknown."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits) if limits else None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:,.1f} GiB"


def check_call_size(graph, inputs: Any, n_samples: Any, precision: str, limit: int | None = None) -> None:
    """Refuse a call whose draws cannot fit in memory, before any work, with the estimate.

    A lower bound every backend must allocate: the inputs tiled over the K draws and every sample the
    result returns, ``K * B * (per-row elements of inputs and samples)`` values.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        return  # bind() refuses it with its own message
    if not isinstance(inputs, Mapping):
        return
    rows = 1
    for name in graph.inputs:
        shape = np.shape(inputs[name]) if name in inputs and hasattr(inputs[name], "shape") else None
        if shape:
            rows = int(shape[0])
            break
    per_row = sum(int(np.prod(n.shape)) for n in graph.nodes if n.batched and (n.op is Op.INPUT or n.op in STOCHASTIC_OPS))
    itemsize = 4 if precision == "float32" else 8
    need = int(n_samples) * rows * max(per_row, 1) * itemsize
    limit = memory_limit() if limit is None else limit
    if limit is not None and need > limit:
        raise InputError(f"n_samples={n_samples} with B={rows} row(s) needs at least {_gib(need)} (inputs and samples "
                         f"for {int(n_samples) * rows:,} draws), more than the {_gib(limit)} of memory this process may "
                         "use; use fewer draws or rows per call (and average the calls' grads)")


@contextlib.contextmanager
def out_of_memory(n_samples: Any):
    """A MemoryError while a call runs (the estimate above is a lower bound) becomes an InputError."""
    try:
        yield
    except MemoryError as e:
        raise InputError(f"ran out of memory during the call with n_samples={n_samples} ({e}); use fewer draws or "
                         "rows per call (and average the calls' grads)") from None


# ------------------------------------------------------------------ external costs


def check_external(model, external: Any, n_rows: int, n_samples: int, check_finite: bool) -> None:
    """Phase-2 external costs: a dict of known names, each ``(K*B,)`` or ``(K, B)``, finite if checked."""
    if not isinstance(external, Mapping):
        raise InputError(f"external must be a dict of external cost name -> per-row costs, got "
                         f"{type(external).__name__}")
    n = n_rows * n_samples
    accepted = f"(K*B,) = ({n},)" + (f" or (K, B) = {(n_samples, n_rows)}" if n_samples > 1 else "")
    for name in model.external_costs:
        if name not in external:
            continue
        try:
            arr = np.asarray(external[name])
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype.kind not in "fiub":
            raise InputError(f"external cost {name!r} must be a real numeric array, got {_short(external[name])}")
        if arr.shape not in ((n,), (n_samples, n_rows)):
            raise InputError(f"external cost {name!r} has shape {arr.shape}, expected {accepted} "
                             f"(draw-major: entry k*B + b is draw k of row b; this run drew K={n_samples} x B={n_rows})")
        if check_finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise InputError(f"external cost {name!r} has {bad} non-finite value(s) (NaN or inf); pass finite "
                             "costs, or compile with check_finite=False to allow them")
