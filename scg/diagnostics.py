"""Variance diagnostics: how noisy is an estimator, parameter by parameter?

>>> import numpy as np, scg
>>> g = scg.Graph("coin")
>>> with g:
...     phi = scg.param("phi", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=phi))
...     _ = scg.cost("c", (b - 0.45) ** 2)
>>> stats = scg.diagnostics.gradient_stats(scg.compile(g, "hnca"), {"phi": np.array(0.0)}, {}, n=20)
>>> float(stats["phi"].variance) < 1e-20      # f-HNCA sums over b exactly: no noise at all
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scg.errors import ScgError
from scg.variance_tracking import VarianceTracker, plot_variance  # variance over training (DisARM / CARMS)


@dataclass(frozen=True)
class GradientStats:
    """Per-element statistics of one parameter's gradient estimate over ``n`` independent calls."""

    mean: np.ndarray
    variance: np.ndarray   # unbiased sample variance of a single call's estimate
    n: int

    @property
    def std_error(self) -> np.ndarray:
        """Standard error of ``mean``."""
        return np.sqrt(self.variance / self.n)

    @property
    def snr(self) -> np.ndarray:
        """|mean| / std of a single estimate (inf where the estimate is noiseless)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.mean) / np.sqrt(self.variance)

    def summary(self) -> dict[str, float]:
        return {"mean_abs": float(np.mean(np.abs(self.mean))), "mean_variance": float(np.mean(self.variance)),
                "median_snr": float(np.median(self.snr))}


def gradient_stats(est, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray], *, n: int = 100,
                   seed: int = 0, n_samples: int = 1,
                   external=None) -> dict[str, GradientStats]:
    """Call ``est`` ``n`` times with seeds ``seed .. seed+n-1``; per-parameter mean, variance, SNR.

    ``external``: for graphs with external costs, a function ``samples -> {name: array}``
    computing the external costs from phase 1's samples.
    """
    if n < 2:
        raise ScgError(f"gradient_stats needs n >= 2 calls to estimate a variance, got n={n}")
    draws: dict[str, list[np.ndarray]] = {}
    for i in range(n):
        if external is None:
            out = est(params, inputs, seed=seed + i, n_samples=n_samples)
        else:
            run = est.sample(params, inputs, seed=seed + i, n_samples=n_samples)
            out = run.grads(external=external(run.samples))
        for name, g in out.grads.items():
            draws.setdefault(name, []).append(np.asarray(g, dtype=np.float64))
    stats = {}
    for name, gs in draws.items():
        arr = np.stack(gs)
        stats[name] = GradientStats(arr.mean(axis=0), arr.var(axis=0, ddof=1), n)
    return stats


def compare(estimators: Mapping[str, object], params, inputs, *, n: int = 100, seed: int = 0,
            n_samples: int = 1) -> str:
    """A table of mean gradient variance and median SNR per parameter, one column per estimator."""
    results = {label: gradient_stats(est, params, inputs, n=n, seed=seed, n_samples=n_samples)
               for label, est in estimators.items()}
    names = list(next(iter(results.values())))
    head = f"{'param':<12}" + "".join(f"{label + ' var':>18}{label + ' snr':>14}" for label in results)
    rows = [head, "-" * len(head)]
    for p in names:
        cells = "".join(f"{results[label][p].summary()['mean_variance']:>18.4g}"
                        f"{results[label][p].summary()['median_snr']:>14.4g}" for label in results)
        rows.append(f"{p:<12}" + cells)
    return "\n".join(rows)

__all__ = ["GradientStats", "VarianceTracker", "compare", "gradient_stats", "plot_variance"]
