"""Categorical ARM / DisARM by stick-breaking (Dong, Mnih & Tucker 2021, sec. 3.1).

A categorical with probabilities ``p`` over ``K`` classes is the first success of ``K - 1``
independent Bernoulli "stop here?" decisions with ``sigmoid(eta_j) = p_j / sum_{i >= j} p_i``,
i.e. ``eta_j = log p_j - log sum_{i > j} p_i`` (class ``K`` when none stops). ``E[f]`` is then
an expectation over independent binary units, so the multivariate ARM/DisARM estimators
(``arm.py``) apply to ``eta``, driven by ``v`` and ``1 - v`` with ``v`` a stream of ``K - 1``
uniforms of its own; autodiff carries ``eta``'s credit to the logits (chain rule, exact).

Both members are new draws (the realised sample came from the inverse CDF with other
noise), so both are re-evaluated; the costs' pathwise part still uses the realised sample,
whose noise is independent of the pair's: the sum stays unbiased. A member's class index is
produced by a coupled categorical copy whose logits are ``1000 * one_hot(class)`` (its
inverse CDF then returns that class for every uniform: ``exp(-1000)`` is 0 in float32 and
float64), so every consumer of the index is re-evaluated unchanged.
"""

from __future__ import annotations

import numpy as np

from scg.estimators import coupled
from scg.estimators.base import SurrogateBuilder
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64

_SURE = 1000.0  # logit scale of a deterministic categorical copy


def _matrix(b: SurrogateBuilder, m: np.ndarray) -> Node:
    m = np.asarray(m, dtype=np.float64)
    m.setflags(write=False)
    return b.graph.add(Op.CONST, (), {"value": m, "dtype": F64, "shape": m.shape, "batched": False})


def _fresh_site(b: SurrogateBuilder) -> int:
    return 1 + max((n.attrs["site"] for n in b.graph.nodes if "site" in n.attrs), default=-1)


def stop_logits(b: SurrogateBuilder, logits: Node, note: str) -> Node:
    """``eta`` (..., K-1): ``log p_j - log sum_{i > j} p_i``."""
    k = logits.shape[-1]
    axis = len(logits.shape) - 1
    logp = b.add(Op.LOG_SOFTMAX, logits, axis=axis, note=note)
    p = b.add(Op.SOFTMAX, logits, axis=axis, note=note)
    head = _matrix(b, np.eye(k)[:, : k - 1])                         # logp_j, j < K
    tail = _matrix(b, np.tril(np.ones((k, k - 1)), -1))              # sum over i > j of p_i
    return b.add(Op.SUB, b.add(Op.MATMUL, logp, head, note=note),
                 b.add(Op.LOG, b.add(Op.MATMUL, p, tail, note=note), note=note), note=note)


def class_of(b: SurrogateBuilder, u: Node, stops: Node, k: int, note: str) -> Node:
    """The int64 class of a binary stop vector (..., K-1): a coupled, deterministic categorical copy."""
    first = _matrix(b, np.triu(np.ones((k - 1, k)), 1))              # stops before class j
    pad = _matrix(b, np.eye(k - 1, k))
    last = np.zeros(k)
    last[-1] = 1.0
    reached = b.add(Op.ADD, b.add(Op.MATMUL, stops, pad, note=note), _matrix(b, last), note=note)
    before = b.add(Op.MATMUL, stops, first, note=note)
    onehot = b.add(Op.MUL, reached, b.add(Op.EQUAL, before, 0.0, note=note), note=note)
    attrs = dict(u.attrs, coupled=f"{u.name}: class of a stick-breaking member")
    return b.graph.add(Op.CATEGORICAL, (b.add(Op.MUL, _SURE, onehot, note=note),), attrs, note=note)


def derive(b: SurrogateBuilder, info, white, kind: str, note: str) -> None:
    """Add the ARM/DisARM credit of the categorical site ``info.node`` for the costs ``white``."""
    u = info.node
    logits = u.inputs[0]
    k = logits.shape[-1]
    if k < 2:
        return  # one class: nothing is random
    eta = stop_logits(b, logits, note)
    v = b.graph.add(Op.NOISE_UNIFORM, (), {"shape": u.shape + (k - 1,), "dtype": F64, "batched": True,
                                           "site": _fresh_site(b), "sample": f"{u.name}/stick"}, note=note)
    s = b.add(Op.SIGMOID, eta, note=note)
    tilde = b.add(Op.GREATER, s, v, note=note)                                     # 1[v < s]
    partner = b.add(Op.GREATER, s, b.add(Op.SUB, 1.0, v, note=note), note=note)   # 1[1 - v < s]
    f = [b.total(coupled.re_evaluate(b.graph, b.model_nodes, u, class_of(b, u, m, k, note), white, note),
                 note=note) for m in (partner, tilde)]
    diff = b.add(Op.SUB, f[0], f[1], note=note)
    if kind == "arm":
        g = b.add(Op.MUL, diff, b.add(Op.SUB, v, 0.5, note=note), note=note)
    else:
        sign = b.add(Op.SUB, 1.0, b.add(Op.MUL, 2.0, tilde, note=note), note=note)
        differ = b.add(Op.SQUARE, b.add(Op.SUB, partner, tilde, note=note), note=note)
        s_abs = b.add(Op.WHERE, b.add(Op.GREATER, eta, 0.0, note=note), s, b.add(Op.SUB, 1.0, s, note=note),
                      note=note)
        g = b.add(Op.MUL, b.add(Op.MUL, b.add(Op.MUL, b.add(Op.MUL, 0.5, diff, note=note), sign, note=note),
                                differ, note=note), s_abs, note=note)
    b.add_term(u.name, b.row_total(b.add(Op.MUL, eta, b.sg(g, note=note), note=note), note=note, name=f"term.{u.name}"))
