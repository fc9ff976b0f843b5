"""Parameter initialisers used by ``Graph.init_params``."""

from __future__ import annotations

import math
import numbers
import zlib
from typing import Any

import numpy as np

from scg.errors import GraphError
from scg.guards import memory_limit

NAMED_INITS = ("zeros", "ones", "normal", "glorot")


def _is_number(init: Any) -> bool:
    # np.int64(1) and np.float32(0.5) count as fills, like Python numbers
    return isinstance(init, numbers.Real) and np.ndim(init) == 0


def check_init(name: str, shape: tuple[int, ...], init: Any) -> None:
    if init is None or callable(init) or _is_number(init):
        return
    if isinstance(init, str):
        if init not in NAMED_INITS:
            raise GraphError(f"param {name!r}: unknown init {init!r}; expected one of {', '.join(NAMED_INITS)}")
        return
    try:
        arr = np.asarray(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise GraphError(
            f"param {name!r}: init {init!r} is not a number, an array, a callable or one of "
            f"{', '.join(NAMED_INITS)}") from None
    if arr.shape != shape:
        raise GraphError(f"param {name!r}: init array has shape {list(arr.shape)}, expected {list(shape)}")


def initial_value(name: str, shape: tuple[int, ...], init: Any, seed: int) -> np.ndarray:
    """The initial value of one parameter; its stream depends on (seed, name) only."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise GraphError(f"init_params: seed must be a non-negative int, got {seed!r}")
    need, limit = 8 * math.prod(shape), memory_limit()
    if limit is not None and need > limit:
        raise GraphError(f"param {name!r} of shape {list(shape)} needs {need / 2**30:,.1f} GiB as float64, more than "
                         f"the {limit / 2**30:,.1f} GiB of memory this process may use")
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    fan_in = shape[0] if len(shape) >= 2 else max(1, shape[0] if shape else 1)
    if init is None:
        init = "normal" if len(shape) >= 2 else "zeros"
    if isinstance(init, str):
        if init == "zeros":
            value = np.zeros(shape)
        elif init == "ones":
            value = np.ones(shape)
        elif init == "normal":
            value = rng.normal(0.0, 1.0 / math.sqrt(fan_in), size=shape)
        else:  # glorot uniform
            fan_out = shape[-1] if shape else 1
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, size=shape)
    elif callable(init):
        out = init(rng, shape)
        try:
            value = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise GraphError(f"param {name!r}: init {getattr(init, '__name__', init)!r} returned {out!r:.60} "
                             f"({type(out).__name__}); expected an array of shape {list(shape)}") from None
    elif _is_number(init):
        value = np.full(shape, float(init))
    else:
        value = np.array(init, dtype=np.float64)
    if value.shape != shape:
        raise GraphError(f"param {name!r}: init produced shape {list(value.shape)}, expected {list(shape)}")
    return np.array(value, dtype=np.float64, order="C")  # not ascontiguousarray: it turns shape () into (1,)
