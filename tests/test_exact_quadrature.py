"""scg.exact on Normal nodes (Gauss-Hermite quadrature): closed forms, an independent
integrator, finite differences of itself, the polynomial-degree rule, refusals."""

import numpy as np
import pytest
from scipy import integrate, special

import scg
from scg.errors import ExactError
from scg.exact_quadrature import hermite_rule


def _normal_square(loc_batched=False):
    g = scg.Graph("sq")
    with g:
        mu = scg.param("mu", shape=())
        sigma = scg.param("sigma", shape=())
        loc = mu * scg.input("x", shape=()) if loc_batched else mu
        z = scg.sample("z", scg.Normal(loc, sigma))
        scg.cost("c", scg.square(z - 1.0))
    return g


def _fd(g, params, inputs, eps=1e-5, **kw):
    out = {}
    for k, v in params.items():
        grad = np.zeros_like(v, dtype=float)
        for idx in np.ndindex(v.shape):
            hi, lo = {**params, k: v.copy()}, {**params, k: v.copy()}
            hi[k][idx] += eps
            lo[k][idx] -= eps
            grad[idx] = (scg.exact(g, hi, inputs, **kw).cost - scg.exact(g, lo, inputs, **kw).cost) / (2 * eps)
        out[k] = grad
    return out


def test_rule_weights_sum_to_one_and_match_normal_moments():
    x, w = hermite_rule(5)
    np.testing.assert_allclose(w.sum(), 1.0)
    moments = [np.sum(w * x**k) for k in range(10)]
    np.testing.assert_allclose(moments, [1, 0, 1, 0, 3, 0, 15, 0, 105, 0], atol=1e-9)


@pytest.mark.parametrize("n", [384, 1000])
def test_rule_stays_finite_for_many_points(n):
    # the polynomial-value weights (numpy's hermegauss) overflow to NaN near n = 384, which made
    # the fuzzer's refined oracle return NaN gradients; the Golub-Welsch rule does not
    x, w = hermite_rule(n)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(w)) and np.all(w >= 0)
    np.testing.assert_allclose([np.sum(w * x**k) for k in range(7)], [1, 0, 1, 0, 3, 0, 15], atol=1e-9)
    ex = scg.exact(_normal_square(), {"mu": np.array(0.3), "sigma": np.array(0.7)}, {}, quadrature_points=n)
    np.testing.assert_allclose(ex.grads["mu"], 2 * (0.3 - 1), rtol=1e-10)


