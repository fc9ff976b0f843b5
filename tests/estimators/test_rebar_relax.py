"""REBAR and RELAX (learned control variates): unbiasedness, numba parity, adaptation, refusals.

* frozen control variates (``cv_lr=0``) at a few fixed ``(eta, lambda)`` are unbiased against
  ``scg.exact`` on every estimator-suite graph REBAR accepts (RELAX also with black-box and
  external costs), numpy; numba on a subset;
* numba parity: samples identical, gradients (and the control variates' variance gradients)
  to 1e-10;
* the REBAR toy (logit 0, t = 0.45): from ``eta = 1, lambda = 0.5`` (single-sample variance
  0.0227, above REINFORCE's 0.0159) Adam on ``d sum(g^2)/d(eta, lambda)`` drives the variance
  down; RELAX adapted ends below REINFORCE + EMA;
* the checks can fail: dropping the ``- eta d f(z~)/dphi`` term, or drawing ``z~`` from the
  marginal instead of ``p(z | b)``, is caught.
"""

from __future__ import annotations

import numpy as np
import pytest

import scg
from scg.estimators import learned_cv
from tests.estimators.graphs import GRAPHS
from tests.estimators.oracle import is_unbiased
from tests.estimators.test_properties import _external_bandit, _TwoPhase

# graph -> the per-node assignment REBAR / RELAX take there (categorical units by another estimator)
ACCEPTS = {
    "coin": {},
    "two_layers": {},
    "nonaffine_child": {},
    "categorical_parent": {"u": "reinforce"},   # u is upstream of the Bernoulli unit
    "decoder": {},
    "vae": {},
}
RELAX_ONLY = {"bandit": {"a": "reinforce"},      # a (not relaxed) lies between h1 and the costs: r alone
              "blackbox": {"a": "reinforce"}}     # black-box costs: r alone
FIXED = [(1.0, 0.5), (-0.7, 2.0), (3.0, 0.2)]   # (eta, lambda)


def _compile(g, kind, per_node, backend="numpy", **options):
    return scg.compile(g, estimator={"default": kind, **per_node}, backend=backend,
                       options={"cv_lr": 0.0, **options})


@pytest.mark.parametrize("eta,lam", FIXED)
@pytest.mark.parametrize("graph", sorted(ACCEPTS))
@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_frozen_control_variates_are_unbiased(kind, graph, eta, lam):
    g, params, inputs = GRAPHS[graph]()
    est = _compile(g, kind, ACCEPTS[graph], eta=eta, **{"lambda": lam})
    assert est.unbiased
    if kind == "relax":  # a non-zero r (its output layer starts at zero): perturb every r weight
        rng = np.random.default_rng(1)
        est.load_state({k: v + rng.normal(0, 0.5, np.shape(v)) if k.startswith("r.") else v
                        for k, v in est.state.items()})
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, f"{kind} on {graph} at eta={eta}, lambda={lam}: max |z| = {worst:.2f}"


@pytest.mark.parametrize("graph", sorted(RELAX_ONLY))
def test_relax_with_black_box_costs_and_non_relaxed_units_is_unbiased(graph):
    g, params, inputs = GRAPHS[graph]()
    est = _compile(g, "relax", RELAX_ONLY[graph], eta=2.0)
    rng = np.random.default_rng(2)
    est.load_state({k: v + rng.normal(0, 0.5, np.shape(v)) if k.startswith("r.") else v
                    for k, v in est.state.items()})
    if graph == "bandit":  # a (reinforce) lies between h1 and neg_reward: r alone for it, said in the IR
        text = str(est.ir)
        assert "surrogate r alone for 'neg_reward': relax: the stochastic node 'a' lies between the unit 'h1'" in text
        assert "sparsity" not in text.split("surrogate r alone for")[1].split("\n")[0]  # sparsity is relaxed
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, worst


@pytest.mark.parametrize("assignment", [{"default": "rebar", "h1": "relax"}, {"default": "disarm", "h2": "rebar"},
                                        {"default": "relax", "h2": "hnca"}])
