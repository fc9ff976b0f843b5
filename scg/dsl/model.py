"""``scg.Graph``: the IR graph plus the builder context and parameter inits."""

from __future__ import annotations

from typing import Self

import numpy as np

from scg.dsl import context
from scg.dsl.initializers import initial_value
from scg.ir.graph import Graph as IRGraph


class Graph(IRGraph):
    """A stochastic computation graph under construction.

    >>> import scg
    >>> g = scg.Graph("coin")
    >>> with g:
    ...     theta = scg.param("theta", shape=(1,))
    ...     b = scg.sample("b", scg.Bernoulli(logits=theta))
    ...     c = scg.cost("c", ((b - 0.45) ** 2).sum())
    >>> sorted(g.init_params(seed=0))
    ['theta']
    """

    def __init__(self, name: str = "graph"):
        super().__init__(name)
        self.param_inits: dict[str, object] = {}

    def __enter__(self) -> Self:
        context.push(self)
        return self

    def __exit__(self, *exc) -> None:
        context.pop(self)
        self.outputs = dict(self.costs)

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Fresh initial parameters, ``dict[name, ndarray]``; deterministic in ``seed``."""
        return {
            name: initial_value(name, node.shape, self.param_inits.get(name), seed)
            for name, node in self.params.items()
        }
