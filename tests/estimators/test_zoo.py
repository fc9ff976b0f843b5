"""ARM, DisARM and VIMCO against exact oracles: unbiasedness, exact variances, backend parity.

* unbiasedness: every estimator-suite graph (categorical units by stick-breaking), numpy and numba, against ``scg.exact`` (VIMCO: the
  exact K-sample objective ``scg.exact(..., objective="iwae", n_samples=K)``);
* the exact variance oracles of the DisARM paper on one unit at logit 0 with
  ``f = (b - 0.45)^2``: DisARM is the constant 0.025, ARM has variance ``(f1-f0)^2/48``,
  RLOO with two draws ``(f1-f0)^2/16``;
* numba parity: samples identical, gradients to 1e-10 (float64);
* broken variants are caught (the checks can fail).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import scg
from scg.backends import rng
from scg.estimators import coupled, vimco
from scg.ir.ops import Op
from tests.estimators.graphs import GRAPHS
from tests.estimators.oracle import _z, hotelling_p, is_unbiased, max_abs_z


def _iwae_unbiased(est, ex, params, inputs, k, seed=7):
    """(worst |z|, Hotelling p) of VIMCO's mean against the exact K-sample gradient.

    ``n_samples`` is the K of the objective, so the noise is averaged over rows instead:
    the batch is tiled (the objective is a mean over rows, so tiling leaves it unchanged).
    """
    tiled = {k_: np.concatenate([v] * 150, axis=0) for k_, v in inputs.items()}
    n_calls = 40 if inputs else 400
    draws = {p: [] for p in params}
    for c in range(n_calls):
        out = est(params, tiled, seed=seed + 1000 * c, n_samples=k)
        for p, g in out.grads.items():
            draws[p].append(g)
    draws = {p: np.stack(v) for p, v in draws.items()}
    return max_abs_z(_z(draws, ex)), hotelling_p(draws, ex)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("kind", ["arm", "disarm"])
def test_coupled_estimators_are_unbiased(kind, graph, backend):
    g, params, inputs = GRAPHS[graph]()
    est = scg.compile(g, estimator=kind, backend=backend)
    assert est.unbiased
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, f"{kind} on {graph}: max |z| = {worst:.2f}\n{est.ir}"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_vimco_is_unbiased_for_the_k_sample_objective(graph, backend):
    g, params, inputs = GRAPHS[graph]()
    k = 3
    ex = scg.exact(g, params, inputs, objective="iwae", n_samples=k)
    est = scg.compile(g, estimator="vimco", objective="iwae", backend=backend)
    worst, p = _iwae_unbiased(est, ex, params, inputs, k)
    assert worst < 4.0 and p > 1e-3, f"vimco on {graph}: max |z| = {worst:.2f}, p = {p:.2g}"


def test_disarm_with_a_mixed_assignment_and_loo_baseline_is_unbiased():
    g, params, inputs = GRAPHS["two_layers"]()
    est = scg.compile(g, estimator={"default": "disarm", "h2": "hnca"}, baseline="loo")
    assert est.assignment == {"h1": "disarm", "h2": "hnca"}
    ok, worst = is_unbiased(est, scg.exact(g, params, inputs), params, inputs)
    assert ok, worst


def _one_categorical():
    g = scg.Graph("cat")
    with g:
        logits = scg.param("l", shape=(4,))
        a = scg.sample("a", scg.Categorical(logits=logits))
        scg.cost("c", scg.square(scg.to_float(a) - 1.3))
    return g, {"l": np.array([0.3, -0.5, 1.0, 0.1])}


@pytest.mark.parametrize("kind", ["arm", "disarm"])
def test_stick_breaking_on_one_categorical_is_unbiased_and_beats_reinforce(kind):
    g, params = _one_categorical()
    ex = scg.exact(g, params, {})
    est = scg.compile(g, estimator=kind)
    ok, worst = is_unbiased(est, ex, params, {}, n_calls=60, n_samples=200)
    assert ok, worst
    var = {k: np.stack([scg.compile(g, estimator=k)(params, {}, seed=s).grads["l"] for s in range(600)]).var(0).sum()
           for k in (kind, "reinforce")}
    assert var[kind] < 0.6 * var["reinforce"], var


# -- exact variance oracles (DisARM paper, one unit at logit 0) -------------------------------

def _coin_at_zero():
    g, _params, _inputs = GRAPHS["coin"]()
    return g, {"phi": np.array(0.0)}


F1_MINUS_F0 = (1 - 0.45) ** 2 - 0.45 ** 2  # 0.1


def _single_draw_grads(est, params, n, k=1):
    return np.array([float(est(params, {}, seed=s, n_samples=k).grads["phi"]) for s in range(n)])


def test_disarm_is_the_constant_0_025():
    g, params = _coin_at_zero()
    grads = _single_draw_grads(scg.compile(g, estimator="disarm"), params, 200)
    np.testing.assert_allclose(grads, 0.025, rtol=0, atol=1e-15)


def test_arm_draws_match_the_formula_and_variance_is_a_48th():
    g, params = _coin_at_zero()
    n = 4000
    out = scg.compile(g, estimator="arm")(params, {}, seed=11, n_samples=n)
    # per draw: (f(b) - f(b~)) (u - 1/2) with the site's own uniform u; here |.| = 0.1 |u - 1/2|
    u = rng._row_uniforms(n, 1, 11, 0, np.arange(n), np.zeros(n, np.int64))[0][:, 0]
    b_real = (u < 0.5).astype(float)
    f = (lambda b: (b - 0.45) ** 2)
    per_draw = (f(1.0 - b_real) - f(b_real)) * (u - 0.5)
    assert np.array_equal(out.samples["b"][:, 0], b_real)
    np.testing.assert_allclose(float(out.grads["phi"]), per_draw.mean(), rtol=1e-12)
    grads = _single_draw_grads(scg.compile(g, estimator="arm"), params, 4000)
    assert abs(grads.var() / (F1_MINUS_F0 ** 2 / 48) - 1) < 0.06, grads.var()
    assert abs(grads.mean() - 0.025) < 4 * grads.std() / np.sqrt(len(grads))


def test_rloo_with_two_draws_has_variance_a_16th():
    g, params = _coin_at_zero()
    grads = _single_draw_grads(scg.compile(g, estimator="reinforce", baseline="loo"), params, 2000, k=2)
    assert abs(grads.var() / (F1_MINUS_F0 ** 2 / 16) - 1) < 0.05, grads.var()


def test_disarm_variance_is_below_arm_component_by_component():
    g, params, inputs = GRAPHS["two_layers"]()
    spread = {}
    for kind in ("arm", "disarm"):
        est = scg.compile(g, estimator=kind)
        draws = np.stack([np.concatenate([np.ravel(v) for v in est(params, inputs, seed=s).grads.values()])
                          for s in range(300)])
        spread[kind] = draws.var(axis=0)
    assert np.all(spread["disarm"] <= spread["arm"] * 1.15 + 1e-12), spread


# -- numba parity ----------------------------------------------------------------------------

@pytest.mark.parametrize("graph", ["bandit", "two_layers", "vae", "categorical_parent"])
@pytest.mark.parametrize("kind", ["arm", "disarm", "vimco", "concrete", "gumbel_st"])
def test_numba_parity(kind, graph):
    g, params, inputs = GRAPHS[graph]()
    kw = {"objective": "iwae"} if kind == "vimco" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)  # the relaxed ones warn that they are biased
        outs = [scg.compile(g, estimator=kind, backend=b, **kw)(params, inputs, seed=5, n_samples=3)
                for b in ("numpy", "numba")]
    for name, value in outs[0].samples.items():
        assert np.array_equal(value, outs[1].samples[name]), name
    for name, value in outs[0].grads.items():
        np.testing.assert_allclose(outs[1].grads[name], value, rtol=0, atol=1e-10, err_msg=name)
    if kind == "vimco":
        assert outs[0].objective == pytest.approx(outs[1].objective, abs=1e-10)


# -- the checks can fail ---------------------------------------------------------------------

def test_a_pair_that_keeps_the_children_realised_is_caught(monkeypatch):
    """Re-evaluating with the layer below held at its realised value (HNCA's counterfactual, not a
    coupled re-draw) biases ARM/DisARM when costs depend on that layer."""
    from scg.estimators import counterfactual

    def held(graph, model_nodes, site, value, targets, note):
        return counterfactual.unrolled(graph, site, [value], list(targets), note)[0]

    monkeypatch.setattr(coupled, "re_evaluate", held)
    g, params, inputs = GRAPHS["two_layers"]()
    ok, worst = is_unbiased(scg.compile(g, estimator="disarm"), scg.exact(g, params, inputs), params, inputs)
    assert not ok and worst > 8, worst


def test_a_partner_from_fresh_noise_is_caught(monkeypatch):
    """The partner must come from the site's own uniform (1 - u): an independent one biases DisARM."""
    def independent(b, u, noise, note):
        other = b.graph.add(Op.NOISE_UNIFORM, (), dict(noise.attrs, site=noise.attrs["site"] + 1000))
        s = b.add(Op.SIGMOID, u.inputs[0])
        return s, b.add(Op.GREATER, s, other)

    monkeypatch.setattr(coupled, "antithetic", independent)
    g, params, inputs = GRAPHS["decoder"]()
    ok, worst = is_unbiased(scg.compile(g, estimator="disarm"), scg.exact(g, params, inputs), params, inputs)
    assert not ok and worst > 8, worst


def test_vimco_with_the_mean_objective_pathwise_term_is_caught(monkeypatch):
    monkeypatch.setattr(vimco, "objective_costs", lambda b, white: white)
    g, params, inputs = GRAPHS["decoder"]()
    ex = scg.exact(g, params, inputs, objective="iwae", n_samples=3)
    worst, p = _iwae_unbiased(scg.compile(g, estimator="vimco", objective="iwae"), ex, params, inputs, 3)
    assert worst > 8 and p < 1e-6, (worst, p)


def test_vimco_against_the_mean_objective_is_caught():
    """VIMCO's mean is the K-sample gradient, not dJ: the oracle tells the two apart."""
    g, params, inputs = GRAPHS["vae"]()
    ex = scg.exact(g, params, inputs)
    worst, p = _iwae_unbiased(scg.compile(g, estimator="vimco", objective="iwae"), ex, params, inputs, 3)
    assert worst > 8 and p < 1e-6, (worst, p)
