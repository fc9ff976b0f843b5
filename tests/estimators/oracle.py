"""Statistical comparison of an estimator's mean against scg.exact."""

from __future__ import annotations

import numpy as np


def z_scores(est, exact, params, inputs, *, n_calls: int = 12, n_samples: int = 400, seed: int = 0):
    """Per-element z-scores of the mean estimate vs the exact gradient, over independent calls.

    Elements whose estimate is exactly noiseless must match exactly (to 1e-9).
    """
    draws = {k: [] for k in params}
    for i in range(n_calls):
        out = est(params, inputs, seed=seed + 1000 * i, n_samples=n_samples)
        for k, g in out.grads.items():
            draws[k].append(np.asarray(g, dtype=np.float64))
    zs = {}
    for k, gs in draws.items():
        arr = np.stack(gs)
        mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(len(gs))
        diff = mean - exact.grads[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 1e-12, diff / np.maximum(se, 1e-300), np.where(np.abs(diff) < 1e-9, 0.0, np.inf))
        zs[k] = z
    return zs


def max_abs_z(zs) -> float:
    return max(float(np.max(np.abs(z))) for z in zs.values())


def is_unbiased(est, exact, params, inputs, *, threshold: float = 5.0, **kw) -> tuple[bool, float]:
    """True when every gradient element is within ``threshold`` standard errors of the exact value."""
    worst = max_abs_z(z_scores(est, exact, params, inputs, **kw))
    return worst < threshold, worst
