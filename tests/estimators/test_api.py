"""The compile API: assignments, errors, baselines' state, provenance in the printed IR."""

import numpy as np
import pytest

import scg
from scg.errors import EstimatorError, InputError, ScgError
from tests.estimators.graphs import GRAPHS


def test_unknown_estimator_and_node_names_are_clear_errors():
    g, _, _ = GRAPHS["bandit"]()
    with pytest.raises(EstimatorError, match="unknown estimator 'hcna'.*reinforce, scg, muprop, hnca"):
        scg.compile(g, estimator="hcna")
    with pytest.raises(EstimatorError, match="'h9'.*not a stochastic node.*h1, a"):
        scg.compile(g, estimator={"default": "hnca", "h9": "reinforce"})
    with pytest.raises(EstimatorError, match="unknown estimator 'fast' for node 'a'"):
        scg.compile(g, estimator={"a": "fast"})
    with pytest.raises(EstimatorError, match="unknown baseline 'mean'"):
        scg.compile(g, estimator="hnca", baseline="mean")


def test_hnca_named_for_a_normal_node_says_why_it_cannot_apply():
    g = scg.Graph("g")
    with g:
        mu = scg.param("mu", shape=(2,))
        z = scg.sample("z", scg.Normal(mu, 1.0))
        scg.cost("c", z.sum())
    with pytest.raises(EstimatorError, match="hnca cannot apply to the Normal node 'z'.*discrete"):
        scg.compile(g, estimator={"z": "hnca"})
    assert scg.compile(g, estimator="hnca").assignment == {"z": "pathwise"}


def test_loo_needs_several_draws():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "reinforce", baseline="loo")
    with pytest.raises(ScgError, match="n_samples >= 2"):
        est(params, inputs, seed=0)
    assert est(params, inputs, seed=0, n_samples=2).grads["W1"].shape == (3, 3)


def test_ema_state_is_kept_across_calls_and_resettable():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "hnca", baseline="ema", ema_decay=0.5)
    assert est.state == {}
    first = est(params, inputs, seed=0, n_samples=50)
    assert set(est.state) == {"ema_h1"}
    # HNCA's R for h1 is the cost it reaches only through its child a: neg_reward
    np.testing.assert_allclose(est.state["ema_h1"], first.costs["neg_reward"])
    second = est(params, inputs, seed=1, n_samples=50)
    np.testing.assert_allclose(est.state["ema_h1"], 0.5 * first.costs["neg_reward"] + 0.5 * second.costs["neg_reward"])
    est.reset_baseline()
    assert est.state == {}


def test_results_have_the_documented_fields_and_shapes():
    g, params, inputs = GRAPHS["bandit"]()
    out = scg.compile(g, "hnca")(params, inputs, seed=3)
    assert set(out.grads) == set(params)
    assert all(out.grads[k].shape == params[k].shape for k in params)
    assert out.samples["h1"].shape == (2, 3) and out.samples["a"].dtype == np.int64
    assert set(out.costs) == {"neg_reward", "sparsity"}
    np.testing.assert_allclose(out.cost, sum(out.costs.values()))
    many = scg.compile(g, "hnca")(params, inputs, seed=3, n_samples=5)
    assert many.samples["h1"].shape == (5, 2, 3) and many.n_samples == 5 and many.n_rows == 2


def test_same_seed_same_result_different_seed_different_samples():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "reinforce")
    a, b, c = (est(params, inputs, seed=s, n_samples=20) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.samples["h1"], b.samples["h1"])
    np.testing.assert_array_equal(a.grads["W1"], b.grads["W1"])
    assert not np.array_equal(a.samples["h1"], c.samples["h1"])


def test_missing_input_names_the_input():
    g, params, _ = GRAPHS["bandit"]()
    with pytest.raises(InputError, match="'y'"):
        scg.compile(g, "hnca")(params, {"x": np.zeros((2, 3))})


def test_printed_ir_says_why_each_term_is_there():
    g, _, _ = GRAPHS["bandit"]()
    text = str(scg.compile(g, "hnca", baseline="ema").ir)
    assert "hnca for h1: children a; R = neg_reward" in text
    assert "hnca_affine_delta[child=categorical] h1" in text
    assert "f-HNCA on sparsity" in text and "ema_h1" in text
    text = str(scg.compile(g, "reinforce").ir)
    assert "reinforce for h1: Qhat = neg_reward + sparsity" in text
    assert "reinforce for a: Qhat = neg_reward" in text
    text = str(scg.compile(g, "muprop").ir)
    assert "muprop mean field" in text and "muprop: f'(xbar)" in text


def test_unrolled_fallback_is_announced_and_bounded():
    g, _, _ = GRAPHS["nonaffine_child"]()
    assert "unrolled counterfactual, child c" in str(scg.compile(g, "hnca").ir)
    big = scg.Graph("big")
    with big:
        x = scg.input("x", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=x @ scg.param("W", shape=(3, 40))))
        c = scg.sample("c", scg.Bernoulli(logits=scg.tanh(h @ scg.param("V", shape=(40, 2)))))
        scg.cost("k", c.sum())
    with pytest.raises(EstimatorError, match="'h' has 40 units.*affine.*reinforce"):
        scg.compile(big, "hnca")
    scg.compile(big, {"default": "hnca", "h": "reinforce"})
