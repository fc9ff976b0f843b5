"""Backends by name. A backend runs a derived estimator graph on arrays.

``run(graph, params, inputs, **call) -> {uid: array}`` with the keyword
arguments of :func:`scg.backends.numpy_ref.evaluate`.
"""

from __future__ import annotations

from typing import Callable

from scg.backends.numpy_ref import evaluate
from scg.errors import BackendError

BACKENDS = ("numpy", "numba", "cuda")


def get_backend(name: str) -> Callable:
    if name == "numpy":
        return evaluate
    if name in ("numba", "cuda"):
        raise BackendError(
            f"backend {name!r} is not implemented yet in this version of scg; use backend='numpy' "
            "(the reference interpreter, which every compiled backend will be parity-tested against)")
    raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
