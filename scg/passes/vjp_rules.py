"""Vector-Jacobian product rules of reverse-mode autodiff: the `vjp_rules` table.

A rule gets a :class:`Builder`, the forward node and the cotangent of its output
(same type as the node) and returns one cotangent per input, or None where no
gradient flows. Cotangents may still carry broadcast axes: the traversal
(`scg.passes.autodiff`) reduces each to its input's type with UNBROADCAST.
Rules build IR nodes; nothing here runs at execution time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scg.errors import GraphError
from scg.ir.infer import infer_type
from scg.ir.node import Node
from scg.ir.ops import Kind, Op
from scg.ir.types import F64, broadcast_shapes
from scg.passes.vjp_credit import credit_rules


class Builder:
    """Creates gradient nodes for the rules (not yet appended to any graph).

    The traversal appends only the nodes a needed cotangent depends on, so a rule
    may build cotangents for every input without leaving dead nodes behind.
    """

    def __init__(self, note: str | None = None):
        self.note = note
        self.origin: str | None = None  # the forward node's source line, set per rule call
        self._consts: dict[tuple[str, float], Node] = {}

    def add(self, op: Op, inputs: tuple[Any, ...] | list[Any], **attrs: Any) -> Node:
        ins = tuple(x if isinstance(x, Node) else self.const(x) for x in inputs)
        try:
            typ = infer_type(op, tuple(x.type for x in ins), attrs)
        except GraphError as e:
            args = ", ".join(x.label() for x in ins)
            raise GraphError(f"autodiff built an ill-typed {op.pretty}({args}): {e}") from None
        return Node(op, ins, attrs, typ, origin=self.origin, note=self.note)

    def const(self, value: float, dtype: str = F64) -> Node:
        key = (dtype, float(value))
        node = self._consts.get(key)
        if node is None:
            arr = np.asarray(value, dtype=np.float64 if dtype == F64 else np.int64)
            arr.setflags(write=False)
            node = Node(Op.CONST, (), {"value": arr, "dtype": dtype, "shape": (), "batched": False},
                        infer_type(Op.CONST, (), {"dtype": dtype, "shape": (), "batched": False}),
                        note=self.note)
            self._consts[key] = node
        return node

    # -- shorthands that keep the rules one-liners ---------------------------
    def mul(self, a: Any, b: Any) -> Node:
        return self.add(Op.MUL, (a, b))

    def div(self, a: Any, b: Any) -> Node:
        return self.add(Op.DIV, (a, b))

    def sub(self, a: Any, b: Any) -> Node:
        return self.add(Op.SUB, (a, b))

    def neg(self, a: Node) -> Node:
        return self.add(Op.NEG, (a,))

    def transpose(self, x: Node) -> Node:
        return self.add(Op.TRANSPOSE, (x,))

    def unbroadcast(self, x: Node, like: Node) -> Node:
        """``x`` summed down to ``like``'s per-row shape and batchedness (identity if equal)."""
        if x.shape == like.shape and x.batched == like.batched:
            return x
        return self.add(Op.UNBROADCAST, (x,), shape=like.shape, batched=like.batched)

    def broadcast(self, x: Node, shape: tuple[int, ...], batched: bool) -> Node:
        if x.shape == shape and x.batched == batched:
            return x
        return self.add(Op.BROADCAST_TO, (x,), shape=shape, batched=batched)

    def fit(self, x: Node, like: Node) -> Node:
        """Bring a cotangent to ``like``'s type: reduce broadcast axes, broadcast missing ones."""
        if broadcast_shapes(x.shape, like.shape) == x.shape and (x.batched or not like.batched):
            return self.unbroadcast(x, like)
        shape = broadcast_shapes(x.shape, like.shape)
        if shape is None:
            raise GraphError(f"autodiff: cotangent {x.type} does not fit {like.label()} of type {like.type}")
        return self.unbroadcast(self.broadcast(x, shape, like.batched or x.batched), like)

    def reshape(self, x: Node, shape: tuple[int, ...]) -> Node:
        return x if x.shape == tuple(shape) else self.add(Op.RESHAPE, (x,), shape=tuple(shape))

    def expand_reduced(self, g: Node, x: Node, axes: tuple[int, ...], keepdims: bool) -> Node:
        """The cotangent of a reduction over ``axes`` of ``x``, with the reduced axes restored as 1."""
        if keepdims:
            return g
        return self.reshape(g, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


Rule = Callable[[Builder, Node, Node], tuple[Node | None, ...]]


def _leaf(b, n, g):
    return ()


def _none(b, n, g):
    return (None,) * len(n.inputs)


def _sum(b, n, g):
    (x,) = n.inputs
    keep = b.expand_reduced(g, x, n.attrs["axes"], n.attrs.get("keepdims", False))
    return (b.broadcast(keep, x.shape, x.batched),)


def _mean(b, n, g):
    (x,) = n.inputs
    count = int(np.prod([x.shape[a] for a in n.attrs["axes"]], dtype=np.int64))
    return (b.mul(_sum(b, n, g)[0], 1.0 / count),)


def _logsumexp(b, n, g):
    (x,) = n.inputs
    axes, keepdims = n.attrs["axes"], n.attrs.get("keepdims", False)
    softmax = b.add(Op.EXP, (b.sub(x, b.expand_reduced(n, x, axes, keepdims)),))
    return (b.mul(b.expand_reduced(g, x, axes, keepdims), softmax),)


def _softmax(b, n, g):
    axis = n.attrs["axis"]
    gy = b.add(Op.SUM, (b.mul(g, n),), axes=(axis,), keepdims=True)
    return (b.mul(n, b.sub(g, gy)),)


def _log_softmax(b, n, g):
    axis = n.attrs["axis"]
    total = b.add(Op.SUM, (g,), axes=(axis,), keepdims=True)
    return (b.sub(g, b.mul(b.add(Op.EXP, (n,)), total)),)


def _outer(b: Builder, u: Node, v: Node, sum_rows: bool) -> Node:
    """outer(u, v) of rank-1 per-row values; summed over rows (OUTER_SUM) when ``sum_rows``."""
    if sum_rows:
        return b.add(Op.OUTER_SUM, (u, v))
    return b.add(Op.MATMUL, (b.reshape(u, u.shape + (1,)), b.reshape(v, (1,) + v.shape)))


def _matmul(b, n, g):
    # dA = g @ B^T and dB = A^T @ g per row. An unbatched operand of a batched product
    # gets the row sum of its per-row gradients; where those are matrices, OUTER_SUM
    # forms the sum without a (rows, k, m) tensor. Rank-1 per-row gradients are cheap:
    # the traversal's UNBROADCAST sums them over rows.
    a, w = n.inputs
    ra, rw = a.type.rank, w.type.rank
    if ra == 1 and rw == 1:  # dot product
        return (b.mul(g, w), b.mul(g, a))
    if rw == 1:  # (n, k) @ (k,)
        da = _outer(b, g, w, sum_rows=not a.batched and n.batched)
    elif ra == 2 and not a.batched and n.batched:
        da = b.add(Op.OUTER_SUM, (b.transpose(g), b.transpose(w)))
    else:
        da = b.add(Op.MATMUL, (g, b.transpose(w)))
    if ra == 1:  # (k,) @ (k, m)
        dw = _outer(b, a, g, sum_rows=not w.batched and n.batched)
    elif rw == 2 and not w.batched and n.batched:
        dw = b.add(Op.OUTER_SUM, (a, g))
    else:
        dw = b.add(Op.MATMUL, (b.transpose(a), g))
    return (da, dw)


def _outer_sum(b, n, g):
    # out[i, j] = sum over rows and leading axes of a[..., i] * w[..., j]
    a, w = n.inputs
    if a.type.rank > 2:
        raise GraphError(f"autodiff: outer_sum {n.label()} with per-row rank {a.type.rank} > 2 has no vjp rule")
    da = b.add(Op.MATMUL, (w, b.transpose(g)))
    dw = b.add(Op.MATMUL, (a, g))
    return (da, dw)


def _take(b, n, g):
    x, idx = n.inputs
    return (b.mul(b.reshape(g, g.shape + (1,)), b.add(Op.ONE_HOT, (idx,), depth=x.shape[-1])), None)


def _categorical_logp(b, n, g):
    logits, v = n.inputs
    probs = b.add(Op.SOFTMAX, (logits,), axis=logits.type.rank - 1)
    centred = b.sub(b.add(Op.ONE_HOT, (v,), depth=logits.shape[-1]), probs)
    return (b.mul(b.reshape(g, g.shape + (1,)), centred), None)


def _normal_logp(b, n, g):
    loc, scale, v = n.inputs
    z = b.div(b.sub(v, loc), scale)
    g_z = b.div(b.mul(g, z), scale)
    return (g_z, b.div(b.mul(g, b.sub(b.add(Op.SQUARE, (z,)), 1.0)), scale), b.neg(g_z))


def _where(b, n, g):
    cond = n.inputs[0]
    return (None, b.add(Op.WHERE, (cond, g, 0.0)), b.add(Op.WHERE, (cond, 0.0, g)))


def _sigmoid(b, n, g):
    return (b.mul(g, b.mul(n, b.sub(1.0, n))),)


vjp_rules: dict[Op, Rule] = {
    **{op: _leaf for op in Op if op.kind is Kind.LEAF},
    # elementwise unary
    Op.NEG: lambda b, n, g: (b.neg(g),),
    Op.EXP: lambda b, n, g: (b.mul(g, n),),
    Op.LOG: lambda b, n, g: (b.div(g, n.inputs[0]),),
    Op.SIGMOID: _sigmoid,
    Op.TANH: lambda b, n, g: (b.mul(g, b.sub(1.0, b.add(Op.SQUARE, (n,)))),),
    Op.RELU: lambda b, n, g: (b.mul(g, b.add(Op.STEP, n.inputs)),),
    Op.LEAKY_RELU: lambda b, n, g: (
        b.mul(g, b.add(Op.WHERE, (b.add(Op.STEP, n.inputs), 1.0, float(n.attrs["negative_slope"])))),),
    Op.SOFTPLUS: lambda b, n, g: (b.mul(g, b.add(Op.SIGMOID, n.inputs)),),
    Op.LOG_SIGMOID: lambda b, n, g: (b.mul(g, b.add(Op.SIGMOID, (b.neg(n.inputs[0]),))),),
    Op.SQUARE: lambda b, n, g: (b.mul(g, b.mul(2.0, n.inputs[0])),),
    Op.SQRT: lambda b, n, g: (b.div(g, b.mul(2.0, n)),),
    Op.STEP: _none,  # zero almost everywhere
    Op.CAST_F: _none,  # int64 input
    # elementwise binary / ternary
    Op.ADD: lambda b, n, g: (g, g),
    Op.SUB: lambda b, n, g: (g, b.neg(g)),
    Op.MUL: lambda b, n, g: (b.mul(g, n.inputs[1]), b.mul(g, n.inputs[0])),
    Op.DIV: lambda b, n, g: (b.div(g, n.inputs[1]), b.neg(b.div(b.mul(g, n), n.inputs[1]))),
    Op.EQUAL: _none,
    Op.GREATER: _none,
    Op.WHERE: _where,
    Op.STRAIGHT_THROUGH: lambda b, n, g: (None, g),  # forward the hard value, differentiate the soft one
    # reductions
    Op.SUM: _sum,
    Op.MEAN: _mean,
    Op.LOGSUMEXP: _logsumexp,
    # structural
    Op.MATMUL: _matmul,
    Op.TRANSPOSE: lambda b, n, g: (b.transpose(g),),
    Op.OUTER_SUM: _outer_sum,
    Op.SOFTMAX: _softmax,
    Op.LOG_SOFTMAX: _log_softmax,
    Op.ONE_HOT: _none,
    Op.TAKE: _take,
    Op.RESHAPE: lambda b, n, g: (b.reshape(g, n.inputs[0].shape),),
    Op.BROADCAST_TO: lambda b, n, g: (b.unbroadcast(g, n.inputs[0]),),
    Op.UNBROADCAST: lambda b, n, g: (b.broadcast(g, n.inputs[0].shape, n.inputs[0].batched),),
    # sample values are not differentiable in their parameters (pathwise rewrites Normal first)
    Op.BERNOULLI: _none,
    Op.CATEGORICAL: _none,
    Op.NORMAL: _none,
    # densities
    Op.BERNOULLI_LOGP: lambda b, n, g: (
        b.mul(g, b.sub(n.inputs[1], b.add(Op.SIGMOID, (n.inputs[0],)))), b.mul(g, n.inputs[0])),
    Op.CATEGORICAL_LOGP: _categorical_logp,
    Op.NORMAL_LOGP: _normal_logp,
    # markers
    Op.COST: lambda b, n, g: (b.fit(g, n.inputs[0]),),  # a cost is per row even of an unbatched expression
    Op.STOP_GRADIENT: _none,  # zero at every order: DiCE's magic(x) = exp(x - sg(x)) relies on it
    # estimator composites: first-order estimators stop-gradient them; their true VJPs serve
    # second-order autodiff of the estimator IR. A composite without a rule is an error, not a zero.
    **credit_rules,
}

__all__ = ["Builder", "Rule", "vjp_rules"]
