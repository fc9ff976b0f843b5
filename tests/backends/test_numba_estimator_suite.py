"""Numba parity on every graph of the estimator test suite and the examples' graphs.

Same seed => the same samples, bit for bit; costs and gradients to 1e-10 relative in
float64 and 1e-4 in float32; with 1 and 2 Numba threads (issue 4, "Done when").
"""

import importlib.util
import os
import pathlib
import warnings

import numba
import numpy as np
import pytest

import scg
from tests.estimators.graphs import GRAPHS

ESTIMATORS = ["reinforce", "scg", "muprop", "hnca"]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _example(name, monkeypatch):
    """Import examples/<name>.py (its helper module _common sets BLAS env vars: undone after the test)."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setattr(os, "environ", os.environ.copy())
    spec = importlib.util.spec_from_file_location(f"_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(a, b, rtol):
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k], err_msg=f"sample {k}")
    np.testing.assert_allclose(a.cost, b.cost, rtol=rtol)
    for k in a.grads:
        ga, gb = np.asarray(a.grads[k], np.float64), np.asarray(b.grads[k], np.float64)
        scale = max(1e-30, float(np.max(np.abs(ga))))
        np.testing.assert_allclose(ga / scale, gb / scale, atol=rtol, err_msg=f"grad {k}")


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_suite_graphs(graph, estimator):
    g, params, inputs = GRAPHS[graph]()
    ref = scg.compile(g, estimator, baseline="loo")(params, inputs, seed=7, n_samples=3)
    est = scg.compile(g, estimator, baseline="loo", backend="numba")
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            _compare(ref, est(params, inputs, seed=7, n_samples=3), 1e-10)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("precision,rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_example_graphs(precision, rtol, monkeypatch):
    """The bandit (external reward, two-phase) and the two-layer SBN VAE of examples/, scaled down."""
    bandit = _example("bandit_mnist", monkeypatch).build_graph(depth=3, hidden=12, n_in=20, n_actions=5)
    vae = _example("sbn_vae", monkeypatch).build_graph(2, 10, np.full(20, 0.3))
    rng = np.random.default_rng(0)
    x = (rng.random((6, 20)) > 0.5).astype(float)
    labels = rng.integers(0, 5, size=6)
    for g, estimators in ((bandit, ["reinforce", "hnca"]), (vae, ["reinforce", "muprop", "hnca"])):
        params = g.init_params(1)
        for estimator in estimators:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scg.ScgWarning)
                pair = [scg.compile(g, estimator, backend=b, precision=precision) for b in ("numpy", "numba")]
            if g.external_costs:
                runs = [e.sample(params, {"x": x}, seed=3) for e in pair]
                reward = {"neg_reward": -(runs[0].samples["a"] == labels).astype(float)}
                outs = [r.grads(external=reward) for r in runs]
            else:
                outs = [e(params, {"x": x}, seed=3) for e in pair]
            _compare(outs[0], outs[1], rtol)
