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
from scg.guards import check_number


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place and counts steps."""

    def __init__(self, lr: float):
        self.lr = check_number("learning rate", lr, low=0.0, low_open=True)
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in params if k not in grads]
        if missing:
            raise ScgError(f"{type(self).__name__}.step: no gradient for parameter(s) {', '.join(missing)}")
        for name, p in params.items():
            _check_param(f"{type(self).__name__}.step", name, p)
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


def _check_param(who: str, name: str, p) -> None:
    """Params are updated in place: they must be writeable float arrays."""
    if not isinstance(p, (np.ndarray, np.floating)) or p.dtype.kind != "f":  # a 0-d value is replaced, not updated
        got = f"dtype {p.dtype}" if isinstance(p, (np.ndarray, np.generic)) else type(p).__name__
        raise ScgError(f"{who}: parameter {name!r} must be a float ndarray (updated in place), got {got}; "
                       f"e.g. params[{name!r}] = np.asarray(value, dtype=float)")
    if p.ndim and not p.flags.writeable:
        raise ScgError(f"{who}: parameter {name!r} is a read-only array and is updated in place; pass a "
                       f"writeable copy (params[{name!r}] = params[{name!r}].copy())")


class SGD(Optimizer):
    """``p -= lr * (g + weight_decay * p)``, with optional (heavy-ball) momentum."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
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
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ScgError(f"Adam betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(check_number(f"Adam beta{i}", b, low=0.0, high=1.0, high_open=True)
                           for i, b in enumerate(betas, 1))
        self.eps = check_number("Adam eps", eps, low=0.0, low_open=True)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
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
