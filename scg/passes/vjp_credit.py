"""VJP rules of the estimator composites (``Kind.CREDIT`` ops): merged into `vjp_rules`.

First-order estimators wrap these ops in ``stop_gradient`` (HNCA's ``qhat``, every
baseline), so these rules never fire there. They exist for differentiating a
*derived* estimator again (second-order autodiff of the estimator IR: DiCE
Hessians, learned control variates): there the composite is an ordinary
function of its inputs and its derivative is the derivative of its definition
(`scg.backends.numpy_credit` is that definition). Each rule is checked by finite
differences in ``tests/passes/test_second_order.py``.

Notation (Young 2022, sec. 4), one child with logits ``l`` and value ``c``;
``s`` is the child's link (sigmoid for a Bernoulli child, softmax over the last
axis for a categorical one) and ``e`` its value as a vector (``c``, or
``one_hot(c)``), so ``d log pi(c | x)/dx = e - s(x)``.

* ``hnca_affine_delta(u, W, l, c)_i = log pi(c | l + W_i (1 - u_i)) - log pi(c | l - W_i u_i)``.
  With ``A_i = l + W_i (1 - u_i)``, ``Z_i = l - W_i u_i`` and ``P = s(A) - s(Z)``:
  ``dl = -sum_i g_i P_i``, ``dW_i = g_i (e - s(A_i) (1 - u_i) - s(Z_i) u_i)``,
  ``du_i = g_i <W_i, P_i>``, and for a Bernoulli child ``dc = sum_i g_i W_i``.
* ``hnca_onehot_loglik(u, W, l, c)_v = log pi(c | l + W_v - W_u) - log pi(c | l)``.
  With ``X_v = l + W_v - W_u``, ``D_v = e - s(X_v)`` and ``S = sum_v g_v D_v``:
  ``dl = S - (sum_v g_v)(e - s(l))``, ``dW = g D - one_hot(u) S`` (``W_u`` enters every
  row with a minus sign), and for a Bernoulli child ``dc = g @ W - (sum_v g_v) W_u``.
  ``u`` is an index: no gradient.
* ``loo_baseline`` is linear with a symmetric matrix (the mean of the other
  draws of the row), so its VJP is itself applied to the cotangent.
"""

from __future__ import annotations

from scg.ir.node import Node
from scg.ir.ops import Op


def _link(b, x: Node, child: str) -> Node:
    if child == "bernoulli":
        return b.add(Op.SIGMOID, (x,))
    return b.add(Op.SOFTMAX, (x,), axis=x.type.rank - 1)


def _value_vector(b, c: Node, child: str, m: int) -> Node:
    """The child's value as a vector over its logits' last axis (``c`` or ``one_hot(c)``)."""
    return c if child == "bernoulli" else b.add(Op.ONE_HOT, (c,), depth=m)


def _row_sum(b, x: Node, axis: int) -> Node:
    return b.add(Op.SUM, (x,), axes=(axis,), keepdims=False)


def _hnca_affine_delta(b, n, g):
    u, w, l, c = n.inputs
    child = n.attrs["child"]
    k, m = w.shape
    u_col = b.reshape(u, (k, 1))
    off = b.sub(1.0, u_col)
    l_row = b.reshape(l, (1, m))
    s_on = _link(b, b.add(Op.ADD, (l_row, b.mul(w, off))), child)   # s(A)
    s_off = _link(b, b.sub(l_row, b.mul(w, u_col)), child)           # s(Z)
    p = b.sub(s_on, s_off)
    g_col = b.reshape(g, (k, 1))
    e = b.reshape(_value_vector(b, c, child, m), (1, m))
    dl = b.neg(_row_sum(b, b.mul(g_col, p), 0))
    dw = b.mul(g_col, b.sub(b.sub(e, b.mul(s_on, off)), b.mul(s_off, u_col)))
    du = b.mul(g, _row_sum(b, b.mul(w, p), 1))
    dc = _row_sum(b, b.mul(g_col, w), 0) if child == "bernoulli" else None
    return (du, dw, dl, dc)


def _hnca_onehot_loglik(b, n, g):
    u, w, l, c = n.inputs
    child = n.attrs["child"]
    k, m = w.shape
    onehot_u = b.add(Op.ONE_HOT, (u,), depth=k)
    w_u = b.add(Op.MATMUL, (onehot_u, w))                               # W_u: [m]
    x = b.add(Op.ADD, (b.reshape(l, (1, m)), b.sub(w, b.reshape(w_u, (1, m)))))
    e = _value_vector(b, c, child, m)
    d = b.sub(b.reshape(e, (1, m)), _link(b, x, child))                 # D: [k, m]
    gd = b.mul(b.reshape(g, (k, 1)), d)
    s = _row_sum(b, gd, 0)
    g_total = _row_sum(b, g, 0)
    dl = b.sub(s, b.mul(g_total, b.sub(e, _link(b, l, child))))
    dw = b.sub(gd, b.mul(b.reshape(onehot_u, (k, 1)), b.reshape(s, (1, m))))
    dc = b.sub(b.add(Op.MATMUL, (g, w)), b.mul(g_total, w_u)) if child == "bernoulli" else None
    return (None, dw, dl, dc)


credit_rules = {
    Op.LOO_BASELINE: lambda b, n, g: (b.add(Op.LOO_BASELINE, (g,)),),
    Op.HNCA_AFFINE_DELTA: _hnca_affine_delta,
    Op.HNCA_ONEHOT_LOGLIK: _hnca_onehot_loglik,
}

__all__ = ["credit_rules"]
