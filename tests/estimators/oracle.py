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


def chi_square_p(zs) -> float:
    """p-value of sum z^2 over all noisy components (chi-square with one dof per component)."""
    from scipy.stats import chi2

    flat = np.concatenate([np.ravel(z) for z in zs.values()])
    noisy = flat[(flat != 0.0) & np.isfinite(flat)]
    if np.any(~np.isfinite(flat)):
        return 0.0
    return float(chi2.sf(np.sum(noisy**2), df=max(1, noisy.size))) if noisy.size else 1.0


def is_unbiased(est, exact, params, inputs, *, threshold: float = 4.0, alpha: float = 1e-3,
                **kw) -> tuple[bool, float]:
    """Every component within ``threshold`` standard errors of the exact value, and a chi-square
    over all components not rejected at ``alpha``. Returns (verdict, worst |z|)."""
    zs = z_scores(est, exact, params, inputs, **kw)
    worst = max_abs_z(zs)
    return worst < threshold and chi_square_p(zs) > alpha, worst
