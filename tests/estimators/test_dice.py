"""DiCE (Foerster et al. 2018): first derivative = the score-function estimator, Hessian blocks unbiased
against scg.exact(order=2), Hessian-vector products, numba parity, and the classic stop-gradient error caught.

Toy (Foerster et al. 2018; docs/design.md): b ~ Bernoulli(sigmoid(t)), cost (b + 0.5) t^2, t = 0.3: d2J/dt2 = 2.438959;
differentiating the stop-gradient surrogate log p(b) sg(c) + c twice gives 2.125246 in expectation.
"""

from __future__ import annotations

import numpy as np
import pytest

import scg
from scg.errors import EstimatorError, ExactError, ScgError
from scg.estimators import dice
from scg.ir.ops import Op
from scg.passes.dependencies import is_opaque
from tests.estimators.graphs import GRAPHS

TOY_EXACT, TOY_SURROGATE = 2.438959, 2.125246


def toy():
    g = scg.Graph("toy")
    with g:
        t = scg.param("t", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=t))
        scg.cost("c", (b + 0.5) * t * t)
    return g, {"t": np.array(0.3)}, {}


def hessian_draws(est, params, inputs, *, n_calls, n_samples, seed=0):
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for i in range(n_calls):
        res = est(params, inputs, seed=seed + 1000 * i, n_samples=n_samples)
        for key, h in res.hessian.items():
            out.setdefault(key, []).append(np.asarray(h, dtype=np.float64))
    return {k: np.stack(v) for k, v in out.items()}


def hessian_z(draws, exact_hessian) -> float:
    """Worst |mean - exact| / standard error over every Hessian entry (inf for a noiseless entry that is off)."""
    worst = 0.0
    for key, arr in draws.items():
        mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(len(arr))
        diff = np.abs(mean - exact_hessian[key])
        z = np.where(se > 1e-12, diff / np.maximum(se, 1e-300), np.where(diff < 1e-9, 0.0, np.inf))
        worst = max(worst, float(np.max(z)))
    return worst


def schulman_surrogate(b, deps, held, loaded=1.0):
    """The deliberately broken variant: sum_w log p(w) sg(Qhat_w) + sum_c c, right at first order only."""
    terms = []
    for info in deps.sites.values():
        if info.downstream_costs:
            lp = b.row_total(b.logp(info.node))
            terms.append(b.add(Op.MUL, lp, b.sg(b.qhat(info))))
    terms += [c for c in deps.costs if not is_opaque(c)]
    return b.total(terms)


