"""``scg.compile``: a model graph -> a callable gradient estimator.

>>> import numpy as np, scg
>>> g = scg.Graph("coin")
>>> with g:
...     phi = scg.param("phi", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=phi))
...     _ = scg.cost("c", (b - 0.45) ** 2)
>>> est = scg.compile(g, estimator="reinforce", backend="numpy")
>>> out = est({"phi": np.array(0.0)}, {}, seed=1, n_samples=4)
>>> sorted(out.grads), out.samples["b"].shape
(['phi'], (4, 1))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scg import guards, learned_state
from scg.backends import numpy_ops
from scg.backends.registry import get_backend
from scg.errors import EstimatorError, InputError, ScgError
from scg.estimators.derive import derive
from scg.ir.graph import Graph
from scg.ir.node import Node


@dataclass
class Result:
    """One estimator call: ``grads`` estimates dJ/dparams; ``cost`` is the sampled mean total cost."""

    grads: dict[str, np.ndarray]
    cost: float
    costs: dict[str, float]
    samples: dict[str, np.ndarray]
    n_rows: int
    n_samples: int
    objective: float | None = None   # objective="iwae": this call's K-sample objective (mean over rows of -L)
    hessian: dict[tuple[str, str], np.ndarray] | None = None  # estimator="dice", order=2 (scg.compiled_dice)
    hvp: dict[str, np.ndarray] | None = None                   # est.hvp(...) of a dice estimator

    def __repr__(self) -> str:
        grads = ", ".join(f"{k}{list(v.shape)}" for k, v in self.grads.items())
        return (f"Result(cost={self.cost:.6g}, rows={self.n_rows}, n_samples={self.n_samples}, "
                f"grads=[{grads}], samples=[{', '.join(self.samples)}])")


@dataclass
class Run:
    """Phase 1 of a two-phase call: samples drawn, external costs still to come."""

    estimator: CompiledEstimator
    params: Mapping[str, np.ndarray]
    inputs: Mapping[str, np.ndarray]
    call: dict[str, Any]
    values: dict[int, np.ndarray]
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)   # the baselines the draws were made with
    n_rows: int = 0
    finished: bool = False

    def grads(self, external: Mapping[str, np.ndarray]) -> Result:
        """Phase 2: supply every external cost (``(B,)``, or ``(K, B)`` with n_samples=K).

        Calling it again (e.g. with other costs) recomputes from the same draws and the same
        baselines; the EMA baseline advances once per run, on the first call.
        """
        return self.estimator._finish(self, external)


class CompiledEstimator:
    """A derived estimator bound to a backend. Call it, or ``sample`` then ``grads``.

    ``ir`` is the estimator graph (print it); ``model`` the user's graph;
    ``assignment`` says which estimator serves each stochastic node; ``state``
    holds the EMA baselines and REBAR/RELAX control variates with their Adam moments
    (``reset_baseline()`` restarts them).
    """

    def __init__(self, model: Graph, estimator, backend: str, baseline: str | None, precision: str,
                 ema_decay: float, check_finite: bool = True, derived=None, objective: str = "mean",
                 options=None, n_samples: int | None = None):
        if not 0.0 <= ema_decay < 1.0:
            raise ScgError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        self.model = model
        self.backend = backend
        self.precision = precision
        self.ema_decay = ema_decay
        self.check_finite = check_finite
        self.n_samples = _default_draws(n_samples, objective, estimator)
        if derived is None:  # a subclass may bring its own derivation (scg.compiled_dice)
            derived = derive(model, estimator, baseline, objective, options)
        self.ir = derived.graph
        self.assignment = derived.assignment
        self.objective = getattr(derived, "objective", "mean")
        self.options = dict(getattr(derived, "options", None) or {})
        self.unbiased = getattr(derived, "unbiased", True)  # False for concrete / gumbel_st (they warn)
        self.baseline = baseline
        self.program = self._bind(self.ir)
        self.state: dict[str, np.ndarray] = {}
        self._ema_seen: set[str] = set()
        self._cv = learned_state.LearnedState(getattr(derived, "cv_state", None) or {}, self.options.get("cv_lr", 0.0))
        self._cv.reset(self.state)

    def _bind(self, ir: Graph):
        program = get_backend(self.backend)(ir, self.precision)
        # check_finite=False also switches off the backends' distribution-argument checks
        return program if self.check_finite else _Unchecked(program)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in self.assignment.items())
        return (f"<scg estimator for {self.model.name!r} ({kinds}); backend={self.backend!r}, "
                f"baseline={self.baseline!r}, precision={self.precision!r}>")

    @property
    def plan(self):
        """The backend's fused kernel plan (None for the numpy interpreter)."""
        return self.program.plan

    @property
    def source(self) -> str | None:
        """Generated kernel source (None for the numpy interpreter)."""
        return self.program.source

    def llvm(self, kernel: str | None = None) -> str:
        """LLVM IR of a generated kernel (compiled backends only)."""
        return self.program.llvm(kernel)

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore EMA baselines (e.g. ``other.state`` or a checkpoint's); later calls continue from them.

        Refuses (``ScgError``) anything but finite numbers under this estimator's baseline names.
        """
        known = {k.removeprefix("ema/"): node.shape for k, node in self.ir.outputs.items() if k.startswith("ema/")}
        known.update(self._cv.shapes())
        state = guards.check_state(state, known)
        self.reset_baseline()
        learned = self._cv.shapes()
        for name, value in state.items():
            self.state[name] = np.asarray(value, dtype=np.float64)
            if name not in learned:
                self._ema_seen.add(name)

    def reset_baseline(self) -> None:
        """Clear the EMA baselines; REBAR/RELAX control variates (and their Adam moments) restart too."""
        self.state.clear()
        self._ema_seen.clear()
        self._cv.reset(self.state)

    def _state(self) -> dict[str, np.ndarray]:
        names = [k.removeprefix("ema/") for k in self.ir.outputs if k.startswith("ema/")]
        out = {n: self.state.get(n, np.zeros(())) for n in names}
        out.update({k: self.state[k] for k in self._cv.init})
        return out

    def sample(self, params, inputs, *, seed: int = 0, n_samples: int | None = None) -> Run:
        """Draw the samples (phase 1); ``run.grads(external=...)`` finishes the call."""
        self._finite(params, inputs)
        n_samples = self._check_draws(n_samples)
        guards.check_call_size(self.ir, inputs, n_samples, self.precision)
        call = {"seed": seed, "n_samples": n_samples}
        state = self._state()
        with guards.out_of_memory(n_samples):
            values = self.program.run(params, inputs, state=state, stop_at_external=True, **call)
        rows = next(values[n.uid].shape[0] for n in self.ir.nodes if n.batched and n.uid in values) // n_samples
        run = Run(self, params, inputs, call, values, state=state, n_rows=rows)
        run.samples = self._samples(values, n_samples)
        return run

    def __call__(self, params, inputs, *, seed: int = 0, n_samples: int | None = None) -> Result:
        if self.model.external_costs:
            names = ", ".join(self.model.external_costs)
            raise InputError(f"graph {self.model.name!r} has external costs ({names}); call "
                             "run = est.sample(params, inputs, seed=...) and then run.grads(external={...})")
        self._finite(params, inputs)
        n_samples = self._check_draws(n_samples)
        guards.check_call_size(self.ir, inputs, n_samples, self.precision)
        call = {"seed": seed, "n_samples": n_samples}
        with guards.out_of_memory(n_samples):
            values = self.program.run(params, inputs, state=self._state(), **call)
        return self._result(values, n_samples)

    def _finish(self, run: Run, external: Mapping[str, np.ndarray]) -> Result:
        guards.check_external(self.model, external, run.n_rows, run.call["n_samples"], self.check_finite)
        overrides = {n: run.values[n.uid] for n in self.ir.nodes if n.uid in run.values}
        values = self.program.run(run.params, run.inputs, external=dict(external), state=run.state,
                                  overrides=overrides, **run.call)
        first, run.finished = not run.finished, True
        return self._result(values, run.call["n_samples"], update_ema=first)

    def _check_draws(self, n_samples):
        """The call's draws per row: ``n_samples``, else the compiled default; K >= 2 under objective='iwae'."""
        if n_samples is None:
            n_samples = self.n_samples
        if self.objective == "iwae" and isinstance(n_samples, (int, np.integer)) and n_samples < 2:
            # K = 1 draw makes the K-sample bound the plain objective and VIMCO's signal undefined
            raise InputError(f"objective='iwae' is the K-sample bound: call with n_samples=K >= 2 draws per row "
                             f"(got n_samples={n_samples})")
        return n_samples

    def _finite(self, params, inputs) -> None:
        """An empty batch is an error; so is NaN/inf in params or inputs unless ``check_finite=False``.

        ``check_finite`` also switches the backends' distribution-argument checks (probs in
        [0, 1], NaN logits, a Normal's scale > 0): off, NaN flows through to the results.
        """
        if not isinstance(params, Mapping) or not isinstance(inputs, Mapping):
            return  # the backend's bind() names the problem
        for name, value in inputs.items():
            shape = _shape_or_none(value)
            if name in self.model.inputs and shape and shape[0] == 0:
                raise InputError(f"input {name!r} has 0 rows: the objective is a mean over rows, so a batch "
                                 "needs at least one row")
        if not self.check_finite:
            return
        for kind, arrays in (("param", params), ("input", inputs)):
            for name, value in arrays.items():
                arr = _array_or_none(value)
                if arr is not None and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                    raise InputError(f"{kind} {name!r} has {bad} non-finite value(s) (NaN or inf); "
                                     "pass finite values, or compile with check_finite=False to allow them")

    def _samples(self, values: dict[int, np.ndarray], k: int) -> dict[str, np.ndarray]:
        out = {}
        for key, node in self.ir.outputs.items():
            if key.startswith("sample/") and node.uid in values:
                out[key.removeprefix("sample/")] = _per_draw(values[node.uid], k)
        return out

    def _result(self, values: dict[int, np.ndarray], k: int, update_ema: bool = True) -> Result:
        outs: dict[str, Node] = self.ir.outputs
        grads, costs = {}, {}
        for key, node in outs.items():
            if key.startswith("grad/"):
                grads[key.removeprefix("grad/")] = np.array(values[node.uid])
            elif key.startswith("cost/"):
                costs[key.removeprefix("cost/")] = float(np.mean(values[node.uid]))
            elif key.startswith("ema/") and update_ema:
                self._update_ema(key.removeprefix("ema/"), values[node.uid])
        if update_ema:  # one Adam step on the control variates per call (cvgrad/ outputs exist when cv_lr > 0)
            self._cv.step(self.state, {k.removeprefix("cvgrad/"): values[n.uid] for k, n in outs.items()
                                       if k.startswith("cvgrad/")})
        rows = next((values[node.uid].shape[0] // k for key, node in outs.items() if key.startswith("cost/")), 1)
        objective = float(values[outs["objective"].uid]) if "objective" in outs else None
        return Result(grads=grads, cost=float(values[outs["cost"].uid]), costs=costs,
                      samples=self._samples(values, k), n_rows=rows, n_samples=k, objective=objective)

    def _update_ema(self, name: str, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.float64)
        if name not in self._ema_seen:
            self.state[name] = value
            self._ema_seen.add(name)
        else:
            self.state[name] = self.ema_decay * self.state[name] + (1.0 - self.ema_decay) * value


class _Unchecked:
    """A backend program whose runs skip the distribution-argument checks (``check_finite=False``)."""

    def __init__(self, inner):
        self.inner = inner

    def run(self, *args, **kwargs):
        token = numpy_ops.ARGUMENT_CHECKS.set(False)
        try:
            return self.inner.run(*args, **kwargs)
        finally:
            numpy_ops.ARGUMENT_CHECKS.reset(token)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _default_draws(n_samples, objective: str, estimator) -> int:
    """``compile(n_samples=K)``: the draws per row of calls that do not pass their own."""
    if n_samples is None:
        return 1  # under objective='iwae' a call must then say n_samples=K >= 2 itself
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"n_samples must be a positive int, got {n_samples!r}")
    if objective == "iwae" and n_samples < 2:
        who = f"estimator {estimator!r}" if isinstance(estimator, str) else "the estimator"
        raise EstimatorError(f"{who} with objective='iwae' estimates the K-sample bound, which needs "
                             f"n_samples=K >= 2 draws per row (got n_samples={n_samples})")
    return int(n_samples)


def _array_or_none(value) -> np.ndarray | None:
    """``value`` as an array, or None where NumPy refuses it (ragged lists: bind() reports those)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        return None


def _shape_or_none(value) -> tuple[int, ...] | None:
    arr = value if isinstance(value, np.ndarray) else _array_or_none(value)
    return None if arr is None else arr.shape


def _per_draw(value: np.ndarray, k: int) -> np.ndarray:
    """``(K*B, ...)`` draw-major -> ``(B, ...)`` for K = 1, ``(K, B, ...)`` otherwise."""
    if k == 1:
        return value
    return value.reshape((k, value.shape[0] // k) + value.shape[1:])


def compile(graph: Graph, estimator="scg", backend: str = "numpy", baseline: str | None = None, *,
            precision: str = "float64", ema_decay: float = 0.9, check_finite: bool = True, order: int = 1,
            objective: str = "mean", options: Mapping[str, Any] | None = None,
            n_samples: int | None = None) -> CompiledEstimator:
    """Derive ``graph``'s gradient estimator as IR and bind it to a backend.

    ``estimator``: ``"reinforce"``, ``"scg"``, ``"muprop"``, ``"hnca"``, ``"arm"``,
    ``"disarm"``, ``"vimco"`` (with ``objective="iwae"``), ``"rebar"``, ``"relax"`` (learned
    control variates in ``est.state``, one Adam step per call), ``"concrete"``, ``"gumbel_st"``
    (biased: they warn, ``est.unbiased`` is False), or a dict ``{"default": ..., "<node>": ...}``.
    ``objective``: ``"mean"`` (``J = E[mean over rows of the total cost]``) or ``"iwae"``
    (``E[mean over rows of -log mean_k exp(-C_k)]`` over the ``n_samples=K >= 2`` draws).
    ``options``: estimator settings, e.g. ``{"temperature": 0.5}`` for the relaxed ones,
    ``{"cv_lr": 1e-3, "eta": 1.0, "lambda": 0.5, "cv_hidden": (10,)}`` for REBAR/RELAX.
    ``n_samples``: default draws per row for calls that do not pass ``n_samples``
    (default 1; ``objective="iwae"`` refuses fewer than 2, so say K here or in each call). ``baseline``: None, ``"ema"`` or ``"loo"``
    (leave-one-out across ``n_samples`` draws of a row; needs ``n_samples >= 2``).
    ``precision``: ``"float64"`` (default) or ``"float32"``. ``ema_decay``: the EMA
    baseline's decay. ``check_finite``: refuse NaN/inf in params and inputs (default).
    ``estimator="dice"`` (Foerster et al. 2018) with ``order=2`` also estimates the
    Hessian (``out.hessian[(p, q)]``, ``est.hvp``; see `scg.compiled_dice`).
    """
    guards.check_compile_args(graph, backend, ema_decay)
    if estimator == "dice" or order != 1:
        from scg.compiled_dice import compile_dice, refuse_order  # the higher-order layer sits above this one
        if estimator != "dice":
            refuse_order(estimator, order)
        return compile_dice(graph, backend, baseline, precision, ema_decay, check_finite, order, options)
    # options are checked by the derivation (scg.estimators.zoo): unknown keys are an error
    return CompiledEstimator(graph, estimator, backend, baseline, precision, ema_decay, check_finite,
                             objective=objective, options=options, n_samples=n_samples)
