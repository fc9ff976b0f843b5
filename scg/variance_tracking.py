"""Gradient variance over training, as the DisARM and CARMS papers report it.

Dong, Mnih & Tucker (2020, sec. 6) and Dimitriev & Zhou (2021, CARMS) track, during
training, exponential moving averages of each gradient component ``g`` and of ``g^2``,
and report ``mean over components of (EMA[g^2] - EMA[g]^2)``: the estimator's variance
averaged over parameters (usually on a log scale; their decay is 0.999). ``VarianceTracker``
does that for any subset of parameters; ``plot_variance`` draws several trackers' curves
on one log-scale axis.

>>> import numpy as np
>>> t = VarianceTracker(decay=0.5)
>>> for g in ([1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]):
...     v = t.update({"w": np.array(g)})
>>> round(v, 4), t.steps
(0.4082, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from scg.errors import ScgError


class VarianceTracker:
    """EMAs of each gradient component and its square; ``update`` returns the mean variance.

    ``params``: the parameter names to track (default: every name seen in the first
    update, e.g. only the encoder's for a VAE). The EMAs are bias-corrected like Adam's
    moments, so early values are usable. ``history`` holds ``(step, variance)`` pairs.
    """

    def __init__(self, decay: float = 0.999, params: Iterable[str] | None = None):
        if not 0.0 < decay < 1.0:
            raise ScgError(f"VarianceTracker decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.params = None if params is None else tuple(params)
        self.steps = 0
        self.history: list[tuple[int, float]] = []
        self._m1: dict[str, np.ndarray] = {}
        self._m2: dict[str, np.ndarray] = {}

    def update(self, grads: Mapping[str, np.ndarray]) -> float:
        names = self.params if self.params is not None else tuple(grads)
        missing = [n for n in names if n not in grads]
        if missing:
            raise ScgError(f"VarianceTracker tracks {', '.join(map(repr, missing))}, missing from the gradients "
                           f"(got {', '.join(map(repr, grads))})")
        self.params = names
        d = self.decay
        for n in names:
            g = np.asarray(grads[n], dtype=np.float64)
            self._m1[n] = d * self._m1.get(n, np.zeros_like(g)) + (1 - d) * g
            self._m2[n] = d * self._m2.get(n, np.zeros_like(g)) + (1 - d) * g * g
        self.steps += 1
        value = self.variance
        self.history.append((self.steps, value))
        return value

    @property
    def variance(self) -> float:
        """Mean over tracked components of the bias-corrected ``EMA[g^2] - EMA[g]^2``."""
        if not self.steps:
            raise ScgError("VarianceTracker has no gradients yet: call update(out.grads) first")
        corr = 1.0 - self.decay ** self.steps
        total, count = 0.0, 0
        for n in self.params:
            m1, m2 = self._m1[n] / corr, self._m2[n] / corr
            total += float(np.sum(np.maximum(m2 - m1 * m1, 0.0)))
            count += m1.size
        return total / max(count, 1)


def plot_variance(trackers: Mapping[str, VarianceTracker], path: str, *, title: str = "gradient variance",
                  warmup: int = 10) -> str:
    """Log-scale variance-over-training curves, one per tracker, written to ``path`` (png/svg/pdf).

    The first ``warmup`` steps are left out: with one or two gradients the EMA variance is ~0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, t in trackers.items():
        points = [(s, v) for s, v in t.history if s > warmup]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean per-component variance (EMA)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
