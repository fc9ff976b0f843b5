"""User-facing handles on IR nodes, with Python operators.

``Value`` wraps a :class:`scg.ir.Node` and the graph it lives in; arithmetic on
values adds nodes to that graph. Python scalars and NumPy arrays auto-wrap as
constants.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scg.dsl import context
from scg.errors import GraphError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64, I64, normalize_axes


class Value:
    """A node of a graph under construction, with NumPy-like operators."""

    __slots__ = ("graph", "node")
    __array_priority__ = 1000  # make ndarray + Value dispatch to Value.__radd__

    def __init__(self, node: Node, graph: Graph):
        self.node = node
        self.graph = graph

    # -- introspection ------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Per-row shape (the batch axis is implicit)."""
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def name(self) -> str | None:
        return self.node.name

    def __repr__(self) -> str:
        return f"<scg.Value {self.node.label()} {self.node.type} = {self.node.op.pretty}>"

    def __bool__(self) -> bool:
        raise GraphError(
            f"{self.node.label()} is a symbolic scg value; it has no truth value at graph-build time "
            "(use scg.where(cond, a, b) for data-dependent choices)")

    # -- arithmetic ---------------------------------------------------------
    def __add__(self, other): return apply(Op.ADD, self, other)
    def __radd__(self, other): return apply(Op.ADD, other, self)
    def __sub__(self, other): return apply(Op.SUB, self, other)
    def __rsub__(self, other): return apply(Op.SUB, other, self)
    def __mul__(self, other): return apply(Op.MUL, self, other)
    def __rmul__(self, other): return apply(Op.MUL, other, self)
    def __truediv__(self, other): return apply(Op.DIV, self, other)
    def __rtruediv__(self, other): return apply(Op.DIV, other, self)
    def __matmul__(self, other): return apply(Op.MATMUL, self, other)
    def __rmatmul__(self, other): return apply(Op.MATMUL, other, self)
    def __neg__(self): return apply(Op.NEG, self)
    def __pos__(self): return self
    def __gt__(self, other): return apply(Op.GREATER, self, other)
    def __lt__(self, other): return apply(Op.GREATER, other, self)
    def __ge__(self, other): return 1.0 - apply(Op.GREATER, other, self)
    def __le__(self, other): return 1.0 - apply(Op.GREATER, self, other)
    # symbolic like NumPy: without these, `a == y` would silently be the Python bool False
    def __eq__(self, other): return apply(Op.EQUAL, self, other)  # type: ignore[override]
    def __ne__(self, other): return 1.0 - apply(Op.EQUAL, self, other)  # type: ignore[override]
    __hash__ = object.__hash__  # identity, so values still work as dict keys

    def __pow__(self, exponent):
        if isinstance(exponent, (int, float, np.integer, np.floating)) and not isinstance(exponent, bool):
            if exponent == 2:
                return apply(Op.SQUARE, self)
            if exponent == 0.5:
                return apply(Op.SQRT, self)
            if exponent == 1:
                return self
        raise GraphError(f"{self.node.label()} ** {exponent!r}: only the constant powers 1, 2 and 0.5 are supported")

    @property
    def T(self) -> Value:
        return apply(Op.TRANSPOSE, self)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Value:
        """Sum over per-row axes (all of them by default); never over the batch."""
        return apply(Op.SUM, self, axes=axes_of(self, axis, "sum"), keepdims=bool(keepdims))

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Value:
        """Mean over per-row axes (all of them by default); never over the batch."""
        return apply(Op.MEAN, self, axes=axes_of(self, axis, "mean"), keepdims=bool(keepdims))

    def reshape(self, *shape: int) -> Value:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
            raise GraphError(f"reshape of {describe(self.node)}: the new per-row shape must be ints, got "
                             f"{shape!r:.80}")
        return apply(Op.RESHAPE, self, shape=tuple(int(d) for d in shape))


def describe(node: Node) -> str:
    """How error messages show an operand: its name or constant value, and its type."""
    if node.name:
        return f"{node.name!r} {node.type}"
    if node.op is Op.CONST and node.type.rank == 0:
        return f"constant {np.asarray(node.attrs['value']).item()!r}"
    return f"{node.type} (from {node.op.pretty})"


def axes_of(x: Any, axis: Any, what: str) -> tuple[int, ...]:
    """Normalised per-row reduction axes; an error names the value being reduced."""
    rank = len(x.shape) if isinstance(x, Value) else np.ndim(x)
    try:
        return normalize_axes(axis, rank)
    except (GraphError, TypeError) as e:
        who = describe(x.node) if isinstance(x, Value) else f"a constant of shape {list(np.shape(x))}"
        raise GraphError(f"{what} of {who}: {e}") from None


def _graph_of(args: tuple[Any, ...]) -> Graph:
    graphs: dict[int, Graph] = {}
    owners: dict[int, Value] = {}
    for a in args:
        if isinstance(a, Value):
            graphs.setdefault(id(a.graph), a.graph)
            owners.setdefault(id(a.graph), a)
    if len(graphs) > 1:
        which = ", ".join(f"{describe(owners[k].node)} of graph {g.name!r}" for k, g in graphs.items())
        raise GraphError(f"cannot combine values from different graphs: {which}")
    if graphs:
        graph = next(iter(graphs.values()))
        active = context.active_graph()
        if active is not None and active is not graph:
            # otherwise the node would silently land in the other (maybe finished) graph
            value = next(iter(owners.values()))
            raise GraphError(
                f"{describe(value.node)} belongs to graph {graph.name!r}, but graph {active.name!r} is under "
                "construction; values cannot cross graphs")
        return graph
    return context.current_graph("an operation")


def constant(graph: Graph, value: Any) -> Node:
    """A CONST node for a Python scalar or NumPy array (unbatched)."""
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        dtype = I64
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        dtype = F64
        arr = arr.astype(np.float64)
    else:
        raise GraphError(f"cannot use {value!r} (dtype {arr.dtype}) as a constant: expected numbers")
    arr.setflags(write=False)
    attrs = {"value": arr, "dtype": dtype, "shape": arr.shape, "batched": False}
    return graph.add(Op.CONST, (), attrs, origin=context.user_origin())


def as_node(graph: Graph, x: Any) -> Node:
    if isinstance(x, Value):
        return x.node
    if isinstance(x, Node):
        if not graph.contains(x):
            raise GraphError(f"{x.label()} is not a node of graph {graph.name!r}")
        return x
    return constant(graph, x)


def apply(op: Op, *args: Any, name: str | None = None, **attrs: Any) -> Value:
    """Add ``op(*args)`` to the graph the arguments live in; return its Value."""
    graph = _graph_of(args)
    nodes = tuple(as_node(graph, a) for a in args)
    try:
        node = graph.add(op, nodes, attrs, name=name, origin=context.user_origin())
    except GraphError as e:
        operands = "; ".join(describe(n) for n in nodes)
        raise GraphError(f"{e}\n  operands: {operands}" if operands else str(e)) from None
    return Value(node, graph)
