"""Distributions for ``scg.sample``: Bernoulli, Categorical, Normal.

A distribution object only records its parameters (DSL values); sampling it with
``scg.sample(name, dist)`` adds a stochastic node. ``log_prob``, ``entropy``
and ``mean`` build ordinary IR, so they can appear in costs (e.g. an ELBO).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from scg.dsl import math as sm
from scg.dsl.value import Value, _graph_of, apply, as_node
from scg.errors import GraphError
from scg.ir.ops import Op
from scg.ir.types import broadcast_shapes


class Distribution:
    op: Op
    reparameterisable = False

    def __new__(cls, *args: Any, **kwargs: Any):
        # a misspelt argument (logit=, mu=) is a GraphError naming what the distribution takes
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = [k for k in kwargs if k not in accepted]
        if unknown or len(args) > len(accepted):
            got = f"an unknown argument {unknown[0]!r}" if unknown else f"{len(args)} positional arguments"
            raise GraphError(f"{cls.__name__} got {got}; it takes {', '.join(accepted)}")
        return super().__new__(cls)

    def params(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def log_prob(self, value: Any) -> Value:
        raise NotImplementedError

    def entropy(self) -> Value:
        raise NotImplementedError

    @property
    def mean(self) -> Value:
        raise NotImplementedError


class Bernoulli(Distribution):
    """Bernoulli over {0., 1.} (float64 values), parameterised by ``logits`` or ``probs``.

    >>> import scg
    >>> with scg.Graph("b"):
    ...     l = scg.input("l", shape=(4,))
    ...     h = scg.sample("h", scg.Bernoulli(logits=l))
    >>> h.shape
    (4,)
    """

    op = Op.BERNOULLI

    def __init__(self, logits: Any = None, probs: Any = None):
        if (logits is None) == (probs is None):
            raise GraphError("Bernoulli takes exactly one of logits= or probs=")
        self.probs = probs
        if probs is not None:
            logits = sm.log(probs) - sm.log(1.0 - probs)
        self.logits = logits

    def params(self):
        return (self.logits,)

    def log_prob(self, value):
        return apply(Op.BERNOULLI_LOGP, self.logits, value)

    def entropy(self):
        return sm.softplus(self.logits) - self.logits * sm.sigmoid(self.logits)

    @property
    def mean(self):
        if self.probs is not None:  # exact, rather than sigmoid(log p - log(1 - p))
            return _broadcast_like(self.probs, self.probs)
        return sm.sigmoid(self.logits)


class Categorical(Distribution):
    """Categorical over ``{0, ..., K-1}`` (int64 values); ``logits`` has K on its last axis."""

    op = Op.CATEGORICAL

    def __init__(self, logits: Any):
        self.logits = logits

    def params(self):
        return (self.logits,)

    def log_prob(self, value):
        return apply(Op.CATEGORICAL_LOGP, self.logits, value)

    def entropy(self):
        return sm.logsumexp(self.logits) - sm.sum(sm.softmax(self.logits) * self.logits, axis=-1)

    @property
    def mean(self):
        """The mean of the one-hot encoding: ``softmax(logits)``."""
        return sm.softmax(self.logits)


class Normal(Distribution):
    """Normal(loc, scale), reparameterisable: ``loc + scale * eps``, eps ~ N(0, 1)."""

    op = Op.NORMAL
    reparameterisable = True

    def __init__(self, loc: Any, scale: Any):
        self.loc = loc
        self.scale = scale

    def params(self):
        return (self.loc, self.scale)

    def log_prob(self, value):
        return apply(Op.NORMAL_LOGP, self.loc, self.scale, value)

    def entropy(self):
        return _broadcast_like(0.5 * math.log(2 * math.pi * math.e) + sm.log(self.scale), self.loc, self.scale)

    @property
    def mean(self):
        return _broadcast_like(self.loc, self.loc, self.scale)


def _broadcast_like(x: Any, *params: Any) -> Value:
    """``x`` as a Value with the broadcast type of ``params`` (itself when it already has it).

    A distribution's entropy and mean have the type of its samples' per-row
    distribution, even where the formula ignores a parameter (the Normal's
    entropy does not depend on ``loc``).
    """
    kinds = [(p.shape, p.node.batched) if isinstance(p, Value) else (np.shape(p), False) for p in params]
    shape = broadcast_shapes(*(k[0] for k in kinds))
    if shape is None:
        shapes = " and ".join(str(list(k[0])) for k in kinds)
        raise GraphError(f"distribution parameters of per-row shapes {shapes} do not broadcast")
    batched = any(k[1] for k in kinds)
    if isinstance(x, Value) and x.shape == shape and x.node.batched == batched:
        return x
    return apply(Op.BROADCAST_TO, x, shape=shape, batched=batched)


def sample_node_inputs(dist: Distribution):
    graph = _graph_of(dist.params())
    return graph, tuple(as_node(graph, p) for p in dist.params())