def test_mixed_per_node_assignments_are_unbiased(assignment):
    """Per-node dicts: a relax unit above a rebar unit (relaxed together), rebar below a DisARM unit, and relax
    above an HNCA unit (not relaxable: r alone)."""
    g, params, inputs = GRAPHS["two_layers"]()
    est = scg.compile(g, estimator=assignment, baseline="loo", options={"cv_lr": 0.0, "eta": 1.5})
    assert est.unbiased and set(est.assignment.values()) == set(assignment.values())
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, worst


@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_with_an_ema_baseline_is_unbiased_and_keeps_both_states(kind):
    g, params, inputs = GRAPHS["vae"]()
    est = scg.compile(g, estimator=kind, baseline="ema", options={"cv_lr": 0.0})
    est(params, inputs, seed=99, n_samples=50)   # a non-zero baseline
    assert "ema_z" in est.state and "asinh_eta.z" in est.state
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, worst


def test_relax_with_an_external_cost_two_phase_is_unbiased():
    g, twin = _external_bandit()
    rng = np.random.default_rng(7)
    params = {k: v + rng.normal(0, 0.7, v.shape) for k, v in g.init_params(0).items()}
    x, y = rng.normal(size=(2, 3)), np.array([0, 3])
    est = _compile(g, "relax", {"a": "reinforce"})
    est.load_state({k: v + rng.normal(0, 0.5, np.shape(v)) if k.startswith("r.") else v
                    for k, v in est.state.items()})
    ok, worst = is_unbiased(_TwoPhase(est, np.tile(y, 400).reshape(400, 2)), scg.exact(twin, params, {"x": x, "y": y}),
                            params, {"x": x}, n_samples=400)
    assert ok, worst


@pytest.mark.parametrize("graph,kind", [("two_layers", "rebar"), ("vae", "relax")])
def test_numba_frozen_is_unbiased(graph, kind):
    g, params, inputs = GRAPHS[graph]()
    est = _compile(g, kind, ACCEPTS[graph], backend="numba", eta=1.5)
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, worst


@pytest.mark.parametrize("graph,kind", [("two_layers", "rebar"), ("vae", "relax"), ("blackbox", "relax")])
def test_numba_parity_with_adaptation(graph, kind):
    g, params, inputs = GRAPHS[graph]()
    per_node = {**ACCEPTS, **RELAX_ONLY}[graph]
    ests = [scg.compile(g, estimator={"default": kind, **per_node}, backend=b, options={"cv_lr": 0.05})
            for b in ("numpy", "numba")]
    for step in range(3):  # three calls, each one Adam step: the state must stay identical to 1e-10
        outs = [e(params, inputs, seed=5 + step, n_samples=3) for e in ests]
        for name, value in outs[0].samples.items():
            assert np.array_equal(value, outs[1].samples[name]), name
        for name, value in outs[0].grads.items():
            np.testing.assert_allclose(outs[1].grads[name], value, rtol=0, atol=1e-10, err_msg=name)
        for name, value in ests[0].state.items():
            np.testing.assert_allclose(ests[1].state[name], value, rtol=0, atol=1e-10, err_msg=name)
    assert ests[0].state["adam_t"] == 3 and any(k.startswith("cvgrad/") for k in ests[0].ir.outputs)


# -- the REBAR toy ---------------------------------------------------------------------------------

def _coin(t=0.45):
    g = scg.Graph("rebar_toy")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - t) ** 2)
    return g


P0 = {"phi": np.array(0.0)}


def _variance(est, calls=1000, draws=30, seed=10**6, state=None, params=P0):
    """Single-sample variance of the phi-gradient: draws x the variance of the mean of ``draws`` draws
    (``state``: reloaded before every call, so an EMA baseline stays put)."""
    gs = []
    for i in range(calls):
        if state is not None:
            est.load_state(state)
        gs.append(est(params, {}, seed=seed + i, n_samples=draws).grads["phi"])
    return draws * float(np.var(gs, ddof=1))


def _frozen_at(g, kind, state):
    est = scg.compile(g, estimator=kind, options={"cv_lr": 0.0})
    est.load_state(state)
    return est


