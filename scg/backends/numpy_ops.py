"""The per-op rules of the NumPy reference interpreter: the ``numpy_impls`` table.

Each rule is ``impl(node, args, env) -> ndarray``: ``args`` are the values of
``node.inputs`` in order, laid out as the interpreter stores them (batched
values ``(env.n, *shape)``, unbatched ``shape``); the result must have the
layout of ``node.type``. One plain implementation per op, written for clarity
and numerical stability, never for speed: this table *is* the semantics every
other backend is parity-tested against.

Float arithmetic stays in ``env.dtype``: only Python float literals (weak
scalars under NEP 50) are mixed into float arrays, never float64 constants.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from scg.backends import rng
from scg.errors import BackendError, InputError
from scg.ir.graph import reads_data
from scg.ir.node import Node, expression
from scg.ir.ops import Op
from scg.ir.types import I64

if TYPE_CHECKING:
    from scg.backends.numpy_ref import Env

Impl = Callable[[Node, list[np.ndarray], "Env"], np.ndarray]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# -- layout helpers -----------------------------------------------------------
def full_shape(shape: tuple[int, ...], batched: bool, env: Env) -> tuple[int, ...]:
    """Array shape of a value with per-row ``shape``: ``(env.n, *shape)`` if batched."""
    return (env.n, *shape) if batched else tuple(shape)


def expand(x: np.ndarray, batched: bool, rank: int) -> np.ndarray:
    """Insert singleton per-row axes after the batch axis up to per-row ``rank``.

    Per-row shapes broadcast from the right, but a batched array's leading axis
    is the batch, so a batched (N,) scalar against per-row (3,) must become (N, 1).
    Unbatched arrays already broadcast from the right.
    """
    if not batched or x.ndim - 1 >= rank:
        return x
    return x.reshape((x.shape[0],) + (1,) * (rank - x.ndim + 1) + x.shape[1:])


def aligned(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """The args of an elementwise node, ready for NumPy broadcasting."""
    return [expand(a, x.batched, node.type.rank) for a, x in zip(args, node.inputs, strict=True)]


def to_full(x: np.ndarray, batched: bool, shape: tuple[int, ...], out_batched: bool, env: Env) -> np.ndarray:
    """Broadcast (a read-only view) to the layout of per-row ``shape``."""
    return np.broadcast_to(expand(x, batched, len(shape)), full_shape(shape, out_batched, env))


def fl(x: np.ndarray, env: Env) -> np.ndarray:
    return np.asarray(x).astype(env.dtype, copy=False)


def _row_axes(node: Node, axes: tuple[int, ...]) -> tuple[int, ...]:
    """Array axes of per-row ``axes`` of the node's (first) input."""
    off = 1 if node.inputs[0].batched else 0
    return tuple(a + off for a in axes)


# -- stable primitives ----------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    """1/(1+e^-x) via e = exp(-|x|), which never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1+e^x) = max(x, 0) + log1p(e^-|x|): finite for every finite x."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _shift(x: np.ndarray, axis) -> np.ndarray:
    """The max over ``axis`` (keepdims), with non-finite maxima replaced by 0 (all -inf rows)."""
    m = np.max(x, axis=axis, keepdims=True)
    return np.where(np.isfinite(m), m, 0.0).astype(x.dtype, copy=False)


def logsumexp(x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    """log sum exp(x) = m + log sum exp(x - m), m the max (0 when it is not finite)."""
    m = _shift(x, axis)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """x - logsumexp(x) over the last axis, from the max-shifted logits."""
    s = x - _shift(x, -1)
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - _shift(x, -1))
    return e / np.sum(e, axis=-1, keepdims=True)


def _check_indices(idx: np.ndarray, depth: int, node: Node, what: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= depth):
        bad = idx[(idx < 0) | (idx >= depth)].ravel()[0]
        raise InputError(f"{node.label()}: {what} {node.inputs[-1].label()} has index {int(bad)} "
                         f"outside [0, {depth})")


def gather_last(node: Node, x: np.ndarray, x_batched: bool, idx: np.ndarray, idx_batched: bool,
                env: Env, what: str) -> np.ndarray:
    """out[..., ] = x[..., idx] along x's last axis; x's leading axes broadcast with idx to node.shape."""
    shape, k = node.shape, x.shape[-1]
    _check_indices(idx, k, node, what)
    xf = to_full(x, x_batched, shape + (k,), node.batched, env)
    idxf = to_full(idx, idx_batched, shape, node.batched, env)
    return np.take_along_axis(xf, idxf[..., None], axis=-1)[..., 0]


