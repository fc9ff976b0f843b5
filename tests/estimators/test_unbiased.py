"""Every estimator's mean matches scg.exact, on graphs that exercise every derivation path.

Deterministic seeds; tolerance 5 standard errors over all elements. The broken
variants below show the check can fail.
"""

import pytest

import scg
from scg.estimators.base import SurrogateBuilder
from tests.estimators.graphs import GRAPHS
from tests.estimators.oracle import is_unbiased

ESTIMATORS = ["reinforce", "scg", "muprop", "hnca"]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unbiased(graph, estimator, backend):
    g, params, inputs = GRAPHS[graph]()
    ex = scg.exact(g, params, inputs)
    est = scg.compile(g, estimator=estimator, backend=backend)
    ok, worst = is_unbiased(est, ex, params, inputs)
    assert ok, f"{estimator} on {graph}: max |z| = {worst:.2f}\n{est.ir}"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("baseline", ["ema", "loo"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unbiased_with_baselines(estimator, baseline, backend):
    g, params, inputs = GRAPHS["bandit"]()
    ex = scg.exact(g, params, inputs)
    est = scg.compile(g, estimator=estimator, baseline=baseline, backend=backend)
    est(params, inputs, seed=99, n_samples=50)  # warm the EMA state so the baseline is non-zero
    ok, worst = is_unbiased(est, ex, params, inputs)
    assert ok, f"{estimator}+{baseline}: max |z| = {worst:.2f}"


def test_mixed_per_node_assignment_is_unbiased():
    g, params, inputs = GRAPHS["two_layers"]()
    ex = scg.exact(g, params, inputs)
    est = scg.compile(g, estimator={"default": "hnca", "h2": "muprop"}, baseline="loo")
    assert est.assignment == {"h1": "hnca", "h2": "muprop"}
    ok, worst = is_unbiased(est, ex, params, inputs)
    assert ok, worst


# -- the check can fail: deliberately broken derivations are caught -----------------------------

def test_dropping_a_downstream_cost_is_caught(monkeypatch):
    original = SurrogateBuilder.qhat

    def drop_last(self, info, costs=None, note=None):
        costs = tuple(info.downstream_costs if costs is None else costs)
        return original(self, info, costs[:-1], note)

    monkeypatch.setattr(SurrogateBuilder, "qhat", drop_last)
    g, params, inputs = GRAPHS["bandit"]()
    ex = scg.exact(g, params, inputs)
    ok, worst = is_unbiased(scg.compile(g, estimator="reinforce"), ex, params, inputs)
    assert not ok and worst > 8, worst


def test_hnca_without_stop_gradient_on_qhat_is_caught(monkeypatch):
    def leaky(self, x, note=None, name=None):
        return x if note and note.startswith("hnca") else self.add(scg.ir.Op.STOP_GRADIENT, x, note=note, name=name)

    monkeypatch.setattr(SurrogateBuilder, "sg", leaky)
    g, params, inputs = GRAPHS["bandit"]()
    ex = scg.exact(g, params, inputs)
    ok, worst = is_unbiased(scg.compile(g, estimator="hnca"), ex, params, inputs)
    assert not ok and worst > 8, worst


def test_hnca_with_a_wrong_affine_sign_is_caught(monkeypatch):
    from scg.estimators import counterfactual

    original = counterfactual.signed
    monkeypatch.setattr(counterfactual, "signed", lambda graph, w, sign, note: original(graph, w, -sign, note))
    g, params, inputs = GRAPHS["two_layers"]()
    ex = scg.exact(g, params, inputs)
    ok, worst = is_unbiased(scg.compile(g, estimator="hnca"), ex, params, inputs)
    assert not ok and worst > 8, worst
