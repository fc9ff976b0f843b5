"""Errors at call time and at model-building time that name what is wrong (issue 2, item 7)."""

import numpy as np
import pytest

import scg
from scg.errors import GraphError, InputError
from tests.estimators.graphs import GRAPHS


def test_non_finite_params_and_inputs_are_refused_by_default():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "hnca")
    bad = {**params, "W1": params["W1"].copy()}
    bad["W1"][0, 1] = np.nan
    with pytest.raises(InputError, match="param 'W1' has 1 non-finite value.*check_finite=False"):
        est(bad, inputs)
    x = inputs["x"].copy()
    x[1, 0] = np.inf
    with pytest.raises(InputError, match="input 'x' has 1 non-finite"):
        est(params, {**inputs, "x": x})
    lenient = scg.compile(g, "hnca", check_finite=False)
    assert np.isnan(lenient(bad, inputs).grads["W1"]).any()


def test_unknown_distribution_argument_names_the_accepted_ones():
    with scg.Graph("g"):
        x = scg.input("x", shape=(2,))
        with pytest.raises(GraphError, match="Bernoulli got an unknown argument 'logit'; it takes logits, probs"):
            scg.Bernoulli(logit=x)
        with pytest.raises(GraphError, match="Normal got an unknown argument 'mu'; it takes loc, scale"):
            scg.Normal(mu=x, scale=1.0)


def test_wrong_shapes_and_dtypes_at_call_time_name_the_input():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "reinforce")
    with pytest.raises(InputError, match="'x'"):
        est(params, {**inputs, "x": np.zeros((2, 4))})
    with pytest.raises(InputError, match="'y'"):
        est(params, {**inputs, "y": np.array([0.5, 1.5])})
    with pytest.raises(InputError, match="'W2'"):
        est({k: v for k, v in params.items() if k != "W2"}, inputs)
    with pytest.raises(InputError, match="'z'"):
        est(params, {**inputs, "z": np.zeros(2)})


def test_empty_batch_is_refused_and_a_batch_of_one_works():
    g, params, inputs = GRAPHS["bandit"]()
    est = scg.compile(g, "hnca")
    with pytest.raises(InputError, match="'x' has 0 rows"):
        est(params, {"x": np.zeros((0, 3)), "y": np.zeros(0, dtype=np.int64)})
    out = est(params, {"x": inputs["x"][:1], "y": inputs["y"][:1]})
    assert out.n_rows == 1 and out.grads["W1"].shape == (3, 3)


def test_dead_ends_warn_at_compile_time():
    g = scg.Graph("w")
    with g:
        p, q = scg.param("p", shape=(2,)), scg.param("q", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=p))
        scg.sample("dead", scg.Bernoulli(logits=q))
        scg.cost("c", h.sum())
    with pytest.warns(scg.ScgWarning) as record:
        scg.compile(g, "hnca")
    messages = [str(r.message) for r in record]
    assert any("'dead' has no path to any cost" in m for m in messages)
    assert any("param 'q' influences no cost" in m for m in messages)
    assert all(r.filename == __file__ for r in record)  # points at the user's line


@pytest.mark.parametrize("estimator", ["reinforce", "scg", "muprop", "hnca"])
def test_extreme_logits_give_finite_results(estimator):
    g, params, inputs = GRAPHS["bandit"]()
    huge = {k: v * 1e4 for k, v in params.items()}
    out = scg.compile(g, estimator)(huge, inputs, seed=0, n_samples=5)
    assert np.isfinite(out.cost) and all(np.isfinite(v).all() for v in out.grads.values())