@pytest.mark.parametrize("mu, sigma", [(0.0, 1.0), (0.3, 0.7), (-1.2, 2.5)])
def test_normal_square_closed_form(mu, sigma):
    """E[(z - 1)^2] = (mu - 1)^2 + sigma^2; d/dmu = 2 (mu - 1); d/dsigma = 2 sigma."""
    g = _normal_square()
    ex = scg.exact(g, {"mu": np.array(mu), "sigma": np.array(sigma)}, {})
    np.testing.assert_allclose(ex.cost, (mu - 1) ** 2 + sigma**2, rtol=1e-12)
    np.testing.assert_allclose(ex.grads["mu"], 2 * (mu - 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.grads["sigma"], 2 * sigma, rtol=1e-12)
    np.testing.assert_allclose(ex.costs["c"], ex.cost)
    assert ex.n_configs == 20


def test_per_row_loc_averages_over_rows():
    g = _normal_square(loc_batched=True)
    x = np.array([0.5, -1.0, 2.0])
    mu, sigma = 0.8, 0.6
    ex = scg.exact(g, {"mu": np.array(mu), "sigma": np.array(sigma)}, {"x": x})
    np.testing.assert_allclose(ex.cost, np.mean((mu * x - 1) ** 2 + sigma**2))
    np.testing.assert_allclose(ex.grads["mu"], np.mean(2 * (mu * x - 1) * x))
    np.testing.assert_allclose(ex.grads["sigma"], 2 * sigma)


def test_polynomial_degree_rule():
    """n points integrate z^k exactly for k < 2n, and not z^(2n): the docstring's rule, checked both ways."""
    g = scg.Graph("poly")
    with g:
        z = scg.sample("z", scg.Normal(scg.param("m", shape=()), 1.0))
        scg.cost("c", z * z * z * z * z * z)  # E[z^6] at m = 0 is 15
    p = {"m": np.array(0.0)}
    assert scg.exact(g, p, {}, quadrature_points=4).cost == pytest.approx(15.0, rel=1e-12)
    assert scg.exact(g, p, {}, quadrature_points=3).cost == pytest.approx(9.0, rel=1e-12)  # He_3 rule: wrong


def test_bernoulli_to_normal_chain_closed_form():
    """h ~ Bern(sigmoid(a)), z ~ N(m0 + m1 h, s), cost (z - 1)^2 + 0.5 h."""
    g = scg.Graph("bn")
    with g:
        a, m0, m1, s = (scg.param(n, shape=()) for n in ("a", "m0", "m1", "s"))
        h = scg.sample("h", scg.Bernoulli(logits=a))
        z = scg.sample("z", scg.Normal(m0 + m1 * h, s))
        scg.cost("c", scg.square(z - 1.0) + 0.5 * h)
    a, m0, m1, s = 0.4, -0.3, 1.1, 0.8
    params = {k: np.array(v) for k, v in zip(("a", "m0", "m1", "s"), (a, m0, m1, s), strict=True)}
    ex = scg.exact(g, params, {})
    p = special.expit(a)
    f0, f1 = (m0 - 1) ** 2 + s**2, (m0 + m1 - 1) ** 2 + s**2 + 0.5
    np.testing.assert_allclose(ex.cost, p * f1 + (1 - p) * f0, rtol=1e-12)
    np.testing.assert_allclose(ex.grads["a"], p * (1 - p) * (f1 - f0), rtol=1e-12)
    np.testing.assert_allclose(ex.grads["m0"], p * 2 * (m0 + m1 - 1) + (1 - p) * 2 * (m0 - 1), rtol=1e-12)
    np.testing.assert_allclose(ex.grads["m1"], p * 2 * (m0 + m1 - 1), rtol=1e-12)
    np.testing.assert_allclose(ex.grads["s"], 2 * s, rtol=1e-12)
    assert ex.n_configs == 40


def _normal_to_bernoulli():
    g = scg.Graph("nb")
    with g:
        mu, sigma, w, c = (scg.param(n, shape=()) for n in ("mu", "sigma", "w", "c"))
        z = scg.sample("z", scg.Normal(mu, sigma))
        b = scg.sample("b", scg.Bernoulli(logits=w * z + c))
        scg.cost("loss", scg.square(b - 0.3) + 0.5 * scg.tanh(z))
    return g


def _normal_to_bernoulli_by_scipy(mu, sigma, w, c):
    """The same expectation by adaptive integration over z (independent of scg and of Gauss-Hermite)."""
    def f(z):
        p = special.expit(w * z + c)
        return (p * 0.49 + (1 - p) * 0.09 + 0.5 * np.tanh(z)) * np.exp(-0.5 * ((z - mu) / sigma) ** 2) / (
            sigma * np.sqrt(2 * np.pi))
    return integrate.quad(f, mu - 12 * sigma, mu + 12 * sigma, epsabs=1e-13, epsrel=1e-13, limit=200)[0]


def test_normal_to_bernoulli_logits_against_independent_integration():
    vals = {"mu": 0.2, "sigma": 0.9, "w": 1.5, "c": -0.4}
    params = {k: np.array(v) for k, v in vals.items()}
    g = _normal_to_bernoulli()
    truth = _normal_to_bernoulli_by_scipy(**vals)
    # smooth but not polynomial: the error falls geometrically with the points (measured: 1.2e-4 at 10,
    # 1.5e-6 at 20, 1.6e-9 at 40, 1e-12 at 60)
    assert abs(scg.exact(g, params, {}).cost - truth) < 1e-5
    ex = scg.exact(g, params, {}, quadrature_points=60)
    np.testing.assert_allclose(ex.cost, truth, rtol=1e-10)
    h = 1e-5
    for k in vals:
        hi, lo = dict(vals), dict(vals)
        hi[k] += h
        lo[k] -= h
        want = (_normal_to_bernoulli_by_scipy(**hi) - _normal_to_bernoulli_by_scipy(**lo)) / (2 * h)
        np.testing.assert_allclose(ex.grads[k], want, rtol=1e-6, atol=1e-8, err_msg=k)
    # the comparison can fail: a 2-point rule is visibly wrong on this smooth (non-polynomial) cost
    coarse = scg.exact(g, params, {}, quadrature_points=2)
    assert abs(coarse.cost - _normal_to_bernoulli_by_scipy(**vals)) > 1e-4


def _mixed_graph():
    """Input -> Normal layer (2 units) -> Bernoulli -> Normal (loc from the Bernoulli) and a categorical
    whose logits read the first Normal; costs smooth in every Normal value."""
    g = scg.Graph("mixed")
    with g:
        x = scg.input("x", shape=(2,))
        z1 = scg.sample("z1", scg.Normal(x @ scg.param("A", shape=(2, 2)), scg.softplus(scg.param("s", shape=(2,)))))
        h = scg.sample("h", scg.Bernoulli(logits=z1 @ scg.param("B", shape=(2, 1))))
        z2 = scg.sample("z2", scg.Normal(h * scg.param("m", shape=(1,)), 0.5))
        a = scg.sample("a", scg.Categorical(logits=scg.tanh(z1) @ scg.param("C", shape=(2, 3))))
        scg.cost("fit", scg.square(z2 - 0.5).sum() + 0.2 * scg.sigmoid(z1).sum())
        scg.cost("reward", -scg.equal(a, 2) * scg.tanh(z2.sum()))
    rng = np.random.default_rng(3)
    params = {k: rng.normal(0, 0.7, v.shape) for k, v in g.init_params(0).items()}
    return g, params, {"x": rng.normal(size=(2, 2))}


def test_mixed_graph_gradient_matches_finite_differences_of_itself():
    g, params, inputs = _mixed_graph()
    ex = scg.exact(g, params, inputs, quadrature_points=8)
    assert ex.n_configs == 8 * 8 * 2 * 8 * 3
    fd = _fd(g, params, inputs, quadrature_points=8)
    for k in params:
        np.testing.assert_allclose(ex.grads[k], fd[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # more points change the answer little: the cost is smooth
    finer = scg.exact(g, params, inputs, quadrature_points=14)
    assert finer.cost == pytest.approx(ex.cost, abs=1e-4)


@pytest.mark.parametrize("expr, op", [
    (lambda z, p: scg.greater(z, p), "greater"),
    (lambda z, p: scg.greater(p, z), "greater"),
    (lambda z, p: scg.where(z - p, 1.0, 0.0), "where"),
    (lambda z, p: scg.equal(scg.tanh(z), p), "equal"),
])
def test_discontinuous_cost_in_a_normal_value_is_refused(expr, op):
    g = scg.Graph("jump")
    with g:
        p = scg.param("p", shape=())
        z = scg.sample("z", scg.Normal(p, 1.0))
        scg.cost("c", expr(z, p))
    with pytest.raises(ExactError, match=rf"Normal sample 'z'.*jumps.*{op} node"):
        scg.exact(g, {"p": np.array(0.0)}, {})


def test_discontinuity_through_a_chain_names_the_root_normal_and_discrete_cuts_are_allowed():
    g = scg.Graph("chain")
    with g:
        p = scg.param("p", shape=())
        z = scg.sample("z", scg.Normal(p, 1.0))
        y = scg.sample("y", scg.Normal(2.0 * z, 1.0))
        scg.cost("c", scg.greater(y, 0.0))
    with pytest.raises(ExactError, match="Normal sample 'z'"):
        scg.exact(g, {"p": np.array(0.0)}, {})
    ok = scg.Graph("cut")  # a step on a Bernoulli whose logits read z: its value is enumerated, fine
    with ok:
        p = scg.param("p", shape=())
        z = scg.sample("z", scg.Normal(p, 1.0))
        b = scg.sample("b", scg.Bernoulli(logits=z))
        scg.cost("c", scg.greater(b, 0.5))
    ex = scg.exact(ok, {"p": np.array(0.0)}, {})
    assert ex.cost == pytest.approx(0.5, abs=1e-12)  # E[sigmoid(z)] = 1/2 at p = 0 by symmetry


def test_limits_and_bad_arguments():
    g = scg.Graph("wide")
    with g:
        z = scg.sample("z", scg.Normal(scg.param("m", shape=(5,)), 1.0))
        scg.cost("c", scg.square(z).sum())
    with pytest.raises(ExactError, match=r"3200000 joint configurations.*quadrature_points=20.*max_configs"):
        scg.exact(g, {"m": np.zeros(5)}, {})
    ex = scg.exact(g, {"m": np.ones(5)}, {}, quadrature_points=2)
    np.testing.assert_allclose([ex.cost, *ex.grads["m"]], [10.0, 2, 2, 2, 2, 2])  # degree 2 < 4: exact
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ExactError, match="quadrature_points must be a positive int"):
            scg.exact(g, {"m": np.zeros(5)}, {}, quadrature_points=bad)
    neg = _normal_square()
    with pytest.raises(ExactError, match=r"Normal sample 'z': scale must be positive and finite, got -1.0$"):
        scg.exact(neg, {"mu": np.array(0.0), "sigma": np.array(-1.0)}, {})
    rows = scg.Graph("rows")
    with rows:
        s = scg.input("s", shape=())
        scg.cost("c", scg.square(scg.sample("z", scg.Normal(0.0, s))))
    with pytest.raises(ExactError, match=r"got nan at row 1"):  # scale from a batched input
        scg.exact(rows, {}, {"s": np.array([1.0, np.nan, 2.0])})


def test_user_name_clash_with_the_weight_input():
    g = scg.Graph("clash")
    with g:
        q = scg.input("quadrature_log_weight", shape=())
        z = scg.sample("z", scg.Normal(q, 1.0))
        scg.cost("c", scg.square(z))
    ex = scg.exact(g, {}, {"quadrature_log_weight": np.array([1.0, 2.0])})
    np.testing.assert_allclose(ex.cost, (1 + 1 + 4 + 1) / 2)


def test_hessian_of_the_quadrature_matches_the_closed_form():
    """order=2 on a Normal node: E[(z - 1)^2] = (mu - 1)^2 + sigma^2 has Hessian diag(2, 2)."""
    g = _normal_square()
    ex = scg.exact(g, {"mu": np.array(0.3), "sigma": np.array(0.7)}, {}, order=2)
    np.testing.assert_allclose([ex.hessian[("mu", "mu")], ex.hessian[("sigma", "sigma")],
                                ex.hessian[("mu", "sigma")]], [2.0, 2.0, 0.0], atol=1e-10)
