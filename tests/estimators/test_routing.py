"""Credit routes per (stochastic node, cost) pair, and the graphs that used to go wrong.

Each test pins one symptom found by trying graphs outside our suites: a Normal node
with a blackbox or external cost got exactly zero gradient (pathwise credit cannot
reach an opaque cost), a piecewise-constant op silently cut a pathwise route, a
blackbox cost that reads a param was silently dropped. Truths are closed forms;
estimates are means over independent calls with a standard-error tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import scg
from scg.estimators import derive as derive_module
from scg.estimators.routing import Routing

ESTIMATORS = ("reinforce", "scg", "muprop", "hnca")


def mean_and_se(est, params, *, external=None, calls=20, n=2000, backend_seed=0):
    grads = []
    for s in range(calls):
        if external is None:
            out = est(params, {}, seed=backend_seed + s, n_samples=n)
        else:
            run = est.sample(params, {}, seed=backend_seed + s, n_samples=n)
            out = run.grads(external=external(run.samples))
        grads.append(np.concatenate([np.ravel(out.grads[k]) for k in sorted(params)]))
    grads = np.array(grads)
    return grads.mean(0), grads.std(0, ddof=1) / np.sqrt(calls)


def assert_close(est, params, truth, **kw):
    mean, se = mean_and_se(est, params, **kw)
    z = np.abs(mean - truth) / np.maximum(se, 1e-12)
    assert np.all(z < 5.0), f"{est.assignment}: mean {mean}, truth {truth}, se {se}\n{est.ir}"


def gaussian_policy(blackbox=True):
    g = scg.Graph("gauss_policy")
    with g:
        mu = scg.param("mu", shape=())
        z = scg.sample("z", scg.Normal(mu, 1.0))
        scg.cost("c", (z - 1.0) ** 2, blackbox=blackbox)
    return g


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_normal_with_blackbox_cost_gets_score_credit(estimator):
    # E[(z - 1)^2] = (mu - 1)^2 + 1: the gradient at mu = 0 is -2 (it used to be exactly 0)
    est = scg.compile(gaussian_policy(), estimator)
    assert_close(est, {"mu": np.array(0.0)}, np.array([-2.0]))


def test_the_old_per_node_routing_is_caught():
    """The broken variant: pathwise for every Normal, whatever its costs (the old derivation)."""
    def pathwise_everywhere(model, assignment):
        return Routing(dict(assignment), {}, {})

    original = derive_module.route
    derive_module.route = pathwise_everywhere
    try:
        est = scg.compile(gaussian_policy(), "scg")
    finally:
        derive_module.route = original
    mean, _ = mean_and_se(est, {"mu": np.array(0.0)}, calls=3)
    assert mean[0] == 0.0   # the silent zero this module exists to prevent


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bernoulli_then_normal_then_external_cost(estimator):
    g = scg.Graph("bern_normal_ext")
    with g:
        m = scg.param("m", shape=())
        h = scg.sample("h", scg.Bernoulli(logits=m))
        z = scg.sample("z", scg.Normal(m + h, 1.0))
        scg.external_cost("r", depends_on=[z])
    m, s = 0.2, 1.0 / (1.0 + np.exp(-0.2))
    # J = E[z^2] = E[(m + h)^2] + 1
    truth = 2 * (m + s) + s * (1 - s) * ((m + 1) ** 2 - m ** 2)
    est = scg.compile(g, estimator)
    assert_close(est, {"m": np.array(m)}, np.array([truth]), external=lambda smp: {"r": smp["z"] ** 2})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_piecewise_constant_op_on_a_normal_switches_it_to_the_score_function(estimator):
    g = scg.Graph("step_normal")
    with g:
        mu = scg.param("mu", shape=())
        z = scg.sample("z", scg.Normal(mu, 2.0))
        scg.cost("c", scg.greater(z, 0.5))
    est = scg.compile(g, estimator)
    assert est.assignment["z"] == "reinforce"
    assert estimator == "reinforce" or "not pathwise: it reaches cost 'c' through a piecewise-constant" in str(est.ir)
    assert_close(est, {"mu": np.array(0.3)}, np.array([stats.norm.pdf((0.3 - 0.5) / 2.0) / 2.0]))


@pytest.mark.parametrize("estimator", ("scg", "hnca"))
def test_white_and_blackbox_costs_on_one_normal_mix_pathwise_and_score(estimator):
    g = scg.Graph("mixed")
    with g:
        mu = scg.param("mu", shape=())
        z = scg.sample("z", scg.Normal(mu, 1.0))
        scg.cost("white", z * z)
        scg.cost("opaque", z * 1.0, blackbox=True)
    est = scg.compile(g, estimator)
    assert est.assignment["z"] == "pathwise"
    text = str(est.ir)
    assert "score function for z: Qhat = opaque" in text
    assert_close(est, {"mu": np.array(0.3)}, np.array([2 * 0.3 + 1.0]))


def test_opaque_cost_fed_by_a_child_of_the_normal_uses_the_score_function():
    g = scg.Graph("shared")
    with g:
        mu = scg.param("mu", shape=())
        z = scg.sample("z", scg.Normal(mu, 1.0))
        h = scg.sample("h", scg.Bernoulli(logits=z))
        scg.cost("bb", h + z, blackbox=True)
    est = scg.compile(g, "hnca")
    assert est.assignment["z"] == "reinforce"
    # J = E[sigmoid(z)] + mu: Gauss-Hermite for E[sigmoid'(z)], z ~ N(0.3, 1)
    x, w = np.polynomial.hermite_e.hermegauss(60)
    s = 1.0 / (1.0 + np.exp(-(0.3 + x)))
    truth = float(np.sum(w * s * (1 - s)) / np.sqrt(2 * np.pi)) + 1.0
    assert_close(est, {"mu": np.array(0.3)}, np.array([truth]))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_blackbox_cost_reading_a_param_is_refused_naming_both(estimator):
    g = scg.Graph("bb_param")
    with g:
        t = scg.param("t", shape=())
        h = scg.sample("h", scg.Bernoulli(logits=t))
        scg.cost("c", (h - t) ** 2, blackbox=True)
    with pytest.raises(scg.ScgError, match=r"cost 'c' is blackbox but depends directly on param 't'"):
        scg.compile(g, estimator)


def test_param_and_continuous_sample_meeting_in_a_comparison_is_refused():
    g = scg.Graph("threshold")
    with g:
        mu, t = scg.param("mu", shape=()), scg.param("t", shape=())
        z = scg.sample("z", scg.Normal(mu, 1.0))
        scg.cost("c", scg.greater(z, t))
    with pytest.raises(scg.ScgError, match=r"param 't' and the continuous sample 'z'"):
        scg.compile(g)


def test_comparison_of_a_param_with_a_discrete_sample_is_fine():
    # piecewise constant in W for every value of h: the true derivative is 0 almost everywhere
    g = scg.Graph("discrete_threshold")
    with g:
        b = scg.param("b", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=b))
        W = scg.param("W", shape=(2,))
        scg.cost("c", scg.greater((h * W).sum(), 0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scg.compile(g, "hnca")


def test_muprop_prior_layer_has_zero_variance_on_a_linear_cost_at_any_batch_size():
    g = scg.Graph("prior")
    with g:
        b = scg.param("b", shape=(3,))
        x = scg.input("x", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=b))
        scg.cost("c", (h * x).sum())
    est = scg.compile(g, "muprop")
    X = np.random.default_rng(0).normal(size=(50, 3))
    grads = np.array([est({"b": np.zeros(3)}, {"x": X}, seed=s).grads["b"] for s in range(10)])
    assert np.max(np.std(grads, axis=0)) < 1e-12   # was 0.3-0.6 with the slope summed over rows
    np.testing.assert_allclose(grads[0], 0.25 * X.mean(axis=0), rtol=1e-10)


def _categorical_graph(use):
    g = scg.Graph(f"cat_{use}")
    with g:
        x = scg.input("x", shape=(2,))
        Wl, l = scg.param("Wl", shape=(2, 3)), scg.param("l", shape=(3,))
        a = scg.sample("a", scg.Categorical(logits=x @ Wl + l))
        if use == "to_float":
            feature = scg.to_float(a) - 1.0 + x
        elif use == "one_hot5":
            feature = scg.one_hot(a, 5) @ scg.param("W", shape=(5, 2))
        elif use == "equal_samples":
            a2 = scg.sample("a2", scg.Categorical(logits=l))
            feature = x * scg.equal(a, a2)
        elif use == "take":
            feature = scg.take(scg.param("T", shape=(3,)), a) + x
        else:  # several categorical elements per row
            many = scg.sample("many", scg.Categorical(logits=scg.param("L", shape=(2, 3))))
            feature = scg.to_float(many) * 0.5 + scg.to_float(a)
        h = scg.sample("h", scg.Bernoulli(logits=feature))
        scg.cost("c", scg.square(h.sum() - 1.0) + scg.to_float(a) * 0.3)
    rng = np.random.default_rng(0)
    params = {k: v + rng.normal(0, 0.7, v.shape) for k, v in g.init_params(0).items()}
    return g, params, {"x": rng.normal(size=(2, 2))}


@pytest.mark.parametrize("use", ["to_float", "one_hot5", "equal_samples", "take", "several"])
@pytest.mark.parametrize("estimator", ("muprop", "hnca"))
def test_categorical_sample_in_every_use_is_unbiased(use, estimator):
    from tests.estimators.oracle import is_unbiased
    g, params, inputs = _categorical_graph(use)
    est = scg.compile(g, estimator)
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs, threshold=5.0, alpha=1e-4,
                            n_calls=30, n_samples=200)
    assert ok, f"max |z| = {worst:.2f}\n{est.ir}"


def test_hnca_decoder_likelihood_with_a_broadcast_observed_value():
    g = scg.Graph("decoder_scalar")
    with g:
        b0 = scg.param("b0", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=b0))
        W, bb = scg.param("W", shape=(3, 4)), scg.param("bb", shape=(4,))
        scg.cost("nll", -scg.Bernoulli(logits=h @ W + bb).log_prob(1.0).sum())
    from tests.estimators.oracle import is_unbiased
    params = g.init_params(0)
    est = scg.compile(g, "hnca")
    ok, worst = is_unbiased(est, scg.exact(g, params, {}), params, {}, threshold=5.0, alpha=1e-4,
                            n_calls=30, n_samples=200)
    assert ok, worst


def test_external_cost_naming_a_pathwise_normal_keeps_the_name():
    g = scg.Graph("ext_names")
    with g:
        m = scg.param("m", shape=())
        hb = scg.sample("hb", scg.Bernoulli(logits=m))
        z = scg.sample("z", scg.Normal(m + hb, 1.0))
        scg.external_cost("r", depends_on=[z])
    est = scg.compile(g, "hnca")   # used to fail: "graph has no node named 'z'"
    assert set(est.assignment) == {"hb", "z"}


def test_reinforce_normal_under_a_muprop_default():
    g = scg.Graph("muprop_normal")
    with g:
        m = scg.param("m", shape=())
        h = scg.sample("h", scg.Bernoulli(logits=m))
        z = scg.sample("z", scg.Normal(m + h, 1.0))
        scg.cost("c", z * z)
    est = scg.compile(g, {"default": "muprop", "z": "reinforce"})
    m, s = 0.2, 1.0 / (1.0 + np.exp(-0.2))
    truth = 2 * (m + s) + s * (1 - s) * ((m + 1) ** 2 - m ** 2)
    assert_close(est, {"m": np.array(m)}, np.array([truth]))
