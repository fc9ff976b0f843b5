"""Type and shape inference: one rule per op (the `infer_rules` table).

A rule takes the input types and the node's attrs and returns the output type,
or raises :class:`GraphError` saying what was expected. Leaves carry their type
in attrs (``shape``, ``dtype``, ``batched``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from scg.errors import GraphError
from scg.ir.ops import Op
from scg.ir.types import F64, I64, TensorType, broadcast_shapes

Rule = Callable[[tuple[TensorType, ...], Mapping[str, Any]], TensorType]


def _leaf(_ins, attrs):
    return TensorType(attrs["dtype"], tuple(attrs["shape"]), bool(attrs["batched"]))


def _broadcast(ins: tuple[TensorType, ...], what: str) -> tuple[tuple[int, ...], bool]:
    shape = broadcast_shapes(*(t.shape for t in ins))
    if shape is None:
        shapes = " and ".join(str(list(t.shape)) for t in ins)
        raise GraphError(f"{what}: per-row shapes {shapes} do not broadcast")
    return shape, any(t.batched for t in ins)


def _float_unary(ins, _attrs):
    (t,) = ins
    return TensorType(F64, t.shape, t.batched)


def _leaky_relu(ins, attrs):
    slope = attrs.get("negative_slope")
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope):
        raise GraphError(f"leaky_relu expects a finite float negative_slope, got {slope!r}")
    return _float_unary(ins, attrs)


def _neg(ins, _attrs):
    (t,) = ins
    return t


def _arith(op_name):
    def rule(ins, _attrs):
        shape, batched = _broadcast(ins, op_name)
        ints = all(t.dtype == I64 for t in ins) and op_name in ("add", "sub", "mul")
        return TensorType(I64 if ints else F64, shape, batched)
    return rule


def _compare(ins, _attrs):
    shape, batched = _broadcast(ins, "comparison")
    return TensorType(F64, shape, batched)


def _straight_through(ins, _attrs):
    hard, soft = ins
    if hard.shape != soft.shape or hard.batched != soft.batched:
        raise GraphError(f"straight_through: hard and soft values must have one type, got {hard} and {soft}")
    return TensorType(F64, hard.shape, hard.batched)


def _where(ins, _attrs):
    shape, batched = _broadcast(ins, "where")
    return TensorType(F64, shape, batched)


def _reduce(ins, attrs):
    (t,) = ins
    axes = attrs["axes"]
    if any(a >= t.rank for a in axes):
        raise GraphError(f"reduction axes {list(axes)} out of range for per-row shape {list(t.shape)}")
    if attrs.get("keepdims"):
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
    else:
        shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
    return TensorType(F64, shape, t.batched)


def _matmul(ins, _attrs):
    a, b = ins
    if a.rank < 1 or b.rank < 1 or a.rank > 2 or b.rank > 2:
        raise GraphError(f"matmul expects per-row operands of rank 1 or 2, got {list(a.shape)} @ {list(b.shape)}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if k_a != k_b:
        raise GraphError(f"matmul: inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    shape = a.shape[:-1] + b.shape[-1:] if b.rank == 2 else a.shape[:-1]
    return TensorType(F64, shape, a.batched or b.batched)


def _transpose(ins, _attrs):
    (t,) = ins
    if t.rank < 2:
        return t
    return TensorType(t.dtype, t.shape[:-2] + (t.shape[-1], t.shape[-2]), t.batched)


def _outer_sum(ins, _attrs):
    a, b = ins
    if a.shape[:-1] != b.shape[:-1] or a.rank < 1 or b.rank < 1:
        raise GraphError(f"outer_sum: leading per-row shapes differ: {list(a.shape)} vs {list(b.shape)}")
    return TensorType(F64, (a.shape[-1], b.shape[-1]), False)


def _last_axis_same(ins, _attrs):
    (t,) = ins
    if t.rank < 1:
        raise GraphError("softmax needs a per-row axis to normalise over; got a per-row scalar")
    return TensorType(F64, t.shape, t.batched)


def _one_hot(ins, attrs):
    (t,) = ins
    if t.dtype != I64:
        raise GraphError(f"one_hot expects int64 class indices, got {t.dtype}")
    return TensorType(F64, t.shape + (attrs["depth"],), t.batched)


def _take(ins, _attrs):
    x, idx = ins
    if idx.dtype != I64:
        raise GraphError(f"take expects int64 indices, got {idx.dtype}")
    if x.shape[:-1] != idx.shape and x.rank >= 1:
        shape = broadcast_shapes(x.shape[:-1], idx.shape)
        if shape is None:
            raise GraphError(f"take: index shape {list(idx.shape)} does not match {list(x.shape[:-1])}")
        return TensorType(F64, shape, x.batched or idx.batched)
    return TensorType(F64, idx.shape, x.batched or idx.batched)


def _reshape(ins, attrs):
    (t,) = ins
    shape = tuple(attrs["shape"])
    if TensorType(t.dtype, shape, t.batched).size != t.size:
        raise GraphError(f"reshape: cannot reshape {list(t.shape)} into {list(shape)}")
    return TensorType(t.dtype, shape, t.batched)


def _broadcast_to(ins, attrs):
    (t,) = ins
    shape = tuple(attrs["shape"])
    if broadcast_shapes(t.shape, shape) != shape:
        raise GraphError(f"broadcast_to: {list(t.shape)} does not broadcast to {list(shape)}")
    return TensorType(t.dtype, shape, t.batched or bool(attrs.get("batched")))


def _unbroadcast(ins, attrs):
    (t,) = ins
    shape = tuple(attrs["shape"])
    batched = bool(attrs["batched"])
    if batched and not t.batched:
        raise GraphError("unbroadcast cannot add a batch axis")
    if broadcast_shapes(t.shape, shape) != t.shape:
        raise GraphError(f"unbroadcast: {list(shape)} is not a broadcast source of {list(t.shape)}")
    return TensorType(t.dtype, shape, batched)


def _bernoulli(ins, _attrs):
    (t,) = ins
    return TensorType(F64, t.shape, True)  # samples are always per row, even from param logits


def _categorical(ins, _attrs):
    (t,) = ins
    if t.rank < 1:
        raise GraphError("categorical logits need a last axis of classes")
    return TensorType(I64, t.shape[:-1], True)


def _normal(ins, _attrs):
    shape, _batched = _broadcast(ins, "normal(loc, scale)")
    return TensorType(F64, shape, True)


def _bernoulli_logp(ins, _attrs):
    shape, batched = _broadcast(ins, "bernoulli log_prob")
    return TensorType(F64, shape, batched)


def _categorical_logp(ins, _attrs):
    logits, value = ins
    shape = broadcast_shapes(logits.shape[:-1], value.shape)
    if shape is None or value.dtype != I64:
        raise GraphError(
            f"categorical log_prob expects int64 values of shape {list(logits.shape[:-1])}, "
            f"got {value.dtype}{list(value.shape)}")
    return TensorType(F64, shape, logits.batched or value.batched)


def _marker(ins, _attrs):
    (t,) = ins
    return t


def _cost(ins, attrs):
    (t,) = ins
    if t.shape != ():
        raise GraphError(
            f"a cost must be a per-row scalar, got per-row shape {list(t.shape)}; "
            "reduce it with .sum() or .mean()")
    return TensorType(F64, (), True)  # per row, even when the expression is the same for every row


def _hnca_affine_delta(ins, attrs):
    # (parent value u [n], weight W [n, m], child logits l [m] or [K], child value c) -> [n]
    u, w, logits, _value = ins
    if u.rank != 1 or w.shape != (u.shape[0], logits.shape[-1]) or logits.rank != 1:
        raise GraphError(f"hnca_affine_delta: expected u[n], W[n,m], logits[m], got "
                         f"{list(u.shape)}, {list(w.shape)}, {list(logits.shape)}")
    return TensorType(F64, u.shape, True)


def _hnca_onehot_loglik(ins, attrs):
    # (parent value u [] int, weight W [K_u, m], child logits l [m], child value c) -> [K_u]
    u, w, logits, _c = ins
    if u.rank != 0 or u.dtype != I64 or w.rank != 2 or logits.rank != 1 or w.shape[1] != logits.shape[0]:
        raise GraphError(f"hnca_onehot_loglik: expected u[] int, W[K,m], logits[m], got "
                         f"{u.dtype}{list(u.shape)}, {list(w.shape)}, {list(logits.shape)}")
    return TensorType(F64, (w.shape[0],), True)


infer_rules: dict[Op, Rule] = {
    Op.INPUT: _leaf, Op.PARAM: _leaf, Op.CONST: _leaf, Op.EXTERNAL_COST: _leaf,
    Op.STATE: _leaf, Op.NOISE_NORMAL: _leaf, Op.ROW_SCALE: _leaf, Op.NOISE_UNIFORM: _leaf, Op.N_DRAWS: _leaf,
    Op.STRAIGHT_THROUGH: _straight_through,
    Op.NEG: _neg, Op.SQUARE: _float_unary, Op.LEAKY_RELU: _leaky_relu, Op.CAST_F: _float_unary,
    **{op: _float_unary for op in (Op.EXP, Op.LOG, Op.SIGMOID, Op.TANH, Op.RELU, Op.SOFTPLUS,
                                   Op.LOG_SIGMOID, Op.SQRT, Op.STEP)},
    Op.ADD: _arith("add"), Op.SUB: _arith("sub"), Op.MUL: _arith("mul"), Op.DIV: _arith("div"),
    Op.EQUAL: _compare, Op.GREATER: _compare, Op.WHERE: _where,
    Op.SUM: _reduce, Op.MEAN: _reduce, Op.LOGSUMEXP: _reduce,
    Op.MATMUL: _matmul, Op.TRANSPOSE: _transpose, Op.OUTER_SUM: _outer_sum,
    Op.SOFTMAX: _last_axis_same, Op.LOG_SOFTMAX: _last_axis_same,
    Op.ONE_HOT: _one_hot, Op.TAKE: _take, Op.RESHAPE: _reshape,
    Op.BROADCAST_TO: _broadcast_to, Op.UNBROADCAST: _unbroadcast,
    Op.BERNOULLI: _bernoulli, Op.CATEGORICAL: _categorical, Op.NORMAL: _normal,
    Op.BERNOULLI_LOGP: _bernoulli_logp, Op.CATEGORICAL_LOGP: _categorical_logp,
    Op.NORMAL_LOGP: _bernoulli_logp,
    Op.COST: _cost, Op.STOP_GRADIENT: _marker, Op.LOO_BASELINE: _marker,
    Op.HNCA_AFFINE_DELTA: _hnca_affine_delta, Op.HNCA_ONEHOT_LOGLIK: _hnca_onehot_loglik,
}


def infer_type(op: Op, ins: tuple[TensorType, ...], attrs: Mapping[str, Any]) -> TensorType:
    try:
        rule = infer_rules[op]
    except KeyError:
        raise GraphError(f"no type rule for op {op.pretty!r}") from None
    arity = op.info.arity
    if arity is not None and len(ins) != arity:
        raise GraphError(f"{op.pretty} takes {arity} inputs, got {len(ins)}")
    return rule(ins, attrs)