# -- argument checks of samplers and densities ----------------------------------
# Ops whose arguments are validated at run time (the domain of a distribution).
CHECKED_OPS = frozenset({Op.BERNOULLI, Op.CATEGORICAL, Op.NORMAL, Op.NORMAL_LOGP, Op.EQUAL})
# Off while an estimator compiled with ``check_finite=False`` runs (NaN in, NaN out); a context
# variable, so it is scoped to that call and thread.
ARGUMENT_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("scg_argument_checks", default=True)


def argument_checks(node: Node | None = None) -> bool:
    """Whether distribution arguments are validated in the current call (True unless turned off)."""
    return ARGUMENT_CHECKS.get()


def _where_bad(bad: np.ndarray, batched: bool) -> str:
    """' (row r, element e)' of the first True of ``bad``, for error messages."""
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    if batched and bad.ndim:
        row, elem = int(first[0]), tuple(int(i) for i in first[1:])
        return f"row {row}" + (f", element {elem}" if elem else "")
    return f"element {tuple(int(i) for i in first)}" if first else "the scalar"


def _sampled_name(node: Node) -> str:
    """The user's name of the sample a density or sampler is about (a density's value input)."""
    if node.name:
        return node.label()
    for x in reversed(node.inputs):
        if x.name and x.op in (Op.BERNOULLI, Op.CATEGORICAL, Op.NORMAL, Op.ADD, Op.INPUT):
            return x.label()
    return node.label()


def _is_probs_form(logits: Node) -> bool:
    """``Bernoulli(probs=p)`` builds logits as ``log(p) - log(1 - p)``."""
    return logits.op is Op.SUB and all(x.op is Op.LOG for x in logits.inputs)


def _check_bernoulli(node: Node, logits: np.ndarray, batched: bool) -> None:
    bad = np.isnan(logits)
    if not bad.any():
        return
    where = _where_bad(bad, batched)
    if _is_probs_form(node.inputs[0]):
        raise InputError(f"Bernoulli sample {node.label()}: probs outside [0, 1] (or NaN) at {where} "
                         f"({int(bad.sum())} element(s)); expected probabilities in [0, 1]")
    raise InputError(f"Bernoulli sample {node.label()}: logits are NaN at {where} ({int(bad.sum())} "
                     "element(s)); expected real logits (+-inf allowed: probability 1 or 0)")


def _check_categorical(node: Node, logits: np.ndarray, batched: bool) -> None:
    nan = np.isnan(logits).any(axis=-1)
    if nan.any():
        raise InputError(f"Categorical sample {node.label()}: logits are NaN at {_where_bad(nan, batched)} "
                         f"({int(nan.sum())} distribution(s)); expected real logits")
    pinf = (logits == np.inf).any(axis=-1)
    if pinf.any():
        raise InputError(f"Categorical sample {node.label()}: a logit is +inf at {_where_bad(pinf, batched)}; "
                         "expected finite logits (-inf allowed: probability 0)")
    empty = (logits == -np.inf).all(axis=-1)
    if empty.any():
        raise InputError(f"Categorical sample {node.label()}: every logit is -inf at "
                         f"{_where_bad(empty, batched)}: no category has positive probability")


def _check_normal(node: Node, loc: np.ndarray, scale: np.ndarray, what: str) -> None:
    (tl, ts) = node.inputs[:2]
    bad = np.zeros((), bool) if scale is None else ~(scale > 0.0)
    if bad.any():
        first = np.asarray(scale)[np.unravel_index(int(np.argmax(bad)), bad.shape)] if bad.ndim else scale
        raise InputError(f"Normal {what} {_sampled_name(node)}: scale must be positive, got {float(first)!r} "
                         f"at {_where_bad(bad, ts.batched)} ({int(np.sum(bad))} element(s))")
    bad = np.zeros((), bool) if loc is None else np.isnan(loc)
    if bad.any():
        raise InputError(f"Normal {what} {_sampled_name(node)}: loc is NaN at {_where_bad(bad, tl.batched)}; "
                         "expected real values")


