"""Issue 7.2: numeric extremes. Logits of +-1e4 and probabilities of exactly 0 or 1 give finite
samples, costs and gradients on every backend and estimator (stable log-sigmoid, softplus,
logsumexp and HNCA's log-space credit)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import scg

BACKENDS = ["numpy", "numba"]
ESTIMATORS = ["reinforce", "scg", "muprop", "hnca"]
B = 6


def _graph():
    """Two Bernoulli layers (HNCA affine credit), a categorical head, and costs through every stable op."""
    g = scg.Graph("extreme")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", dtype="int64")
        W1 = scg.param("W1", shape=(3, 4))
        h1 = scg.sample("h1", scg.Bernoulli(logits=x @ W1))
        W2 = scg.param("W2", shape=(4, 3))
        h2 = scg.sample("h2", scg.Bernoulli(logits=h1 @ W2))
        W3 = scg.param("W3", shape=(3, 5))
        logits = h2 @ W3
        a = scg.sample("a", scg.Categorical(logits=logits))
        scg.cost("reward", -scg.equal(a, y))
        scg.cost("stable", 1e-4 * (scg.softplus(logits).sum() + scg.logsumexp(logits) - scg.log_sigmoid(logits).sum()))
        scg.cost("lik", -1e-4 * scg.Bernoulli(logits=h1 @ W2).log_prob(h2).sum())
    return g


GRAPH = _graph()


@functools.cache
def _est(estimator, backend, precision="float64"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        return scg.compile(GRAPH, estimator, backend=backend, baseline="loo", precision=precision)


def _data(scale):
    gen = np.random.default_rng(0)
    params = {k: np.sign(gen.normal(size=v.shape)) * scale for k, v in GRAPH.init_params(0).items()}
    inputs = {"x": np.sign(gen.normal(size=(B, 3))), "y": gen.integers(0, 5, size=B)}
    return params, inputs


def _finite(out):
    assert np.isfinite(out.cost), out.cost
    for k, v in out.grads.items():
        assert np.isfinite(v).all(), f"grad {k} not finite"
    for k, v in out.samples.items():
        assert np.isfinite(v).all(), f"samples {k} not finite"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_logits_of_1e4_are_finite(estimator, backend, scale):
    params, inputs = _data(scale)
    out = _est(estimator, backend)(params, inputs, seed=3, n_samples=2)
    _finite(out)
    if backend == "numba":  # and equal to the spec
        ref = _est(estimator, "numpy")(params, inputs, seed=3, n_samples=2)
        for k, v in ref.samples.items():
            assert np.array_equal(out.samples[k], v)
        for k, v in ref.grads.items():
            np.testing.assert_allclose(out.grads[k], v, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(v).max()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_extremes_are_finite(backend):
    params, inputs = _data(1e4)
    _finite(_est("hnca", backend, "float32")(params, inputs, seed=1, n_samples=2))


def _probs_graph():
    g = scg.Graph("probs01")
    with g:
        p = scg.input("p", shape=(4,))
        w = scg.param("w", shape=(4,))
        h = scg.sample("h", scg.Bernoulli(probs=p))
        W = scg.param("W", shape=(4, 2))
        c = scg.sample("c", scg.Bernoulli(logits=h @ W))
        scg.cost("fit", scg.square(c.sum() - 1.0) + (h * w).sum())
        scg.cost("lik", -scg.Bernoulli(probs=p).log_prob(h).sum())
    return g


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_probabilities_of_exactly_zero_and_one(estimator, backend):
    g = _probs_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        est = scg.compile(g, estimator, backend=backend)
    p = np.tile([0.0, 1.0, 0.0, 1.0], (B, 1))
    out = est(g.init_params(0), {"p": p}, seed=2, n_samples=2)
    _finite(out)
    assert np.array_equal(out.samples["h"], np.broadcast_to(p, (2, B, 4)))  # p = 0 never fires, p = 1 always
    assert out.costs["lik"] == 0.0  # log p(h) = 0 exactly: the only possible outcome


def test_stable_primitives_at_extremes():
    from scg.backends.numpy_ops import log_softmax, logsumexp, sigmoid, softplus
    x = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    assert np.isfinite(softplus(x)).all() and softplus(x)[-1] == 1e4 and softplus(x)[0] == 0.0
    assert np.all((sigmoid(x) >= 0) & (sigmoid(x) <= 1)) and sigmoid(x)[-1] == 1.0
    assert logsumexp(x, axis=0, keepdims=False) == 1e4
    assert np.isfinite(log_softmax(x)).all() and log_softmax(x)[-1] == 0.0
    with np.errstate(divide="ignore"):  # log(0) of an all -inf row is the intended -inf
        assert logsumexp(np.full(3, -np.inf), axis=0, keepdims=False) == -np.inf
