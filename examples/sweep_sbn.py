"""The SBN VAE estimator comparison as a sweep-able function: ``run(estimator, seed, ...)`` -> metrics + curves.

One configuration = one training run of the one-layer SBN VAE of
``examples/sbn_vae.py`` (200 Bernoulli latents, binarised MNIST-5k) with one
estimator and one seed; it returns the final test/train ELBO (nats per image,
higher is better), the best test ELBO, the median step time, and the test-ELBO
learning curve (``step`` and ``test_elbo_curve``, plotted by ``scg report``).

    scg sweep examples/sweep_sbn.py:run --grid estimator=reinforce_loo,muprop,hnca seed=0,1,2 steps=800 \\
        --workers 2 --warmup warmup --out examples/results/sweep_sbn/results.csv --plot

Estimators (label -> scg.compile arguments, training call):
``reinforce_loo`` = reinforce with the leave-one-out baseline over 2 draws per
image (RLOO, ``n_samples=2``); ``reinforce``, ``reinforce_ema``, ``muprop``,
``hnca``, ``hnca_ema`` one draw. Everything is seeded from ``seed``: the
initial parameters, the data order and binarisation, and every estimator
call, so a configuration gives the same numbers in any process.
"""

from __future__ import annotations

import time

import _common
import numpy as np
from sbn_vae import Evaluator, build_graph

import scg
from scg.training import dataset_batches

ESTIMATORS = {  # label -> (estimator, baseline, n_samples)
    "reinforce": ("reinforce", None, 1),
    "reinforce_ema": ("reinforce", "ema", 1),
    "reinforce_loo": ("reinforce", "loo", 2),
    "muprop": ("muprop", None, 1),
    "hnca": ("hnca", None, 1),
    "hnca_ema": ("hnca", "ema", 1),
}


def _setup(hidden, layers, backend, precision, n_eval, n_train):
    data = scg.datasets.load_mnist()
    if n_train:
        data = scg.datasets.Dataset(data.name, data.x_train[:n_train], data.y_train[:n_train], data.x_test,
                                    data.y_test, data.image_shape)
    graph = build_graph(layers, hidden, data.x_train.mean(axis=0))
    return data, graph, Evaluator(graph, data, backend, precision, n_eval)


def run(estimator: str, seed: int, steps: int = 800, hidden: int = 200, layers: int = 1, lr: float = 1e-3,
        batch: int = 50, eval_every: int = 100, n_eval: int = 500, n_train: int = 0, backend: str = "numba",
        precision: str = "float32") -> dict:
    """Train one SBN VAE with one estimator and seed; return final metrics and the test-ELBO curve."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    name, baseline, n_samples = ESTIMATORS[estimator]
    data, graph, evaluator = _setup(hidden, layers, backend, precision, n_eval, n_train)
    est = scg.compile(graph, estimator=name, baseline=baseline, backend=backend, precision=precision)
    params = _common.cast_params(graph.init_params(seed=seed), precision)
    t0 = time.perf_counter()
    hist = scg.train(est, params, dataset_batches(data, batch, seed=seed), scg.optim.Adam(lr), steps=steps,
                     seed=seed, n_samples=n_samples, evaluate=evaluator, eval_every=eval_every, progress=False)
    evals = hist.evals
    return {
        "test_elbo": evals[-1]["test_elbo"], "train_elbo": evals[-1]["train_elbo"],
        "best_test_elbo": max(e["test_elbo"] for e in evals),
        "step_ms": 1e3 * float(np.median(hist.column("seconds"))), "train_s": time.perf_counter() - t0,
        "step": [e["step"] for e in evals], "test_elbo_curve": [e["test_elbo"] for e in evals],
    }


def warmup(grid: dict) -> None:
    """Compile every estimator of the grid once (one call each), filling this machine's Numba kernel cache."""
    hidden = grid.get("hidden", [200])[0]
    layers = grid.get("layers", [1])[0]
    backend = grid.get("backend", ["numba"])[0]
    precision = grid.get("precision", ["float32"])[0]
    data, graph, evaluator = _setup(hidden, layers, backend, precision, 10, 0)
    x = scg.datasets.binarize(data.x_test[:4], np.random.default_rng(0))
    params = _common.cast_params(graph.init_params(seed=0), precision)
    evaluator.elbo(params, x, 0)
    for label in grid.get("estimator", []):
        if label in ESTIMATORS:
            name, baseline, n_samples = ESTIMATORS[label]
            est = scg.compile(graph, estimator=name, baseline=baseline, backend=backend, precision=precision)
            est(params, {"x": x}, seed=0, n_samples=n_samples)