def _check_label(node: Node, args: list) -> None:
    """``equal(a, y)`` with ``a`` a Categorical sample over K classes: an integer label y read from the data
    must be in [0, K), whether y is an input or computed (``y + 1``); see ``scg.ir.graph.reads_data``."""
    for (sample, label), value in ((node.inputs, args[1]), (node.inputs[::-1], args[0])):
        if sample.op is not Op.CATEGORICAL or label.dtype != I64 or not reads_data(label) or value is None:
            continue
        k, idx = sample.inputs[0].shape[-1], np.asarray(value)
        bad = (idx < 0) | (idx >= k)
        if bad.any():
            what = f"input {label.label()} has label" if label.op is Op.INPUT else f"label {label.label()} is"
            raise InputError(f"equal({expression(sample)}, {expression(label)}): {what} "
                             f"{int(idx[bad].ravel()[0])} at {_where_bad(bad, label.batched)}, but Categorical sample "
                             f"{sample.label()} takes values in [0, {k}): expected labels in [0, {k})")


def check_arguments(node: Node, args: list[np.ndarray], env: Env) -> None:
    """Validate the arguments of a CHECKED_OPS node (its input values, interpreter layout).

    The samplers and densities below call this first; the numba backend calls it on
    arguments its plan materialises, so both raise the very same InputError.
    """
    if node.op not in CHECKED_OPS or not argument_checks(node):
        return
    if node.op is Op.EQUAL:
        _check_label(node, args)
    elif node.op is Op.BERNOULLI:
        _check_bernoulli(node, np.asarray(args[0]), node.inputs[0].batched)
    elif node.op is Op.CATEGORICAL:
        _check_categorical(node, np.asarray(args[0]), node.inputs[0].batched)
    else:  # a None argument (not materialised by a compiled plan) is not checked
        loc, scale = (None if a is None else fl(expand(a, x.batched, node.type.rank), env)
                      for a, x in zip(args[:2], node.inputs[:2], strict=True))
        _check_normal(node, loc, scale, "sample" if node.op is Op.NORMAL else "log_prob of")


# -- leaves computed from attrs -------------------------------------------------
def _const(node, _args, env):
    return np.asarray(node.attrs["value"], dtype=np.int64 if node.dtype == I64 else env.dtype)


def _row_scale(node, _args, env):
    """1 / (B*K): turns a sum over the K*B rows into the mean the objective uses."""
    return np.full(full_shape(node.shape, node.batched, env), 1.0 / env.n, dtype=env.dtype)


def draw_layout(env: Env) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(draw, row)`` indices of the draw-major layout: row r is draw r // B of row r % B."""
    r = np.arange(env.n, dtype=np.int64)
    return r // env.n_rows, r % env.n_rows


def normal_noise(shape: tuple[int, ...], site: int, env: Env) -> np.ndarray:
    """Standard normal noise (env.n, *shape) of a site, drawn in float64 then cast to env.dtype."""
    draws, rows = draw_layout(env)
    z = rng.normal((env.n, *shape), env.seed, site, draws, rows)
    return z.astype(env.dtype, copy=False)


def _noise_normal(node, _args, env):
    if not node.batched:
        raise BackendError(f"{node.label()}: noise_normal must be batched (one draw per row)")
    return normal_noise(tuple(node.attrs["shape"]), node.attrs["site"], env)


# -- elementwise ------------------------------------------------------------------
def _float_unary(fn):
    def impl(_node, args, env):
        return fn(fl(args[0], env))
    return impl


def _step(x):
    return np.where(x > 0, 1.0, 0.0).astype(x.dtype, copy=False)


def _arith(fn):
    def impl(node, args, env):
        a, b = aligned(node, args)
        if node.dtype != I64:
            a, b = fl(a, env), fl(b, env)
        return fn(a, b)
    return impl


def _compare(fn):
    def impl(node, args, env):
        check_arguments(node, args, env)
        a, b = aligned(node, args)
        return fn(a, b).astype(env.dtype)
    return impl


def _where(node, args, env):
    cond, a, b = aligned(node, args)
    return np.where(cond != 0, fl(a, env), fl(b, env))


# -- reductions ---------------------------------------------------------------------
def _reduction(fn):
    def impl(node, args, env):
        axes = _row_axes(node, node.attrs["axes"])
        return fn(fl(args[0], env), axis=axes, keepdims=bool(node.attrs.get("keepdims")))
    return impl