# -- the toy ------------------------------------------------------------------------------------------------------
def test_exact_hessian_of_the_toy():
    g, params, inputs = toy()
    ex = scg.exact(g, params, inputs, order=2)
    assert ex.hessian[("t", "t")].shape == ()
    assert float(ex.hessian[("t", "t")]) == pytest.approx(TOY_EXACT, abs=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_toy_hessian_is_unbiased(backend):
    g, params, inputs = toy()
    est = scg.compile(g, estimator="dice", order=2, backend=backend)
    draws = hessian_draws(est, params, inputs, n_calls=40, n_samples=2000)
    assert hessian_z(draws, {("t", "t"): TOY_EXACT}) < 4.0


def test_the_stop_gradient_surrogate_is_caught_on_the_toy(monkeypatch):
    monkeypatch.setattr(dice, "_objective", schulman_surrogate)
    g, params, inputs = toy()
    est = scg.compile(g, estimator="dice", order=2)
    draws = hessian_draws(est, params, inputs, n_calls=40, n_samples=2000)
    assert hessian_z(draws, {("t", "t"): TOY_EXACT}) > 10.0
    assert hessian_z(draws, {("t", "t"): TOY_SURROGATE}) < 4.0  # and it lands on the classic wrong value


# -- every estimator-suite graph -------------------------------------------------------------------------------------
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_first_derivative_is_the_score_function_estimator(graph):
    """DiCE's gradient is Schulman's surrogate gradient (score function with downstream costs), sample for sample."""
    g, params, inputs = GRAPHS[graph]()
    ours = scg.compile(g, estimator="dice")(params, inputs, seed=5, n_samples=7)
    theirs = scg.compile(g, estimator="scg")(params, inputs, seed=5, n_samples=7)
    assert ours.cost == pytest.approx(theirs.cost, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(ours.grads[k], theirs.grads[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_hessian_blocks_are_unbiased_against_exact(graph):
    g, params, inputs = GRAPHS[graph]()
    ex = scg.exact(g, params, inputs, order=2)
    est = scg.compile(g, estimator="dice", order=2)
    draws = hessian_draws(est, params, inputs, n_calls=60, n_samples=300)
    assert set(draws) == {(p, q) for p in params for q in params}
    for (p, q), arr in draws.items():
        assert arr.shape[1:] == params[p].shape + params[q].shape
    assert hessian_z(draws, ex.hessian) < 5.0, graph


def test_the_stop_gradient_surrogate_is_caught_on_two_layers(monkeypatch):
    monkeypatch.setattr(dice, "_objective", schulman_surrogate)
    g, params, inputs = GRAPHS["two_layers"]()
    ex = scg.exact(g, params, inputs, order=2)
    draws = hessian_draws(scg.compile(g, estimator="dice", order=2), params, inputs, n_calls=60, n_samples=300)
    assert hessian_z(draws, ex.hessian) > 8.0


@pytest.mark.parametrize("baseline", ["ema", "loo"])
def test_baselines_keep_the_hessian_unbiased(baseline):
    g, params, inputs = GRAPHS["two_layers"]()
    ex = scg.exact(g, params, inputs, order=2)
    est = scg.compile(g, estimator="dice", order=2, baseline=baseline)
    assert "Mao et al. 2019" in str(est.ir)
    if baseline == "ema":
        est(params, inputs, seed=99, n_samples=50)  # warm the EMA state so the baseline is non-zero
        assert est.state and all(np.all(v != 0) for v in est.state.values())
    draws = hessian_draws(est, params, inputs, n_calls=60, n_samples=300)
    assert hessian_z(draws, ex.hessian) < 5.0


# -- Normal nodes: the credit routes of scg.estimators.routing, at second order ---------------------------------
ROUTES = {"pathwise": {"z": "pathwise", "b": "dice"}, "pathwise+score": {"z": "pathwise", "b": "dice"},
          "score": {"z": "dice", "b": "dice"}}


def _normal_graph(route: str):
    """z ~ N(m, exp(s)), b ~ Bern(sigmoid(t)); J has a closed form in (m, s, t) for each route:
    pathwise: a white cost; pathwise+score: a black-box cost on z; score: a white cost through step(z - 1)."""
    g = scg.Graph("normal")
    with g:
        m, s, t = scg.param("m", shape=()), scg.param("s", shape=()), scg.param("t", shape=())
        z = scg.sample("z", scg.Normal(m, scg.exp(s)))
        b = scg.sample("b", scg.Bernoulli(logits=t))
        if route == "pathwise":
            scg.cost("c", (b + 0.5) * scg.square(z - 1.0) * t)
        elif route == "pathwise+score":
            scg.cost("c", (b + 0.5) * scg.square(z - 1.0), blackbox=True)
            scg.cost("fit", scg.square(z) * t)
        else:
            scg.cost("c", (b + 0.5) * apply_step(z - 1.0) * t)
    return g, {"m": np.array(0.4), "s": np.array(-0.3), "t": np.array(0.2)}


def apply_step(x):
    from scg.dsl.value import apply
    return apply(Op.STEP, x)


def _closed_form_hessian(route, params):
    from math import erf, sqrt
    names = ["m", "s", "t"]

    def J(v):
        m, s, t = v
        sig = 1 / (1 + np.exp(-t))
        second = (m - 1.0) ** 2 + np.exp(2 * s)
        if route == "pathwise":
            return (sig + 0.5) * second * t
        if route == "pathwise+score":
            return (sig + 0.5) * second + (m * m + np.exp(2 * s)) * t
        return (sig + 0.5) * t * 0.5 * (1 + erf((m - 1.0) / (np.exp(s) * sqrt(2))))

    x0, h = np.array([float(params[n]) for n in names]), 1e-4
    out = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            out[(a, b)] = (J(x0 + ei + ej) - J(x0 + ei - ej) - J(x0 - ei + ej) + J(x0 - ei - ej)) / (4 * h * h)
    return out


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_normal_nodes_follow_the_credit_routes(route):
    g, params = _normal_graph(route)
    est = scg.compile(g, estimator="dice", order=2)
    assert est.assignment == ROUTES[route]
    assert ("log p(sg(z))" in str(est.ir)) == (route == "pathwise+score")
    draws = hessian_draws(est, params, {}, n_calls=60, n_samples=500)
    assert hessian_z(draws, _closed_form_hessian(route, params)) < 5.0


def test_a_blackbox_cost_on_a_param_is_refused_by_name():
    g = scg.Graph("bb")
    with g:
        t = scg.param("t", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=t))
        scg.cost("c", b * t, blackbox=True)
    with pytest.raises(EstimatorError, match="'c' is blackbox but depends directly on param 't'"):
        scg.compile(g, estimator="dice")


# -- Hessian-vector products, limits, backends, errors ----------------------------------------------------------
def test_hvp_is_the_hessian_times_the_vector_on_the_same_samples():
    g, params, inputs = GRAPHS["two_layers"]()
    est = scg.compile(g, estimator="dice", order=2)
    rng = np.random.default_rng(0)
    vector = {k: rng.normal(size=v.shape) for k, v in params.items()}
    out = est(params, inputs, seed=3, n_samples=5)
    hv = est.hvp(params, inputs, vector, seed=3, n_samples=5)
    for q in params:
        want = sum(np.tensordot(out.hessian[(q, p)], vector[p], axes=vector[p].ndim) for p in params)
        np.testing.assert_allclose(hv.hvp[q], want, rtol=1e-9, atol=1e-12, err_msg=q)
        np.testing.assert_allclose(hv.grads[q], out.grads[q], rtol=1e-12)


def test_large_params_get_hvp_and_a_clear_error_for_the_full_hessian():
    g, params, inputs = GRAPHS["bandit"]()  # 28 parameter elements
    est = scg.compile(g, estimator="dice", order=2, options={"max_hessian_size": 10})
    out = est(params, inputs, seed=1)
    with pytest.raises(ScgError, match="max_hessian_size=10.*est.hvp"):
        out.hessian[("W1", "W2")]
    hv = est.hvp(params, inputs, {k: np.ones_like(v) for k, v in params.items()}, seed=1)
    assert {k: v.shape for k, v in hv.hvp.items()} == {k: v.shape for k, v in params.items()}
    with pytest.raises(ScgError, match="vector"):
        est.hvp(params, inputs, {"W1": np.ones((3, 3))}, seed=1)
    with pytest.raises(ScgError, match="shape"):
        est.hvp(params, inputs, {k: np.ones(2) for k in params}, seed=1)


@pytest.mark.parametrize("graph", ["categorical_parent"])
def test_numba_parity(graph):
    g, params, inputs = GRAPHS[graph]()
    ref = scg.compile(g, estimator="dice", order=2, backend="numpy")(params, inputs, seed=4, n_samples=3)
    got = scg.compile(g, estimator="dice", order=2, backend="numba")(params, inputs, seed=4, n_samples=3)
    for key, h in ref.hessian.items():
        np.testing.assert_allclose(got.hessian[key], h, rtol=1e-9, atol=1e-12, err_msg=str(key))
    for k in params:
        np.testing.assert_allclose(got.grads[k], ref.grads[k], rtol=1e-9, atol=1e-12)


def test_ir_says_what_it_derived():
    g, _, _ = toy()
    text = str(scg.compile(g, estimator="dice", order=2).ir)
    assert "dice for c: magic(log p(b)) * c" in text
    assert "stop_gradient" in text and "hessian/0" in text


@pytest.mark.parametrize("estimator", ["reinforce", "scg", "hnca", "muprop", {"default": "hnca"}])
def test_order_2_is_refused_for_the_surrogate_estimators(estimator):
    g, _, _ = toy()
    with pytest.raises(EstimatorError, match="estimator='dice'"):
        scg.compile(g, estimator=estimator, order=2)


def test_bad_order_and_options():
    g, _, _ = toy()
    with pytest.raises(EstimatorError, match="order"):
        scg.compile(g, estimator="dice", order=3)
    with pytest.raises(EstimatorError, match="unknown option"):
        scg.compile(g, estimator="dice", options={"temprature": 1.0})
    with pytest.raises(EstimatorError, match="max_hessian_size"):
        scg.compile(g, estimator="dice", options={"max_hessian_size": -1})
    with pytest.raises(ScgError, match="takes no options"):
        scg.compile(g, estimator="hnca", options={"max_hessian_size": 3})
    with pytest.raises(ExactError, match="order"):
        scg.exact(g, {"t": np.array(0.3)}, {}, order=3)


def test_external_costs_two_phase_hessian_and_hvp():
    """An environment's reward: J = (sigmoid(t0) + 0.5)(sigmoid(t1) - 0.2) + |t|^2, Hessian by central differences."""
    g = scg.Graph("ext")
    with g:
        t = scg.param("t", shape=(2,))
        b = scg.sample("b", scg.Bernoulli(logits=t))
        scg.external_cost("r", depends_on=[b])
        scg.cost("reg", (t * t).sum())
    params = {"t": np.array([0.3, -0.2])}

    def J(v):
        s = 1 / (1 + np.exp(-v))
        return (s[0] + 0.5) * (s[1] - 0.2) + v @ v

    h, eye = 1e-4, np.eye(2) * 1e-4
    want = np.array([[(J(params["t"] + eye[i] + eye[j]) - J(params["t"] + eye[i] - eye[j])
                       - J(params["t"] - eye[i] + eye[j]) + J(params["t"] - eye[i] - eye[j])) / (4 * h * h)
                      for j in range(2)] for i in range(2)])
    est = scg.compile(g, estimator="dice", order=2)
    draws = []
    for seed in range(40):
        run = est.sample(params, {}, seed=seed, n_samples=1000)
        reward = (run.samples["b"][..., 0] + 0.5) * (run.samples["b"][..., 1] - 0.2)
        draws.append(run.grads(external={"r": reward}).hessian[("t", "t")])
    assert hessian_z({("t", "t"): np.stack(draws)}, {("t", "t"): want}) < 4.0
    hv = est.hvp(params, {}, {"t": np.array([1.0, 0.0])}, seed=39, n_samples=1000, external={"r": reward})
    np.testing.assert_allclose(hv.hvp["t"], draws[-1][:, 0], rtol=1e-9)
    with pytest.raises(ScgError, match="external costs"):
        est.hvp(params, {}, {"t": np.ones(2)}, seed=1)


def test_dice_does_not_mix_per_node():
    g, _, _ = toy()
    with pytest.raises(EstimatorError, match="use estimator='dice'"):
        scg.compile(g, estimator={"default": "scg", "b": "dice"})
    assert scg.compile(g, estimator="dice").unbiased


# -- Loaded DiCE (Farquhar et al. 2019): lambda discounts the credit of distant stochastic ancestors -------------
def _chain():
    """a0 -> a1 (a1's logits see a0); r0 sees a0, r1 sees a1 and a0 (a0 is one stochastic step back from r1)."""
    g = scg.Graph("chain")
    with g:
        t0, t1 = scg.param("t0", shape=()), scg.param("t1", shape=())
        a0 = scg.sample("a0", scg.Bernoulli(logits=t0))
        a1 = scg.sample("a1", scg.Bernoulli(logits=t1 + 2.0 * a0 - 1.0))
        scg.cost("r0", 0.5 * a0)
        scg.cost("r1", scg.square(a1 + a0 - 1.2))
    return g, {"t0": np.array(0.2), "t1": np.array(-0.4)}


def test_loaded_lambda_one_is_dice():
    g, _ = _chain()
    plain, loaded = scg.compile(g, estimator="dice", order=2), scg.compile(
        g, estimator="dice", order=2, options={"loaded_lambda": 1.0})
    assert str(plain.ir) == str(loaded.ir) and loaded.unbiased


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_loaded_lambda_discounts_distant_credit(lam):
    """E[d/dt0] = d E[r0]/dt0 + lam * (the rest of dJ/dt0): a0 reaches r1 one stochastic step away."""
    g, params = _chain()
    with pytest.warns(scg.ScgWarning, match="biased"):
        est = scg.compile(g, estimator="dice", order=2, options={"loaded_lambda": lam})
    assert not est.unbiased
    assert f"log p(a0) * {lam:g}^1" in str(est.ir)
    ex = scg.exact(g, params, {})
    s = 1 / (1 + np.exp(-0.2))
    near = 0.5 * s * (1 - s)  # d E[r0] / dt0
    want = near + lam * (float(ex.grads["t0"]) - near)
    draws = np.array([float(est(params, {}, seed=i, n_samples=4000).grads["t0"]) for i in range(40)])
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - want) < 4 * se
    assert abs(draws.mean() - float(ex.grads["t0"])) > 6 * se  # biased, and the test can tell
    grads_t1 = [float(est(params, {}, seed=i, n_samples=4000).grads["t1"]) for i in range(20)]
    assert abs(np.mean(grads_t1) - float(ex.grads["t1"])) < 4 * np.std(grads_t1, ddof=1) / np.sqrt(20)


def test_loaded_lambda_is_checked():
    g, _ = _chain()
    with pytest.raises(EstimatorError, match="loaded_lambda"):
        scg.compile(g, estimator="dice", options={"loaded_lambda": 1.5})


def test_hvp_reads_but_does_not_update_the_ema_state():
    g, params, inputs = GRAPHS["two_layers"]()
    est = scg.compile(g, estimator="dice", order=2, baseline="ema")
    est(params, inputs, seed=1, n_samples=20)
    before = {k: v.copy() for k, v in est.state.items()}
    vector = {k: np.ones_like(v) for k, v in params.items()}
    hv = est.hvp(params, inputs, vector, seed=2, n_samples=20)
    assert est.state.keys() == before.keys()
    assert all(np.array_equal(est.state[k], before[k]) for k in before)
    out = est(params, inputs, seed=2, n_samples=20)  # same samples, same baseline value as the hvp call saw
    want = {q: sum(np.tensordot(out.hessian[(q, p)], vector[p], axes=vector[p].ndim) for p in params) for q in params}
    for q in params:
        np.testing.assert_allclose(hv.hvp[q], want[q], rtol=1e-9, atol=1e-12)
