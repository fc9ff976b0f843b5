"""scg.exact(order=2): the exact Hessian by second-order autodiff of the enumeration graph,
against central differences of scg.exact's (exact) gradient on every estimator-suite graph."""

from __future__ import annotations

import numpy as np
import pytest

import scg
from tests.estimators.graphs import GRAPHS


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_exact_hessian_matches_differences_of_the_exact_gradient(graph):
    g, params, inputs = GRAPHS[graph]()
    ex = scg.exact(g, params, inputs, order=2)
    assert ex.grads.keys() == scg.exact(g, params, inputs).grads.keys()
    eps = 1e-5
    for q, value in params.items():
        for i in np.ndindex(value.shape):
            up, down = dict(params), dict(params)
            up[q], down[q] = value.copy(), value.copy()
            up[q][i] += eps
            down[q][i] -= eps
            g_up, g_down = scg.exact(g, up, inputs).grads, scg.exact(g, down, inputs).grads
            for p in params:
                fd = (g_up[p] - g_down[p]) / (2 * eps)
                np.testing.assert_allclose(ex.hessian[(p, q)][(..., *i)], fd, rtol=1e-5, atol=1e-7,
                                           err_msg=f"{graph}: d2J/d{p} d{q}{list(i)}")


def test_exact_hessian_is_symmetric_and_absent_at_order_1():
    g, params, inputs = GRAPHS["bandit"]()
    assert scg.exact(g, params, inputs).hessian is None
    h = scg.exact(g, params, inputs, order=2).hessian
    for (p, q), block in h.items():
        np.testing.assert_allclose(block, _swap(h[(q, p)], params[q].ndim), rtol=1e-9, atol=1e-12)


def _swap(block, k):
    """``block`` of shape q.shape + p.shape -> p.shape + q.shape."""
    axes = list(range(k, block.ndim)) + list(range(k))
    return np.transpose(block, axes)