def test_rebar_start_and_reinforce_limit_match_the_published_variances():
    g = _coin()
    start = _variance(scg.compile(g, estimator="rebar", options={"cv_lr": 0.0, "eta": 1.0, "lambda": 0.5}))
    eta0 = _variance(scg.compile(g, estimator="rebar", options={"cv_lr": 0.0, "eta": 0.0}))
    reinforce = _variance(scg.compile(g, estimator="reinforce"))
    # 1000 means of 30 draws: relative standard error of the variance ~ 4.5%
    assert start == pytest.approx(0.0227, rel=0.15)
    assert eta0 == pytest.approx(0.0159, rel=0.15) and reinforce == pytest.approx(0.0159, rel=0.15)


def test_rebar_adaptation_drives_the_variance_down():
    g = _coin()
    est = scg.compile(g, estimator="rebar", options={"cv_lr": 0.1, "eta": 1.0, "lambda": 0.5})
    for i in range(1500):
        est(P0, {}, seed=i)
    adapted = _variance(_frozen_at(g, "rebar", est.state))
    eta, lam = np.sinh(est.state["asinh_eta.b"]), np.exp(est.state["log_lambda.b"])
    assert adapted < 0.0159 / 10, (adapted, eta, lam)   # start: 0.0227; REINFORCE: 0.0159


def test_frozen_rebar_does_not_move():
    g = _coin()
    est = scg.compile(g, estimator="rebar", options={"cv_lr": 0.0, "eta": 2.0})
    before = dict(est.state)
    for i in range(5):
        est(P0, {}, seed=i)
    assert all(np.array_equal(before[k], est.state[k]) for k in before)
    assert not any(k.startswith("cvgrad/") for k in est.ir.outputs)


def test_relax_adapted_is_below_reinforce_with_ema():
    """At logit 1 (at logit 0 REINFORCE with the converged EMA baseline E[f] is exactly 0.025 every draw: its
    variance is zero there, whatever the estimator to compare)."""
    g, p1 = _coin(), {"phi": np.array(1.0)}
    ema = scg.compile(g, estimator="reinforce", baseline="ema")
    relax = scg.compile(g, estimator="relax", options={"cv_lr": 0.05})
    for i in range(1000):
        ema(p1, {}, seed=i)
        relax(p1, {}, seed=i)
    v_ema = _variance(ema, state=dict(ema.state), params=p1)  # the baseline held at its trained value
    v_relax = _variance(_frozen_at(g, "relax", relax.state), params=p1)
    assert v_relax < v_ema / 2, (v_relax, v_ema)


def test_load_state_restores_the_control_variates_and_adam():
    g = _coin()
    a = scg.compile(g, estimator="rebar", options={"cv_lr": 0.05})
    for i in range(10):
        a(P0, {}, seed=i)
    b = scg.compile(g, estimator="rebar", options={"cv_lr": 0.05})
    b.load_state(a.state)
    a(P0, {}, seed=99)
    b(P0, {}, seed=99)
    assert set(a.state) == set(b.state)
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k], err_msg=k)


# -- the checks can fail ---------------------------------------------------------------------------

def test_dropping_the_pathwise_correction_at_z_tilde_is_caught(monkeypatch):
    original = learned_cv.SurrogateBuilder.add

    def drop(self, op, *inputs, note=None, name=None, **attrs):
        if name and name.startswith("pathwise."):  # c(z) - c(z~) -> c(z): no - eta d f(z~)/dphi
            return inputs[0]
        return original(self, op, *inputs, note=note, name=name, **attrs)

    monkeypatch.setattr(learned_cv.SurrogateBuilder, "add", drop)
    g, params, inputs = GRAPHS["two_layers"]()
    est = _compile(g, "rebar", {})
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert not ok and worst > 8, worst


def test_z_tilde_equal_to_z_is_caught(monkeypatch):
    """z~ must be a fresh draw given b; reusing z itself (correlated with the score) biases the estimator.
    (A z~ from the marginal, independent of b, would still be unbiased: a control variate with mean zero.)"""
    monkeypatch.setattr(learned_cv, "_conditional", lambda b, u, note: learned_cv._logistic(b, u, note)[1])
    g, params, inputs = GRAPHS["coin"]()
    est = _compile(g, "rebar", {}, eta=2.0)
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert not ok and worst > 8, worst


