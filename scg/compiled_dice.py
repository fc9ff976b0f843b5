"""``scg.compile(g, estimator="dice", order=2)``: DiCE gradients, Hessian blocks and Hessian-vector products.

>>> import numpy as np, scg
>>> g = scg.Graph("toy")
>>> with g:
...     t = scg.param("t", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=t))
...     _ = scg.cost("c", (b + 0.5) * t * t)
>>> est = scg.compile(g, estimator="dice", order=2)
>>> out = est({"t": np.array(0.3)}, {}, seed=1, n_samples=20000)
>>> abs(float(out.hessian[("t", "t")]) - 2.438959) < 0.1   # exact: scg.exact(g, ..., order=2)
True
>>> hv = est.hvp({"t": np.array(0.3)}, {}, {"t": np.array(2.0)}, seed=1, n_samples=20000)
>>> bool(np.isclose(hv.hvp["t"], 2 * out.hessian[("t", "t")]))  # same seed, same samples
True

``out.hessian[(p, q)]`` (shape ``params[p].shape + params[q].shape``) is built as
IR for every pair of params when their total size is at most
``options={"max_hessian_size": ...}`` (default 64 elements): one reverse pass per
gradient component. Beyond that, use ``est.hvp(params, inputs, vector, seed=...)``:
one extra reverse pass whatever the size, compiled on first use.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from scg.compiled import CompiledEstimator, Result
from scg.errors import EstimatorError, InputError, ScgError, ScgWarning
from scg.estimators.dice import DEFAULT_MAX_HESSIAN_SIZE, derive_dice, total_param_size

OPTIONS = {"max_hessian_size": DEFAULT_MAX_HESSIAN_SIZE, "loaded_lambda": 1.0}


class HessianBlocks(dict):
    """``{(p, q): d2J/dp dq}``; a missing pair is an error that says why."""

    def __init__(self, blocks: Mapping[tuple[str, str], np.ndarray], why_missing: str):
        super().__init__(blocks)
        self.why_missing = why_missing

    def __missing__(self, key):
        raise ScgError(f"no Hessian block {key!r}: {self.why_missing}")


class DiceEstimator(CompiledEstimator):
    """DiCE (Foerster et al. 2018): ``grads``, and with ``order=2`` ``hessian`` blocks; ``hvp`` at any size."""

    def __init__(self, model, backend, baseline, precision, ema_decay, check_finite, order, options):
        options = _check_options(options)
        if order not in (1, 2):
            raise EstimatorError(f"dice: order must be 1 (gradient) or 2 (gradient and Hessian), got {order!r}")
        self.order = order
        self.max_hessian_size = options["max_hessian_size"]
        self.loaded_lambda = options["loaded_lambda"]
        if self.loaded_lambda != 1.0:
            warnings.warn(ScgWarning(f"dice with loaded_lambda={self.loaded_lambda:g} (Loaded DiCE, Farquhar et al. "
                                     "2019) is biased in every order: it discounts the credit of distant "
                                     "stochastic ancestors; est.unbiased is False"), stacklevel=4)
        self._hvp_program = None
        derived = derive_dice(model, baseline, order=order, max_hessian_size=self.max_hessian_size,
                              loaded_lambda=self.loaded_lambda)
        self.hessian_keys = dict(derived.hessian_keys)
        super().__init__(model, "dice", backend, baseline, precision, ema_decay, check_finite, derived=derived)
        self.unbiased = self.loaded_lambda == 1.0  # every order, for DiCE proper (Foerster et al. 2018, Thm 1)

    def _result(self, values, k, update_ema: bool = True):
        out = super()._result(values, k, update_ema=update_ema)
        if self.order == 2:
            blocks = {pq: np.array(values[self.ir.outputs[key].uid]) for key, pq in self.hessian_keys.items()}
            size = total_param_size(self.model)
            why = (f"the params have {size} elements in all, more than max_hessian_size={self.max_hessian_size}; "
                   "use est.hvp(params, inputs, vector, seed=...) or raise options={'max_hessian_size': ...}"
                   if size > self.max_hessian_size else f"the params are {', '.join(self.model.params)}")
            out.hessian = HessianBlocks(blocks, why)
        return out

    def hvp(self, params, inputs, vector: Mapping[str, Any], *, seed: int = 0, n_samples: int = 1,
            external: Mapping[str, Any] | None = None) -> Result:
        """DiCE estimate of the Hessian-vector product: ``out.hvp[q] = sum_p H[q, p] . vector[p]``.

        ``vector`` has one array per param (same shapes). With the same seed the
        samples are those of ``est(params, inputs, seed=...)``; a graph with
        external costs takes their values for those samples in ``external``
        (draw them first with ``est.sample``). The product is one extra reverse
        pass (no Hessian is formed), so it suits large params. It uses the EMA
        baselines (``baseline="ema"``) without updating them.
        """
        if self.model.external_costs and not external:
            names = ", ".join(self.model.external_costs)
            raise InputError(f"hvp: graph {self.model.name!r} has external costs ({names}); draw the samples "
                             "with run = est.sample(params, inputs, seed=s), then call est.hvp(params, inputs, "
                             "vector, seed=s, external={...}) with the costs of those samples")
        if self._hvp_program is None:
            derived = derive_dice(self.model, self.baseline, hvp_only=True, loaded_lambda=self.loaded_lambda)
            # reads the EMA baselines, never updates them: est(...) on the same samples already did
            derived.graph.outputs = {k: v for k, v in derived.graph.outputs.items() if not k.startswith("ema/")}
            self._hvp_ir, self._hvp_names = derived.graph, derived.hvp_vectors
            self._hvp_program = self._bind(self._hvp_ir)
        if not isinstance(vector, Mapping) or set(vector) != set(self._hvp_names):
            got = sorted(vector) if isinstance(vector, Mapping) else type(vector).__name__
            raise InputError(f"hvp: vector must be a dict with one array per param ({', '.join(self._hvp_names)}), "
                             f"got {got}")
        self._finite(params, inputs)
        merged = dict(params)
        for p, name in self._hvp_names.items():
            v = np.asarray(vector[p], dtype=np.float64)
            if v.shape != self.model.params[p].shape:
                raise InputError(f"hvp: vector[{p!r}] has shape {v.shape}, expected {self.model.params[p].shape} "
                                 f"(the shape of param {p!r})")
            merged[name] = v
        values = self._hvp_program.run(merged, inputs, state=self._state(), seed=seed, n_samples=n_samples,
                                       external=dict(external or {}))
        outs = self._hvp_ir.outputs
        ir, self.ir = self.ir, self._hvp_ir  # _result reads the grads and costs of the program that ran
        try:
            out = CompiledEstimator._result(self, values, n_samples)
        finally:
            self.ir = ir
        out.hvp = {p: np.array(values[outs[f"hvp/{p}"].uid]) for p in self._hvp_names}
        return out


def _check_options(options) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise EstimatorError(f"dice: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"dice takes {', '.join(OPTIONS)}")
    merged = {**OPTIONS, **options}
    size = merged["max_hessian_size"]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise EstimatorError(f"dice: max_hessian_size must be a non-negative int, got {size!r}")
    lam = merged["loaded_lambda"]
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)) or not 0.0 <= lam <= 1.0:
        raise EstimatorError(f"dice: loaded_lambda must be a number in [0, 1] (1 is DiCE), got {lam!r}")
    merged["loaded_lambda"] = float(lam)
    return merged


def compile_dice(graph, backend, baseline, precision, ema_decay, check_finite, order, options) -> DiceEstimator:
    return DiceEstimator(graph, backend, baseline, precision, ema_decay, check_finite, order, options)


def refuse_order(estimator, order) -> None:
    """Only DiCE's derivatives of every order are unbiased; say so instead of differentiating a surrogate twice."""
    raise EstimatorError(
        f"order={order!r} is supported by estimator='dice' only, got estimator={estimator!r}: the second "
        "derivative of a stop-gradient surrogate (score function, HNCA, MuProp) is a biased Hessian estimate "
        "(it drops the score-score and score-cost terms); use scg.compile(g, estimator='dice', order=2)")