# -- structural ---------------------------------------------------------------------
def _matmul(node, args, env):
    """Per-row a @ b; '@' where it maps onto one BLAS call, einsum otherwise."""
    (ta, tb), (a, b) = (x.type for x in node.inputs), (fl(args[0], env), fl(args[1], env))
    if not ta.batched and not tb.batched:
        return a @ b
    if ta.batched and not tb.batched:  # the hot case: (N*n, k) @ (k, m)
        k = ta.shape[-1]
        return (a.reshape(-1, k) @ b).reshape(full_shape(node.shape, True, env))
    sa = ("z" if ta.batched else "") + ("i" if ta.rank == 2 else "") + "k"
    sb = ("z" if tb.batched else "") + "k" + ("j" if tb.rank == 2 else "")
    out = "z" + ("i" if ta.rank == 2 else "") + ("j" if tb.rank == 2 else "")
    return np.einsum(f"{sa},{sb}->{out}", a, b)


def _transpose(node, args, _env):
    x = args[0]
    return x if node.inputs[0].type.rank < 2 else np.swapaxes(x, -1, -2)


def _outer_sum(node, args, env):
    """sum over rows and leading per-row axes of outer(a, b), as one (n, R) @ (R, m) product."""
    (ta, tb), (a, b) = node.inputs, (fl(args[0], env), fl(args[1], env))
    if ta.batched != tb.batched:  # broadcast the unbatched operand over the batch
        a = to_full(a, ta.batched, ta.shape, True, env)
        b = to_full(b, tb.batched, tb.shape, True, env)
    n, m = ta.shape[-1], tb.shape[-1]
    return a.reshape(-1, n).T @ b.reshape(-1, m)


def _one_hot(node, args, env):
    idx, depth = args[0], node.attrs["depth"]
    _check_indices(idx, depth, node, "one_hot of")
    return (idx[..., None] == np.arange(depth)).astype(env.dtype)


def _take(node, args, env):
    (tx, ti), (x, idx) = node.inputs, args
    return gather_last(node, fl(x, env), tx.batched, idx, ti.batched, env, "take with index")


def _reshape(node, args, env):
    return args[0].reshape(full_shape(node.shape, node.batched, env))


def _broadcast_to(node, args, env):
    return np.array(to_full(args[0], node.inputs[0].batched, node.shape, node.batched, env))


