"""leaky_relu: value, gradient against finite differences, printing, bad slopes, numba parity."""

from __future__ import annotations

import numpy as np
import pytest
from fdcheck import fd_check, vals

import scg
from scg.backends.numpy_ref import evaluate
from scg.ir import Op
from scg.passes.vjp_rules import vjp_rules


def _graph(slope):
    g = scg.Graph("leaky")
    with g:
        x = scg.input("x", shape=(4,))
        p = scg.param("p", shape=(4,))
        y = scg.leaky_relu(x * p, negative_slope=slope)
        loss = scg.cost("loss", (y * np.array([1.0, -2.0, 0.5, 3.0])).sum())
    return g, x, p, y, loss


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.0, -0.5, 1.5])
def test_value_and_gradient_match_finite_differences(slope):
    g, x, p, y, loss = _graph(slope)
    rng = np.random.default_rng(3)
    params = {"p": rng.uniform(0.7, 1.4, size=4)}
    inputs = {"x": vals(rng, (3, 4), away=0.3)}  # away from the kink, where the derivative jumps
    xp = inputs["x"] * params["p"]
    np.testing.assert_array_equal(evaluate(g, params, inputs)[y.node.uid], np.where(xp > 0, xp, slope * xp))
    fd_check(g, loss, [p, x], params, inputs)


def test_a_wrong_vjp_is_caught(monkeypatch):
    """The check can fail: relu's derivative (slope 0 on the negative side) is not leaky_relu's."""
    monkeypatch.setitem(vjp_rules, Op.LEAKY_RELU, vjp_rules[Op.RELU])
    g, x, p, _y, loss = _graph(0.2)
    rng = np.random.default_rng(3)
    inputs = {"x": -np.abs(vals(rng, (3, 4), away=0.3))}  # all on the leaky side
    with pytest.raises(AssertionError, match="gradient w.r.t."):
        fd_check(g, loss, [p, x], {"p": rng.uniform(0.7, 1.4, size=4)}, inputs)


def test_default_slope_and_printing():
    g = scg.Graph("leaky")
    with g:
        x = scg.input("x", shape=(2,))
        y = scg.leaky_relu(x)
        scg.cost("c", y.sum())
    assert y.node.attrs["negative_slope"] == 0.01
    assert "leaky_relu[negative_slope=0.01]" in str(g)


@pytest.mark.parametrize("bad", ["0.1", float("nan"), float("inf"), None, True])
def test_bad_slope_is_an_scg_error(bad):
    with scg.Graph("leaky"):
        x = scg.input("x", shape=(2,))
        with pytest.raises(scg.ScgError, match="negative_slope"):
            scg.leaky_relu(x, negative_slope=bad)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_numba_matches_numpy(precision):
    """leaky_relu on the path to a Bernoulli site and in the cost: same samples, same gradients."""
    g = scg.Graph("leaky_sbn")
    with g:
        x = scg.input("x", shape=(5,))
        h = scg.leaky_relu(x @ scg.param("W", shape=(5, 6), init="glorot"), negative_slope=0.1)
        z = scg.sample("z", scg.Bernoulli(logits=h @ scg.param("V", shape=(6, 3), init="glorot")))
        scg.cost("c", scg.leaky_relu(z @ scg.param("U", shape=(3, 2), init="glorot") - 0.3, 0.3).sum())
    params = g.init_params(seed=1)
    inputs = {"x": np.random.default_rng(0).normal(size=(7, 5))}
    rtol = 1e-10 if precision == "float64" else 2e-5
    for estimator in ("reinforce", "disarm"):
        ref = scg.compile(g, estimator=estimator, backend="numpy", precision=precision)
        fast = scg.compile(g, estimator=estimator, backend="numba", precision=precision)
        r1, r2 = ref(params, inputs, seed=4), fast(params, inputs, seed=4)
        np.testing.assert_array_equal(r1.samples["z"], r2.samples["z"])
        for k, v in r1.grads.items():
            np.testing.assert_allclose(r2.grads[k], v, rtol=rtol, atol=rtol, err_msg=f"{estimator} {k}")
