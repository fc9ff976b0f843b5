"""Distributions: sample nodes, and `.log_prob`, `.entropy()`, `.mean` as IR of the right type.

Values are checked against closed forms with the NumPy reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

import scg
from scg.errors import GraphError
from scg.ir import Op

try:
    from scg.backends.numpy_ref import evaluate
except ImportError:  # the interpreter is optional for the structural tests
    evaluate = None

needs_numpy_ref = pytest.mark.skipif(evaluate is None, reason="scg.backends.numpy_ref is not available")


def typ(v: scg.Value) -> str:
    return str(v.node.type)


# -- construction ---------------------------------------------------------------

def test_bernoulli_takes_exactly_one_parameterisation():
    with scg.Graph("g"):
        x = scg.input("x", shape=(2,))
        with pytest.raises(GraphError, match="exactly one of logits= or probs="):
            scg.Bernoulli(logits=x, probs=x)
        with pytest.raises(GraphError, match="exactly one of logits= or probs="):
            scg.Bernoulli()


def test_sample_node_types():
    g = scg.Graph("g")
    with g:
        x = scg.input("x", shape=(4, 3))
        w = scg.param("w", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=x))
        hp = scg.sample("hp", scg.Bernoulli(probs=scg.sigmoid(w)))
        a = scg.sample("a", scg.Categorical(logits=x))
        z = scg.sample("z", scg.Normal(w, scg.exp(x)))
        z0 = scg.sample("z0", scg.Normal(0.0, 1.0))
    assert (h.node.op, typ(h)) == (Op.BERNOULLI, "f64[B,4,3]")
    assert typ(hp) == "f64[B,3]"  # samples are per row even from unbatched parameters
    assert (a.node.op, typ(a)) == (Op.CATEGORICAL, "i64[B,4]")
    assert (z.node.op, typ(z)) == (Op.NORMAL, "f64[B,4,3]")
    assert typ(z0) == "f64[B]"
    sites = [n.attrs["site"] for n in g.samples.values()]
    assert len(set(sites)) == len(sites)
    assert scg.Normal.reparameterisable and not scg.Bernoulli.reparameterisable
    assert not scg.Categorical.reparameterisable


# -- log_prob / entropy / mean build the right IR --------------------------------

def test_bernoulli_logits():
    with scg.Graph("g"):
        logits = scg.input("l", shape=(3,))
        d = scg.Bernoulli(logits=logits)
        h = scg.sample("h", d)
        lp, ent, mean = d.log_prob(h), d.entropy(), d.mean
    assert lp.node.op is Op.BERNOULLI_LOGP and lp.node.inputs == (logits.node, h.node)
    assert typ(lp) == typ(ent) == typ(mean) == "f64[B,3]"
    assert mean.node.op is Op.SIGMOID


def test_bernoulli_probs():
    with scg.Graph("g"):
        p = scg.param("p", shape=(3,))
        d = scg.Bernoulli(probs=p)
        h = scg.sample("h", d)
        lp, ent, mean = d.log_prob(h), d.entropy(), d.mean
    assert d.logits.node.op is Op.SUB  # log p - log(1 - p)
    assert typ(d.logits) == "f64[3]"
    assert typ(lp) == "f64[B,3]"
    assert typ(ent) == typ(mean) == "f64[3]"
    assert mean is p  # the probabilities themselves


def test_bernoulli_constant_probs():
    with scg.Graph("g"):
        d = scg.Bernoulli(probs=0.25)
        assert typ(d.mean) == typ(d.entropy()) == "f64[]"
        assert d.mean.node.op is Op.BROADCAST_TO


def test_bernoulli_log_prob_broadcasts():
    with scg.Graph("g"):
        d = scg.Bernoulli(logits=scg.param("w", shape=(3,)))
        v = scg.input("v", shape=(2, 1))
        assert typ(d.log_prob(v)) == "f64[B,2,3]"
        with pytest.raises(GraphError, match="do not broadcast"):
            d.log_prob(scg.input("u", shape=(4,)))


def test_categorical():
    with scg.Graph("g"):
        logits = scg.input("l", shape=(2, 5))
        d = scg.Categorical(logits=logits)
        a = scg.sample("a", d)
        lp, ent, mean = d.log_prob(a), d.entropy(), d.mean
    assert lp.node.op is Op.CATEGORICAL_LOGP and lp.node.inputs == (logits.node, a.node)
    assert typ(lp) == typ(ent) == "f64[B,2]"
    assert mean.node.op is Op.SOFTMAX and typ(mean) == "f64[B,2,5]"


def test_categorical_log_prob_needs_int_values():
    with scg.Graph("g"):
        d = scg.Categorical(logits=scg.input("l", shape=(5,)))
        with pytest.raises(GraphError, match=r"categorical log_prob expects int64 values of shape \[\]"):
            d.log_prob(scg.input("v"))
        assert typ(d.log_prob(scg.input("k", dtype="int64"))) == "f64[B]"
        assert typ(d.log_prob(2)) == "f64[B]"


def test_normal():
    with scg.Graph("g"):
        loc = scg.input("loc", shape=(3,))
        scale = scg.param("scale", shape=(2, 1))
        d = scg.Normal(loc, scale)
        z = scg.sample("z", d)
        lp, ent, mean = d.log_prob(z), d.entropy(), d.mean
    assert lp.node.op is Op.NORMAL_LOGP and lp.node.inputs == (loc.node, scale.node, z.node)
    assert typ(z) == typ(lp) == typ(ent) == typ(mean) == "f64[B,2,3]"


def test_normal_mean_is_loc_when_it_has_the_full_type():
    with scg.Graph("g"):
        loc = scg.input("loc", shape=(3,))
        d = scg.Normal(loc, scg.param("s", shape=(3,)))
        assert d.mean is loc
        assert d.entropy().node.op is Op.BROADCAST_TO  # log(scale) is unbatched; the entropy is per row
        with pytest.raises(GraphError, match=r"per-row shapes \[3\] and \[4\] do not broadcast"):
            _ = scg.Normal(loc, scg.param("t", shape=(4,))).mean


def test_normal_with_constant_parameters():
    with scg.Graph("g"):
        d = scg.Normal(0.0, 2.0)
        z = scg.sample("z", d)
        assert typ(d.log_prob(z)) == "f64[B]"
        assert typ(d.entropy()) == typ(d.mean) == "f64[]"


# -- values against closed forms -------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _run(g: scg.Graph, inputs: dict[str, np.ndarray], *values: scg.Value, params=None):
    out = evaluate(g, params or {}, inputs, seed=0)
    return [out[v.node.uid] for v in values]


@needs_numpy_ref
def test_bernoulli_values():
    rng = np.random.default_rng(0)
    L = rng.normal(size=(5, 3)) * 3
    V = rng.integers(0, 2, size=(5, 3)).astype(float)
    g = scg.Graph("g")
    with g:
        logits, v = scg.input("l", shape=(3,)), scg.input("v", shape=(3,))
        probs = scg.input("p", shape=(3,))
        d, dp = scg.Bernoulli(logits=logits), scg.Bernoulli(probs=probs)
        vals = (d.log_prob(v), d.entropy(), d.mean, dp.log_prob(v), dp.entropy(), dp.mean)
    p = _sigmoid(L)
    lp, ent, mean, lp2, ent2, mean2 = _run(g, {"l": L, "v": V, "p": p}, *vals)
    expected_lp = V * np.log(p) + (1 - V) * np.log1p(-p)
    expected_ent = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    np.testing.assert_allclose(lp, expected_lp, rtol=1e-10)
    np.testing.assert_allclose(ent, expected_ent, rtol=1e-10)
    np.testing.assert_allclose(mean, p, rtol=1e-12)
    np.testing.assert_allclose(lp2, expected_lp, rtol=1e-8)
    np.testing.assert_allclose(ent2, expected_ent, rtol=1e-8)
    np.testing.assert_allclose(mean2, p, rtol=1e-8)


@needs_numpy_ref
def test_bernoulli_extreme_logits_are_finite():
    g = scg.Graph("g")
    with g:
        logits, v = scg.input("l", shape=(2,)), scg.input("v", shape=(2,))
        d = scg.Bernoulli(logits=logits)
        vals = (d.log_prob(v), d.entropy())
    lp, ent = _run(g, {"l": np.array([[-800.0, 800.0]]), "v": np.array([[0.0, 1.0]])}, *vals)
    np.testing.assert_allclose(lp, 0.0, atol=1e-300)
    np.testing.assert_allclose(ent, 0.0, atol=1e-300)


@needs_numpy_ref
def test_categorical_values():
    rng = np.random.default_rng(1)
    L = rng.normal(size=(6, 4)) * 2
    K = rng.integers(0, 4, size=6)
    g = scg.Graph("g")
    with g:
        logits, k = scg.input("l", shape=(4,)), scg.input("k", dtype="int64")
        d = scg.Categorical(logits=logits)
        vals = (d.log_prob(k), d.entropy(), d.mean)
    lp, ent, mean = _run(g, {"l": L, "k": K}, *vals)
    p = np.exp(L - L.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(lp, np.log(p[np.arange(6), K]), rtol=1e-10)
    np.testing.assert_allclose(ent, -(p * np.log(p)).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(mean, p, rtol=1e-10)


@needs_numpy_ref
def test_normal_values():
    rng = np.random.default_rng(2)
    M, S, Z = rng.normal(size=(4, 3)), rng.uniform(0.1, 3.0, size=(4, 3)), rng.normal(size=(4, 3))
    g = scg.Graph("g")
    with g:
        loc, scale, z = (scg.input(n, shape=(3,)) for n in ("m", "s", "z"))
        d = scg.Normal(loc, scale)
        vals = (d.log_prob(z), d.entropy(), d.mean)
    lp, ent, mean = _run(g, {"m": M, "s": S, "z": Z}, *vals)
    np.testing.assert_allclose(lp, -0.5 * ((Z - M) / S) ** 2 - np.log(S) - 0.5 * np.log(2 * np.pi), rtol=1e-10)
    np.testing.assert_allclose(ent, 0.5 * np.log(2 * np.pi * np.e) + np.log(S), rtol=1e-10)
    np.testing.assert_allclose(mean, M, rtol=1e-12)


@needs_numpy_ref
def test_samples_lie_in_the_support():
    g = scg.Graph("g")
    with g:
        logits = scg.input("l", shape=(5,))
        h = scg.sample("h", scg.Bernoulli(logits=logits))
        a = scg.sample("a", scg.Categorical(logits=logits))
    L = np.random.default_rng(3).normal(size=(200, 5))
    hv, av = _run(g, {"l": L}, h, a)
    assert hv.shape == (200, 5) and set(np.unique(hv)) <= {0.0, 1.0}
    assert av.shape == (200,) and av.dtype == np.int64 and av.min() >= 0 and av.max() < 5
