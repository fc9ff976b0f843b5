"""Backends by name. A backend turns a derived estimator graph into a ``Program``.

A ``Program`` runs the graph on arrays::

    program = prepare(graph, precision)      # compile once
    values = program.run(params, inputs, seed=..., n_samples=..., external=..., state=...,
                         overrides=..., stop_at_external=...)   # {node.uid: array}

with the semantics of :func:`scg.backends.numpy_ref.evaluate`, the spec every
backend is parity-tested against. Programs may also offer ``plan`` (the fused
kernel plan, printable), ``source`` (generated code) and ``llvm()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from scg.backends.numpy_ref import evaluate
from scg.errors import BackendError
from scg.ir.graph import Graph


class Program(Protocol):
    graph: Graph

    def run(self, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray], **call: Any) -> dict[int, np.ndarray]:
        ...


class NumpyProgram:
    """The reference interpreter: no compilation, nothing to inspect but the IR."""

    plan = None
    source = None

    def __init__(self, graph: Graph, precision: str):
        self.graph = graph
        self.precision = precision

    def run(self, params, inputs, **call):
        return evaluate(self.graph, params, inputs, precision=self.precision, **call)

    def llvm(self, kernel: str | None = None) -> str:
        raise BackendError("the numpy backend is an interpreter: it has no LLVM IR (use backend='numba')")


def _numba(graph: Graph, precision: str) -> Program:
    """Numba CPU kernels (imported lazily: ``import scg`` does not load Numba)."""
    from scg.backends.numba_cpu import NumbaProgram
    return NumbaProgram(graph, precision)


def _cuda(graph: Graph, precision: str) -> Program:
    """Numba CUDA kernels (imported lazily; needs a GPU or NUMBA_ENABLE_CUDASIM=1, see cuda_backend)."""
    from scg.backends.cuda_backend import CudaProgram
    return CudaProgram(graph, precision)


BACKENDS: dict[str, Callable[[Graph, str], Program]] = {"numpy": NumpyProgram, "numba": _numba, "cuda": _cuda}


def get_backend(name: str) -> Callable[[Graph, str], Program]:
    try:
        return BACKENDS[name]
    except KeyError:
        pass
    if name in ("numba", "cuda"):
        raise BackendError(
            f"backend {name!r} is not implemented yet in this version of scg; use backend='numpy' "
            "(the reference interpreter, which every compiled backend will be parity-tested against)")
    raise BackendError(f"unknown backend {name!r}; expected one of numpy, numba, cuda")
