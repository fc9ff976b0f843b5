"""Declaring a model: ``input``, ``param``, ``sample``, ``cost``, ``external_cost``.

Each must be called inside ``with scg.Graph(name):`` and names its node; names
are unique within a graph and are what errors, printouts and results use.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from scg.dsl import context
from scg.dsl.distributions import Distribution, sample_node_inputs
from scg.dsl.initializers import check_init
from scg.dsl.value import Value, apply
from scg.errors import GraphError
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import F64, canonical_dtype


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise GraphError(f"scg.{what} needs a non-empty string name, got {name!r}")
    return name


def _check_shape(shape: Any, name: str) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    # ints only: int(2.5) would silently truncate, and a string would iterate by characters
    ok = not isinstance(dims, (str, bytes)) and hasattr(dims, "__iter__")
    dims = tuple(dims) if ok else ()
    if not ok or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in dims):
        raise GraphError(f"{name!r}: shape must be a tuple of ints (the per-row shape), got {shape!r}")
    dims = tuple(int(d) for d in dims)
    if any(d < 1 for d in dims):
        raise GraphError(f"{name!r}: shape dimensions must be positive ints, got {list(dims)}")
    return dims


def _check_dtype(dtype: Any, name: str) -> str:
    try:
        return canonical_dtype(dtype)
    except GraphError as e:
        raise GraphError(f"input {name!r}: {e}") from None


def input(name: str, shape: Any = (), dtype: Any = "float64") -> Value:
    """A per-row data input; the batch axis is implicit (arrays are ``(B, *shape)``).

    >>> import scg
    >>> with scg.Graph("g"):
    ...     x = scg.input("x", shape=(784,))
    ...     y = scg.input("y", dtype="int64")
    """
    _check_name(name, "input")
    graph = context.current_graph("input")
    attrs = {"shape": _check_shape(shape, name), "dtype": _check_dtype(dtype, name), "batched": True}
    return Value(graph.add(Op.INPUT, (), attrs, name=name, origin=context.user_origin()), graph)


def param(name: str, shape: Any, init: Any = None) -> Value:
    """A learnable parameter (no batch axis).

    ``init`` (used by ``Graph.init_params``): None for the default (zeros for
    rank <= 1, N(0, 1/fan_in) for matrices), ``"zeros"``, ``"ones"``,
    ``"normal"``, ``"glorot"``, a float (fill), an array of the right shape, or a
    callable ``(rng, shape) -> array``.
    """
    _check_name(name, "param")
    graph = context.current_graph("param")
    shape = _check_shape(shape, name)
    check_init(name, shape, init)
    attrs = {"shape": shape, "dtype": F64, "batched": False}
    node = graph.add(Op.PARAM, (), attrs, name=name, origin=context.user_origin())
    graph.param_inits[name] = init
    return Value(node, graph)


def sample(name: str, dist: Distribution) -> Value:
    """Draw a sample from ``dist``: a stochastic node with its own random stream."""
    _check_name(name, "sample")
    context.current_graph("sample")
    if not isinstance(dist, Distribution):
        raise GraphError(f"scg.sample({name!r}, ...) expects a distribution such as scg.Bernoulli, got {dist!r}")
    graph, inputs = sample_node_inputs(dist)
    node = graph.add(dist.op, inputs, {}, name=name, origin=context.user_origin())
    return Value(node, graph)


def cost(name: str, expr: Any, blackbox: bool = False) -> Value:
    """Declare a per-row scalar cost. The objective is E[mean over rows of the sum of costs].

    ``blackbox=True``: estimators use this cost only through its sampled value
    (no pathwise gradient through it, no counterfactual re-evaluation).
    """
    _check_name(name, "cost")
    context.current_graph("cost")  # declarations only inside `with graph:` (outputs are set on exit)
    if not isinstance(expr, Value):
        expr = apply(Op.ADD, 0.0, expr)
    return apply(Op.COST, expr, name=name, blackbox=bool(blackbox))


def external_cost(name: str, depends_on: Iterable[Value] | None = None) -> Value:
    """A per-row cost supplied after sampling (e.g. an environment's reward).

    ``depends_on`` lists the sample nodes that may influence it (default: all).
    Graphs with external costs are called in two phases: ``est.sample(...)``
    then ``run.grads(external={name: array})``.
    """
    _check_name(name, "external_cost")
    graph = context.current_graph("external_cost")
    deps = None
    if depends_on is not None:
        deps = []
        for v in depends_on:
            if not isinstance(v, Value) or v.node.op not in STOCHASTIC_OPS or v.graph is not graph:
                raise GraphError(
                    f"external_cost {name!r}: depends_on must list values sampled with scg.sample in graph "
                    f"{graph.name!r}, got {v!r}")
            deps.append(v.node.name)
        deps = tuple(deps)
    attrs = {"shape": (), "dtype": F64, "batched": True, "depends_on": deps}
    return Value(graph.add(Op.EXTERNAL_COST, (), attrs, name=name, origin=context.user_origin()), graph)
