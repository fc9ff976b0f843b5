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
