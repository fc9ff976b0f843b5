"""The DisARM/CARMS variance-over-training metric: EMAs of g and g^2, averaged over parameters."""

from __future__ import annotations

import numpy as np
import pytest

import scg
from scg.diagnostics import VarianceTracker, plot_variance
from tests.estimators.graphs import GRAPHS


def test_tracker_recovers_a_known_variance():
    rng = np.random.default_rng(0)
    t = VarianceTracker(decay=0.999)
    for _ in range(20000):
        t.update({"a": rng.normal(1.0, 2.0, size=3), "b": rng.normal(0.0, 1.0, size=())})
    # components: three with variance 4, one with variance 1 -> mean 3.25
    assert t.variance == pytest.approx(3.25, rel=0.08)
    assert len(t.history) == 20000 and t.history[-1] == (20000, t.variance)


def test_constant_gradients_have_zero_variance_and_params_can_be_restricted():
    t = VarianceTracker(decay=0.9, params=["w"])
    for _ in range(5):
        t.update({"w": np.array([2.0, -1.0]), "ignored": np.random.default_rng(1).normal(size=4)})
    assert t.variance == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(scg.ScgError, match="'w', missing"):
        t.update({"v": np.zeros(2)})
    with pytest.raises(scg.ScgError, match="decay"):
        VarianceTracker(decay=1.0)
    with pytest.raises(scg.ScgError, match="no gradients yet"):
        _ = VarianceTracker().variance


def test_metric_orders_the_estimators_and_plots(tmp_path):
    """At fixed parameters the metric is each estimator's variance: DisARM < ARM < REINFORCE here."""
    g, params, inputs = GRAPHS["two_layers"]()
    trackers = {}
    for kind in ("reinforce", "arm", "disarm"):
        est = scg.compile(g, estimator=kind)
        t = trackers[kind] = VarianceTracker(decay=0.99, params=["W1"])
        for s in range(400):
            t.update(est(params, inputs, seed=s).grads)
    assert trackers["disarm"].variance < trackers["arm"].variance < trackers["reinforce"].variance
    path = plot_variance(trackers, str(tmp_path / "variance.png"))
    assert (tmp_path / "variance.png").stat().st_size > 1000 and path.endswith("variance.png")
