"""First-order optimisers that update a params dict in place.

Every scg estimator returns ``grads`` with the same keys and shapes as
``params``; an optimiser turns them into a step that **minimises** the
objective (costs are minimised; a reward enters as a negative cost):

>>> import numpy as np
>>> from scg.optim import Adam
>>> params = {"w": np.array([1.0, -2.0])}
>>> opt = Adam(lr=0.1)
>>> opt.step(params, {"w": np.array([0.5, -0.5])})
>>> params["w"]                         # Adam's first step moves each element by ~lr
array([ 0.9, -1.9])

``state_dict()`` / ``load_state_dict()`` round-trip the moment buffers (saved
in checkpoints by :func:`scg.training.save_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scg.errors import ScgError


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place and counts steps."""

    def __init__(self, lr: float):
        if not lr > 0:
            raise ScgError(f"learning rate must be > 0, got {lr!r}")
        self.lr = float(lr)
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise ScgError(f"{type(self).__name__}.step: no gradient for parameter(s) {', '.join(missing)}")
        self.t += 1
        for name, p in params.items():
            g = np.asarray(grads[name])
            if g.shape != p.shape:
                raise ScgError(f"{type(self).__name__}.step: gradient of {name!r} has shape {g.shape}, "
                               f"parameter has {p.shape}")
            update = self._update(name, g.astype(p.dtype, copy=False), p)
            if p.ndim == 0:
                params[name] = np.asarray(p - update, dtype=p.dtype)
            else:
                p -= update

    def _update(self, name: str, g: np.ndarray, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.t = int(state.get("t", 0))


class SGD(Optimizer):
    """``p -= lr * (g + weight_decay * p)``, with optional (heavy-ball) momentum."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ScgError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.velocity: dict[str, np.ndarray] = {}

    def _update(self, name, g, p):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.velocity.get(name)
            v = g.copy() if v is None else self.momentum * v + g
            self.velocity[name] = v
            g = v
        return self.lr * g

    def state_dict(self):
        out = super().state_dict()
        out.update({f"velocity/{k}": v for k, v in self.velocity.items()})
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.velocity = {k.removeprefix("velocity/"): np.array(v) for k, v in state.items()
                         if k.startswith("velocity/")}


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction; ``weight_decay`` is decoupled (AdamW)."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ScgError(f"Adam betas must be in [0, 1), got {betas!r}")
        self.betas = (float(b1), float(b2))
        self.eps = eps
        self.weight_decay = weight_decay
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def _update(self, name, g, p):
        b1, b2 = self.betas
        m = self.m.get(name)
        v = self.v.get(name)
        if m is None:
            m, v = np.zeros_like(p), np.zeros_like(p)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        self.m[name], self.v[name] = m, v
        m_hat = m / (1.0 - b1 ** self.t)
        v_hat = v / (1.0 - b2 ** self.t)
        update = self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        if self.weight_decay:
            update = update + self.lr * self.weight_decay * p
        return update

    def state_dict(self):
        out = super().state_dict()
        out.update({f"m/{k}": a for k, a in self.m.items()})
        out.update({f"v/{k}": a for k, a in self.v.items()})
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.m = {k.removeprefix("m/"): np.array(a) for k, a in state.items() if k.startswith("m/")}
        self.v = {k.removeprefix("v/"): np.array(a) for k, a in state.items() if k.startswith("v/")}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make(name: str, lr: float, **kwargs) -> Optimizer:
    """``make("adam", 1e-4)``: an optimiser by name."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ScgError(f"unknown optimiser {name!r}; expected one of {', '.join(OPTIMIZERS)}") from None
    return cls(lr, **kwargs)
