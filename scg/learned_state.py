"""REBAR/RELAX control-variate parameters as estimator state, trained by Adam on the IR's ``cvgrad/`` outputs.

The derived estimator computes ``d sum(g^2) / d key`` for each control-variate state
entry (``scg.estimators.learned_cv``); this holds the entries and their Adam moments
(Kingma & Ba 2015, Algorithm 1) in ``est.state``, under ``<key>``, ``adam_m/<key>``,
``adam_v/<key>`` and ``adam_t``, so ``load_state(other.state)`` resumes training exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


class LearnedState:
    def __init__(self, init: Mapping[str, np.ndarray], lr: float):
        self.init = {k: np.asarray(v, dtype=np.float64) for k, v in init.items()}
        self.lr = float(lr)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if not self.init:
            return {}
        out = {}
        for k, v in self.init.items():
            out[k] = out[f"adam_m/{k}"] = out[f"adam_v/{k}"] = v.shape
        out["adam_t"] = ()
        return out

    def reset(self, state: dict[str, np.ndarray]) -> None:
        if not self.init:
            return
        for k, v in self.init.items():
            state[k] = v.copy()
            state[f"adam_m/{k}"] = np.zeros_like(v)
            state[f"adam_v/{k}"] = np.zeros_like(v)
        state["adam_t"] = np.zeros(())

    def step(self, state: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """One Adam step on every entry with a gradient (none when ``cv_lr == 0``: frozen)."""
        if self.lr == 0.0 or not grads:
            return
        t = float(state["adam_t"]) + 1.0
        state["adam_t"] = np.array(t)
        for k, g in grads.items():
            g = np.asarray(g, dtype=np.float64)
            if not np.all(np.isfinite(g)):
                continue  # a non-finite variance gradient (e.g. an overflowing relaxation) skips the update
            m = BETA1 * state[f"adam_m/{k}"] + (1 - BETA1) * g
            v = BETA2 * state[f"adam_v/{k}"] + (1 - BETA2) * g * g
            state[f"adam_m/{k}"], state[f"adam_v/{k}"] = m, v
            m_hat, v_hat = m / (1 - BETA1 ** t), v / (1 - BETA2 ** t)
            state[k] = state[k] - self.lr * m_hat / (np.sqrt(v_hat) + EPS)
