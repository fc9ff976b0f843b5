"""Statistical comparison of an estimator's mean against scg.exact.

Two checks on ``n_calls`` independent calls (distinct seeds):

* every component within ``threshold`` standard errors of the exact gradient;
* a joint chi-square-type test over all components: Hotelling's T^2 on the
  stacked gradient vector (components share samples, so they are correlated and
  a plain sum of z^2 would over-reject), with the F distribution of
  ``(n - r) / (r (n - 1)) T^2 ~ F(r, n - r)``, r the rank of the sample covariance.

Noiseless components (zero sample variance) must match exactly (to 1e-9).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def draws(est, params, inputs, *, n_calls: int, n_samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    out = {k: [] for k in params}
    for i in range(n_calls):
        res = est(params, inputs, seed=seed + 1000 * i, n_samples=n_samples)
        for k, g in res.grads.items():
            out[k].append(np.asarray(g, dtype=np.float64))
    return {k: np.stack(v) for k, v in out.items()}


def z_scores(est, exact, params, inputs, *, n_calls: int = 40, n_samples: int = 300, seed: int = 0):
    """Per-element (mean - exact) / standard error; inf for a noiseless element that is off."""
    return _z(draws(est, params, inputs, n_calls=n_calls, n_samples=n_samples, seed=seed), exact)


def _z(samples, exact):
    zs = {}
    for k, arr in samples.items():
        mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(len(arr))
        diff = mean - exact.grads[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            zs[k] = np.where(se > 1e-12, diff / np.maximum(se, 1e-300),
                             np.where(np.abs(diff) < 1e-9, 0.0, np.inf))
    return zs


def max_abs_z(zs) -> float:
    return max(float(np.max(np.abs(z))) for z in zs.values())


def hotelling_p(samples, exact) -> float:
    """p-value of Hotelling's T^2 test that the mean gradient vector equals the exact one."""
    flat = np.concatenate([samples[k].reshape(len(samples[k]), -1) for k in samples], axis=1)
    want = np.concatenate([np.ravel(exact.grads[k]) for k in samples])
    noisy = flat.std(axis=0) > 1e-12 * (1 + np.abs(want))
    x, mu = flat[:, noisy], want[noisy]
    n = len(x)
    if x.shape[1] == 0:
        return 1.0
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > 1e-10 * vals.max()
    r = int(keep.sum())
    if r >= n:
        raise ValueError(f"Hotelling's T^2 needs more calls ({n}) than independent components ({r})")
    proj = (x.mean(axis=0) - mu) @ vecs[:, keep]
    t2 = n * float(np.sum(proj**2 / vals[keep]))
    return float(stats.f.sf((n - r) / (r * (n - 1)) * t2, r, n - r))


def is_unbiased(est, exact, params, inputs, *, threshold: float = 4.0, alpha: float = 1e-3,
                n_calls: int = 40, n_samples: int = 300, seed: int = 0) -> tuple[bool, float]:
    """Every component within ``threshold`` SE and the joint test not rejected at ``alpha``.

    Returns (verdict, worst |z|).
    """
    samples = draws(est, params, inputs, n_calls=n_calls, n_samples=n_samples, seed=seed)
    worst = max_abs_z(_z(samples, exact))
    return worst < threshold and hotelling_p(samples, exact) > alpha, worst