def _unbroadcast(node, args, _env):
    """Sum a broadcast value back to its source type: batch axis, extra leading axes, size-1 axes."""
    x, t, target = args[0], node.inputs[0], node.shape
    if t.batched and not node.batched:
        x = x.sum(axis=0)
    off = 1 if node.batched else 0
    lead = x.ndim - off - len(target)
    if lead:
        x = x.sum(axis=tuple(range(off, off + lead)))
    axes = tuple(off + i for i, d in enumerate(target) if d == 1 and x.shape[off + i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


# -- stochastic ----------------------------------------------------------------------
def _bernoulli(node, args, env):
    """Bernoulli(sigmoid(logits)), in float64 (rng.bernoulli), every draw in one call."""
    site = node.attrs["site"]
    check_arguments(node, args, env)
    logits = to_full(np.asarray(args[0], np.float64), node.inputs[0].batched, node.shape, True, env)
    draws, rows = draw_layout(env)
    out = rng.bernoulli(logits, env.seed, site, draws, rows).astype(env.dtype)
    return np.where(np.isnan(logits), logits, out).astype(env.dtype, copy=False)  # NaN in, NaN out


def _categorical(node, args, env):
    """Categorical(softmax(logits)) over the last axis, per draw k (rng.categorical)."""
    site, t = node.attrs["site"], node.inputs[0]
    check_arguments(node, args, env)
    logits = to_full(np.asarray(args[0], np.float64), t.batched, node.shape + t.shape[-1:], True, env)
    draws, rows = draw_layout(env)
    return rng.categorical(logits, env.seed, site, draws, rows)


def _normal(node, args, env):
    """loc + scale * eps with eps = NOISE_NORMAL of the same site: the pathwise rewrite, bit for bit."""
    check_arguments(node, args, env)
    loc, scale = (fl(a, env) for a in aligned(node, args))
    return loc + scale * normal_noise(node.shape, node.attrs["site"], env)


# -- densities --------------------------------------------------------------------------
def _bernoulli_logp(node, args, env):
    """log p(v) = v*l - softplus(l) (= v log sigmoid(l) + (1-v) log sigmoid(-l)); finite at |l| = 1e4."""
    logits, value = (fl(a, env) for a in aligned(node, args))
    out = value * logits - softplus(logits)
    # logits of +-inf (probs exactly 1 or 0): log p = 0 for the certain value, -inf otherwise (not inf - inf)
    return np.where(np.isinf(logits), np.where(value == (logits > 0), 0.0, -np.inf), out).astype(out.dtype, copy=False)


def _categorical_logp(node, args, env):
    """log p(v) = log_softmax(logits)[..., v]."""
    (tl, tv), (logits, value) = node.inputs, args
    return gather_last(node, log_softmax(fl(logits, env)), tl.batched, value, tv.batched, env, "log_prob of value")


def _normal_logp(node, args, env):
    """log N(v; loc, scale) = -((v-loc)/scale)^2/2 - log(scale) - log(2 pi)/2."""
    check_arguments(node, args, env)
    loc, scale, value = (fl(a, env) for a in aligned(node, args))
    z = (value - loc) / scale
    return -0.5 * (z * z) - np.log(scale) - _HALF_LOG_2PI


# -- markers and credit -------------------------------------------------------------------
def _cost(node, args, env):
    """Identity, broadcast to every row: a cost is per row even when its expression is not."""
    return fl(to_full(args[0], node.inputs[0].batched, (), True, env), env)


def _identity(_node, args, _env):
    return args[0]


def _loo_baseline(node, args, env):
    """b[k*B+r] = mean over k' != k of x[k'*B+r] (leave-one-out over the K draws of row r).

    Sums of the other draws come from exclusive prefix and suffix sums, not
    ``total - x`` (which cancels catastrophically when one draw dominates).
    """
    k = env.n_samples
    if k < 2:
        raise BackendError(f"{node.label()}: the leave-one-out baseline needs n_samples >= 2 draws per row, "
                           f"got n_samples={k}")
    x = fl(args[0], env)
    if not node.inputs[0].batched:
        return x  # the same value in every draw: its leave-one-out mean is itself
    xs = x.reshape((k, env.n_rows) + x.shape[1:])
    zero = np.zeros_like(xs[:1])
    before = np.concatenate([zero, np.cumsum(xs, axis=0)[:-1]], axis=0)
    after = np.concatenate([np.cumsum(xs[::-1], axis=0)[:-1][::-1], zero], axis=0)
    return ((before + after) / (k - 1)).reshape(x.shape)


numpy_impls: dict[Op, Impl] = {
    Op.CONST: _const, Op.NOISE_NORMAL: _noise_normal, Op.ROW_SCALE: _row_scale,
    Op.NEG: lambda _n, args, _e: np.negative(args[0]),
    Op.EXP: _float_unary(np.exp), Op.LOG: _float_unary(np.log), Op.SIGMOID: _float_unary(sigmoid),
    Op.TANH: _float_unary(np.tanh), Op.RELU: _float_unary(lambda x: np.maximum(x, 0.0)),
    Op.SOFTPLUS: _float_unary(softplus), Op.LOG_SIGMOID: _float_unary(lambda x: -softplus(-x)),
    Op.SQUARE: _float_unary(np.square), Op.SQRT: _float_unary(np.sqrt), Op.STEP: _float_unary(_step),
    Op.CAST_F: _float_unary(lambda x: x),
    Op.ADD: _arith(np.add), Op.SUB: _arith(np.subtract), Op.MUL: _arith(np.multiply),
    Op.DIV: _arith(np.divide), Op.EQUAL: _compare(np.equal), Op.GREATER: _compare(np.greater),
    Op.WHERE: _where,
    Op.SUM: _reduction(np.sum), Op.MEAN: _reduction(np.mean), Op.LOGSUMEXP: _reduction(logsumexp),
    Op.MATMUL: _matmul, Op.TRANSPOSE: _transpose, Op.OUTER_SUM: _outer_sum,
    Op.SOFTMAX: _float_unary(softmax), Op.LOG_SOFTMAX: _float_unary(log_softmax),
    Op.ONE_HOT: _one_hot, Op.TAKE: _take, Op.RESHAPE: _reshape,
    Op.BROADCAST_TO: _broadcast_to, Op.UNBROADCAST: _unbroadcast,
    Op.BERNOULLI: _bernoulli, Op.CATEGORICAL: _categorical, Op.NORMAL: _normal,
    Op.BERNOULLI_LOGP: _bernoulli_logp, Op.CATEGORICAL_LOGP: _categorical_logp, Op.NORMAL_LOGP: _normal_logp,
    Op.COST: _cost, Op.STOP_GRADIENT: _identity, Op.LOO_BASELINE: _loo_baseline,
}
