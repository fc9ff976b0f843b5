"""Straight-through Gumbel on a categorical: the reported sample is the forward value, and the
gradient has the law of the textbook estimator (iid Gumbels, hard = one_hot(argmax(l + G)))."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import scg
from scg.estimators import relaxed

C = np.array([1.0, 10.0, 100.0, -3.0])   # distinct per-class costs: the mean cost identifies the draws
LOGITS = np.array([0.3, -0.5, 0.9, 0.0])
TAU = 0.7


def _graph():
    g = scg.Graph("cat_st")
    with g:
        a = scg.sample("a", scg.Categorical(logits=scg.param("l", shape=(4,))))
        y = (scg.one_hot(a, 4) * C).sum()
        scg.cost("c", y * y)   # nonlinear in the one-hot: the gradient depends on the (hard, soft) pair
    return g


def _estimate(n, seed=3, backend="numpy"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        est = scg.compile(_graph(), estimator="gumbel_st", options={"temperature": TAU}, backend=backend)
    return est({"l": LOGITS.copy()}, {}, seed=seed, n_samples=n)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_reported_sample_is_the_forward_value(backend):
    out = _estimate(400, backend=backend)
    a = out.samples["a"].ravel()
    assert out.cost == pytest.approx(np.mean(C[a] ** 2), rel=1e-12)
    p = np.exp(LOGITS) / np.exp(LOGITS).sum()   # and it is a categorical draw (counts within 5 sd)
    counts = np.bincount(a, minlength=4)
    assert np.all(np.abs(counts - 400 * p) < 5 * np.sqrt(400 * p * (1 - p))), counts


def _textbook(n, rng):
    """Per-draw gradients of the standard estimator: G iid Gumbel, h = one_hot(argmax(l + G))."""
    pert = LOGITS + rng.gumbel(size=(n, 4))
    h = np.eye(4)[pert.argmax(1)]
    z = np.exp((pert - pert.max(1, keepdims=True)) / TAU)
    z /= z.sum(1, keepdims=True)
    dy = 2 * (h @ C)[:, None] * C[None]                 # dcost/dh, taken at the hard value
    return z * (dy - (dy * z).sum(1, keepdims=True)) / TAU   # dy^T dsoftmax/dl


def _law_gap(n_scg=20000):
    ref = _textbook(400_000, np.random.default_rng(0))
    mean, sd = ref.mean(0), ref.std(0)
    got = _estimate(n_scg).grads["l"]
    return np.abs(got - mean) / (sd * np.sqrt(1 / n_scg + 1 / len(ref)))


def test_gradient_has_the_law_of_the_textbook_estimator():
    assert np.all(_law_gap() < 4.5)


def test_the_law_check_can_fail(monkeypatch):
    """Gumbels drawn independently of the reported sample (the forward then mixes two draws) are caught."""
    def independent(add, logits, hard, v, axis, note):
        g = add(scg.ir.Op.NEG, add(scg.ir.Op.LOG, add(scg.ir.Op.NEG, add(scg.ir.Op.LOG, v, note=note), note=note),
                                   note=note), note=note)
        return add(scg.ir.Op.ADD, logits, g, note=note)

    monkeypatch.setattr(relaxed, "_gumbels_given_argmax", independent)
    assert np.any(_law_gap() > 6)
