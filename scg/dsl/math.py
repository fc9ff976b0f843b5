"""Math functions of the DSL. Each adds one IR node (or a few) to the graph.

All operate per row: reductions and softmax never touch the implicit batch axis.

>>> import scg
>>> g = scg.Graph("m")
>>> with g:
...     x = scg.input("x", shape=(3,))
...     y = scg.softplus(x).sum()
>>> y.shape
()
"""

from __future__ import annotations

import numbers
from typing import Any

from scg.dsl.value import Value, apply, axes_of
from scg.errors import GraphError
from scg.ir.ops import Op


def _unary(op: Op, doc: str):
    def fn(x: Any) -> Value:
        return apply(op, x)
    fn.__name__ = op.pretty
    fn.__doc__ = doc
    return fn


exp = _unary(Op.EXP, "Elementwise e**x.")
log = _unary(Op.LOG, "Elementwise natural logarithm.")
sigmoid = _unary(Op.SIGMOID, "Elementwise 1 / (1 + exp(-x)), computed stably.")
tanh = _unary(Op.TANH, "Elementwise hyperbolic tangent.")
relu = _unary(Op.RELU, "Elementwise max(x, 0).")


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Value:
    """Elementwise x where x > 0, else negative_slope * x (Maas et al. 2013)."""
    if isinstance(negative_slope, numbers.Real) and not isinstance(negative_slope, bool):
        negative_slope = float(negative_slope)  # numpy scalars too; anything else is refused by the type rule
    return apply(Op.LEAKY_RELU, x, negative_slope=negative_slope)


softplus = _unary(Op.SOFTPLUS, "Elementwise log(1 + exp(x)), computed stably.")
log_sigmoid = _unary(Op.LOG_SIGMOID, "Elementwise log(sigmoid(x)) = -softplus(-x), computed stably.")
square = _unary(Op.SQUARE, "Elementwise x**2.")
sqrt = _unary(Op.SQRT, "Elementwise square root.")
stop_gradient = _unary(
    Op.STOP_GRADIENT,
    "Identity in value; no gradient flows through it (like jax.lax.stop_gradient).")


def _rank(x: Any) -> int:
    return len(x.shape) if isinstance(x, Value) else len(getattr(x, "shape", ()))


def sum(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Value:
    """Sum over per-row axes (all by default)."""
    return apply(Op.SUM, x, axes=axes_of(x, axis, "sum"), keepdims=bool(keepdims))


def mean(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Value:
    """Mean over per-row axes (all by default)."""
    return apply(Op.MEAN, x, axes=axes_of(x, axis, "mean"), keepdims=bool(keepdims))


def _last_axis(x: Any, axis: int, what: str) -> int:
    rank = _rank(x)
    if rank == 0:
        raise GraphError(f"{what} needs at least one per-row axis; got a per-row scalar")
    (a,) = axes_of(x, axis, what)
    if a != rank - 1:
        raise GraphError(f"{what} supports only the last per-row axis (axis=-1), got axis={axis}")
    return a


def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Value:
    """log(sum(exp(x))) over the last per-row axis, computed stably."""
    return apply(Op.LOGSUMEXP, x, axes=(_last_axis(x, axis, "logsumexp"),), keepdims=keepdims)


def softmax(x: Any, axis: int = -1) -> Value:
    """Softmax over the last per-row axis."""
    return apply(Op.SOFTMAX, x, axis=_last_axis(x, axis, "softmax"))


def log_softmax(x: Any, axis: int = -1) -> Value:
    """log(softmax(x)) over the last per-row axis, computed stably."""
    return apply(Op.LOG_SOFTMAX, x, axis=_last_axis(x, axis, "log_softmax"))


def matmul(a: Any, b: Any) -> Value:
    """Per-row matrix product (``a @ b``); operands of per-row rank 1 or 2."""
    return apply(Op.MATMUL, a, b)


def equal(a: Any, b: Any) -> Value:
    """1. where a == b else 0. (float64), elementwise with broadcasting."""
    return apply(Op.EQUAL, a, b)


def greater(a: Any, b: Any) -> Value:
    """1. where a > b else 0. (float64)."""
    return apply(Op.GREATER, a, b)


def one_hot(x: Any, depth: int) -> Value:
    """float64 one-hot encoding of int64 class indices along a new last axis."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        who = f" of {x.node.label()}" if isinstance(x, Value) else ""
        raise GraphError(f"one_hot{who}: depth must be a positive int (the number of classes), got {depth!r}")
    return apply(Op.ONE_HOT, x, depth=int(depth))


def where(cond: Any, a: Any, b: Any) -> Value:
    """Elementwise ``a`` where ``cond != 0`` else ``b``."""
    return apply(Op.WHERE, cond, a, b)


def take(x: Any, index: Any) -> Value:
    """``x[..., index]`` along the last per-row axis, for int64 ``index``."""
    return apply(Op.TAKE, x, index)


def to_float(x: Any) -> Value:
    """Cast int64 values to float64."""
    return apply(Op.CAST_F, x)
