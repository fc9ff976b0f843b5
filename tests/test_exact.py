"""scg.exact: the enumeration oracle, checked against central finite differences of itself."""

import numpy as np
import pytest

import scg
from scg.errors import ExactError
from tests.estimators.graphs import GRAPHS


def _fd_grads(g, params, inputs, eps=1e-5):
    out = {}
    for k, v in params.items():
        grad = np.zeros_like(v, dtype=float)
        for idx in np.ndindex(v.shape):
            hi = {**params, k: v.copy()}
            lo = {**params, k: v.copy()}
            hi[k][idx] += eps
            lo[k][idx] -= eps
            grad[idx] = (scg.exact(g, hi, inputs).cost - scg.exact(g, lo, inputs).cost) / (2 * eps)
        out[k] = grad
    return out


# bandit: categorical output + a cost directly on the hidden unit; two_layers, decoder and vae:
# costs that depend on params directly; categorical_parent: a categorical hidden unit
@pytest.mark.parametrize("graph", ["coin", "bandit", "two_layers", "categorical_parent", "decoder", "vae"])
def test_exact_gradient_matches_finite_differences(graph):
    g, params, inputs = GRAPHS[graph]()
    params = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    ex = scg.exact(g, params, inputs)
    fd = _fd_grads(g, params, inputs)
    for k in params:
        np.testing.assert_allclose(ex.grads[k], fd[k], atol=1e-6, rtol=1e-6, err_msg=k)


def test_exact_values_by_hand():
    g, params, _ = GRAPHS["coin"]()
    p = 1 / (1 + np.exp(-params["phi"]))
    ex = scg.exact(g, params, {})
    assert ex.n_configs == 2
    np.testing.assert_allclose(ex.cost, p * 0.55**2 + (1 - p) * 0.45**2)
    np.testing.assert_allclose(ex.grads["phi"], p * (1 - p) * (0.55**2 - 0.45**2))
    np.testing.assert_allclose(ex.costs["c"], ex.cost)


def test_exact_refuses_jumps_in_normal_values_external_costs_and_huge_graphs():
    g = scg.Graph("n")
    with g:
        z = scg.sample("z", scg.Normal(scg.param("m", shape=()), 1.0))
        scg.cost("c", scg.greater(z, 0.0))  # quadrature is wrong for a discontinuous cost
    with pytest.raises(ExactError, match="Normal sample 'z'.*greater"):
        scg.exact(g, {"m": np.array(0.0)}, {})
    e = scg.Graph("e")
    with e:
        scg.sample("b", scg.Bernoulli(logits=scg.param("p", shape=())))
        scg.external_cost("r")
    with pytest.raises(ExactError, match="external costs.*'?r"):
        scg.exact(e, {"p": np.array(0.0)}, {})
    big = scg.Graph("big")
    with big:
        h = scg.sample("h", scg.Bernoulli(logits=scg.param("p", shape=(30,))))
        scg.cost("c", h.sum())
    with pytest.raises(ExactError, match=r"1073741824 joint configurations.*max_configs=1048576"):
        scg.exact(big, {"p": np.zeros(30)}, {})


def test_sampling_does_not_depend_on_batch_size_or_chunking():
    """Row r of a batch of 10 equals row r of a batch of 1000 with the same seed."""
    g = scg.Graph("rows")
    with g:
        x = scg.input("x", shape=(4,))
        h = scg.sample("h", scg.Bernoulli(logits=x))
        a = scg.sample("a", scg.Categorical(logits=x))
        z = scg.sample("z", scg.Normal(x, 1.0))
        scg.cost("c", h.sum() + scg.to_float(a) + z.sum())
    x = np.random.default_rng(0).normal(size=(1000, 4))
    est = scg.compile(g, "reinforce")
    big = est({}, {"x": x}, seed=11)
    small = est({}, {"x": x[:10]}, seed=11)
    for k in ("h", "a", "z"):
        np.testing.assert_array_equal(big.samples[k][:10], small.samples[k])