# -- refusals --------------------------------------------------------------------------------------

def test_rebar_refuses_black_box_costs_by_name_and_points_to_relax():
    g, _, _ = GRAPHS["blackbox"]()
    with pytest.raises(scg.ScgError, match=r"black-box cost 'reward'.*'h'.*relax"):
        scg.compile(g, estimator={"default": "rebar", "a": "reinforce"})


def test_rebar_refuses_a_non_relaxed_unit_between_the_unit_and_its_costs():
    g, _, _ = GRAPHS["bandit"]()
    with pytest.raises(scg.ScgError, match=r"'a' lies between the unit 'h1'"):
        scg.compile(g, estimator={"default": "rebar", "a": "reinforce"})


def test_categorical_units_are_refused_by_name():
    g, _, _ = GRAPHS["categorical_parent"]()
    for kind in ("rebar", "relax"):
        with pytest.raises(scg.ScgError, match=rf"{kind}: 'u' is a categorical node"):
            scg.compile(g, estimator=kind)


def test_a_comparison_of_the_unit_is_refused_by_rebar():
    g = scg.Graph("cmp")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", scg.equal(b, 1.0))
    with pytest.raises(scg.ScgError, match="equal"):
        scg.compile(g, estimator="rebar")


@pytest.mark.parametrize("options,match", [
    ({"cv_lr": -1.0}, "'cv_lr'"), ({"cv_lr": float("nan")}, "'cv_lr'"), ({"cv_lr": "fast"}, "'cv_lr'"),
    ({"lambda": 0.0}, "'lambda'"), ({"eta": float("inf")}, "'eta'"), ({"cv_hidden": (0,)}, "'cv_hidden'"),
    ({"cv_rate": 1e-3}, "unknown option 'cv_rate'"),
])
def test_bad_options_are_errors_naming_the_key(options, match):
    with pytest.raises(scg.ScgError, match=match):
        scg.compile(_coin(), estimator="relax", options=options)


def test_cv_hidden_is_read_by_relax_only():
    with pytest.raises(scg.ScgError, match="cv_hidden"):
        scg.compile(_coin(), estimator="rebar", options={"cv_hidden": (4,)})


def test_normal_nodes_are_served_pathwise_and_naming_one_is_refused():
    g = scg.Graph("mixed")
    with g:
        mu = scg.param("mu", shape=())
        x = scg.sample("x", scg.Normal(mu, 1.0))
        b = scg.sample("b", scg.Bernoulli(logits=x))
        scg.cost("c", scg.square(b - 0.3) + 0.1 * x * x)
    est = scg.compile(g, estimator="rebar", options={"cv_lr": 0.0})
    assert est.assignment == {"x": "pathwise", "b": "rebar"}
    params = {"mu": np.array(0.2)}
    ok, worst = is_unbiased(est, scg.exact(g, params, {}), params, {})
    assert ok, worst
    with pytest.raises(scg.ScgError, match="Normal node 'x'"):
        scg.compile(g, estimator={"default": "rebar", "x": "rebar"})


# -- the derived IR, printed ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rebar", "relax"])
def test_estimator_ir_golden(kind):
    """The terms are named (z.b, ztilde.b, eta.b, lambda.b, cv.b, cv_tilde.b, cv_det.b, pathwise.b) and the
    variance gradient is IR too (cvgrad/ outputs)."""
    from tests.ir.test_printer import check_golden

    g, _, _ = GRAPHS["coin"]()
    text = str(scg.compile(g, estimator=kind, options={"cv_lr": 1e-3, "cv_hidden": (2,)} if kind == "relax"
                           else {"cv_lr": 1e-3}).ir)
    for name in ("z.b", "ztilde.b", "eta.b", "lambda.b", "cv.b", "cv_tilde.b", "cv_det.b", "pathwise.b",
                 "cvgrad/asinh_eta.b", "cvgrad/log_lambda.b"):
        assert name in text, name
    check_golden(f"estimator_coin_{kind}", text)
