"""The finite-difference oracle of the autodiff tests, and small value/shape generators.

``fd_check`` differentiates a graph with ``scg.passes.grad``, evaluates the
gradient graph with the NumPy reference interpreter and compares every gradient
with central differences of ``sum over rows of loss`` (float64).
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

import scg
from scg.backends.numpy_ref import evaluate
from scg.ir import Op, verify
from scg.passes import grad

SETTINGS = settings(max_examples=12, deadline=None)
dims = st.integers(1, 4)
shapes = st.lists(dims, min_size=0, max_size=2).map(tuple)
batches = st.integers(1, 3)
seeds = st.integers(0, 2**31 - 1)


# -- the finite-difference oracle ------------------------------------------------------------
def _objective(graph, loss, params, inputs, overrides):
    """The quantity grad differentiates: the sum over rows of ``loss``."""
    return float(np.sum(evaluate(graph, params, inputs, overrides=overrides)[loss.uid]))


def _numeric(graph, loss, w, params, inputs, eps):
    """Central differences of the objective in every element of ``w``'s value."""
    if w.op is Op.PARAM:
        value = params[w.name]
    elif w.op is Op.INPUT:
        value = inputs[w.name]
    else:  # an intermediate node (e.g. a sample): pin its value with an override
        value = evaluate(graph, params, inputs)[w.uid]
    value = np.array(value, dtype=np.float64)
    out = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        f = []
        for sign in (1.0, -1.0):
            v = value.copy()
            v[i] += sign * eps
            p, x, over = dict(params), dict(inputs), {}
            if w.op is Op.PARAM:
                p[w.name] = v
            elif w.op is Op.INPUT:
                x[w.name] = v
            else:
                over[w] = v
            f.append(_objective(graph, loss, p, x, over))
        out[i] = (f[0] - f[1]) / (2 * eps)
    return out


def fd_check(graph, loss, wrt, params, inputs=None, *, eps=1e-6, rtol=1e-5, atol=1e-6):
    """Assert that grad(graph) matches central differences for every node of ``wrt``.

    Returns the gradient graph and nodes; raises AssertionError naming the node on a mismatch.
    """
    inputs = inputs or {}
    loss = loss.node if hasattr(loss, "node") else loss
    wrt = [w.node if hasattr(w, "node") else w for w in wrt]
    n_before = len(graph.nodes)
    gg, grads = grad(graph, loss, wrt)
    assert len(graph.nodes) == n_before, "grad mutated its input graph"
    verify(gg)
    values = evaluate(gg, params, inputs)
    for w, gnode in zip(wrt, grads, strict=True):
        assert (gnode.dtype, gnode.shape, gnode.batched) == ("f64", w.shape, w.batched)
        np.testing.assert_allclose(values[gnode.uid], _numeric(graph, loss, w, params, inputs, eps),
                                   rtol=rtol, atol=atol, err_msg=f"gradient w.r.t. {w.label()}")
    return gg, grads


def vals(rng, shape, lo=-2.0, hi=2.0, positive=False, away=0.0):
    """Random values in [lo, hi] (or [away, hi] when positive), with |v| >= away otherwise."""
    if positive:
        return rng.uniform(max(lo, away, 0.3), hi, size=shape)
    v = rng.uniform(lo, hi, size=shape)
    return np.where(np.abs(v) < away, np.sign(v + 1e-12) * away + v, v)


def broadcast_pair(data, full):
    """Two per-row shapes that broadcast to ``full`` (dropped leading axes, some 1s)."""
    def sub():
        keep = data.draw(st.integers(0, len(full)))
        tail = full[len(full) - keep:]
        return tuple(d if data.draw(st.booleans()) else 1 for d in tail)
    return sub(), sub()


def operand(rng, name, shape, batched, batch):
    """A batched input or an unbatched param of per-row ``shape``, with values: (value, params, inputs)."""
    if batched:
        return scg.input(name, shape=shape), {}, {name: rng.normal(size=(batch, *shape))}
    return scg.param(name, shape=shape), {name: rng.normal(size=shape)}, {}
