"""Check one generated graph against the oracle for every estimator configuration.

Outcomes per configuration: ``refused`` (an ScgError at compile time whose message
names a node of the graph: fine), ``ok`` (mean matches scg.exact), or a problem:

* ``raw exception at compile``: anything not an ScgError;
* ``refusal names no node``: an ScgError at compile time that names no node;
* ``unexpected refusal``: a refusal where none is due: the generator's graphs are
  all legal, so only a blackbox cost reading a param directly (no unbiased
  estimate exists) and MuProp/HNCA on a node they do not serve may be refused;
* ``internal error text``: a refusal worded from scg's inside (a lost name, an
  unnamed node, a pass-order assumption), i.e. a bug rather than a refusal;
* ``call-time failure``: any exception from a call after a successful compile;
* ``wrong mean``: worst |z| over gradient components above the threshold, or the
  joint Hotelling test rejects, confirmed on fresh seeds (two independent
  screens: a false alarm needs two tail events).

Rows: the oracle uses the spec's 2 rows; calls tile them (the objective is a
mean over rows, so tiling does not change it) to about 200 draws per call.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

import scg
from tests.estimators.oracle import hotelling_p, max_abs_z
from tests.fuzz.construct_graphs import (
    blackbox_param_reads,
    build,
    estimator_configs,
    external_numpy,
    quadrature_points,
)

DRAWS_PER_CALL = 200
INTERNAL_TEXT = re.compile(r"has no node named|an unnamed|should have been")


@dataclass
class Outcome:
    estimator: object
    status: str          # "ok", "refused", or the problem's symptom
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.status not in ("ok", "refused")


def names_a_node(message: str, graph) -> bool:
    names = set(graph.samples) | set(graph.params) | set(graph.costs) | set(graph.inputs)
    quoted = set(re.findall(r"'([^']+)'", message)) | set(re.findall(r'"([^"]+)"', message))
    return bool(names & quoted)


def refusal_allowed(spec, estimator, graph) -> bool:
    """A blackbox cost reading a param directly, or MuProp/HNCA serving some node (they may decline one)."""
    if blackbox_param_reads(graph):
        return True
    used = {estimator} if isinstance(estimator, str) else set(estimator.values())
    return bool(used & {"muprop", "hnca"})


@dataclass(frozen=True)
class OracleResult:
    """scg.exact's gradients, and (Normal nodes) a bound on their quadrature error per component."""
    grads: dict
    error: dict
    quadrature_points: int


def oracle(spec, *, tol: float = 1e-4) -> OracleResult:
    """scg.exact; with Normal nodes, the quadrature is refined (points doubled) until the gradients move by
    less than ``tol * (1 + |g|)`` or a cap, and the last move is kept as the error bound: a steep smooth
    integrand (tanh of tanh) converges slowly, and the check must not blame the estimator for it."""
    g, params, inputs = build(spec, oracle=True)
    q, cap = quadrature_points(spec)
    prev = scg.exact(g, params, inputs, quadrature_points=q)
    if not any(layer["kind"] == "normal" for layer in spec["layers"]):
        return OracleResult(prev.grads, {k: np.zeros_like(v) for k, v in prev.grads.items()}, 0)
    while True:
        q *= 2
        cur = scg.exact(g, params, inputs, quadrature_points=q)
        error = {k: np.abs(cur.grads[k] - prev.grads[k]) for k in cur.grads}
        if q >= cap or all(np.all(e <= tol * (1 + np.abs(cur.grads[k]))) for k, e in error.items()):
            return OracleResult(cur.grads, error, q)
        prev = cur


def _draws(est, spec, params, inputs, n_calls, seed):
    k = spec["n_samples"]
    reps = max(1, DRAWS_PER_CALL // (2 * k))
    tiled = {name: np.tile(v, (reps,) + (1,) * (np.ndim(v) - 1)) for name, v in inputs.items()}
    external = "external" in spec["costs"]
    out = {name: [] for name in params}
    for i in range(n_calls):
        if external:
            run = est.sample(params, tiled, seed=seed + 1000 * i, n_samples=k)
            res = run.grads(external={"external": external_numpy(spec, run.samples)})
        else:
            res = est(params, tiled, seed=seed + 1000 * i, n_samples=k)
        for name, g in res.grads.items():
            out[name].append(np.asarray(g, dtype=np.float64))
    return {name: np.stack(v) for name, v in out.items()}


def _z_with_oracle_error(samples, ex: OracleResult) -> dict:
    """(mean - exact) / sqrt(se^2 + quadrature error^2); inf for a noiseless component that is off."""
    zs = {}
    for k, arr in samples.items():
        mean, se = arr.mean(axis=0), arr.std(axis=0, ddof=1) / np.sqrt(len(arr))
        diff, err = mean - ex.grads[k], ex.error[k]
        scale = np.sqrt(se**2 + err**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            zs[k] = np.where(scale > 1e-12, diff / np.maximum(scale, 1e-300),
                             np.where(np.abs(diff) < 1e-9, 0.0, np.inf))
    return zs


def _verdict(samples, ex: OracleResult, threshold, alpha) -> tuple[bool, str]:
    zs = _z_with_oracle_error(samples, ex)
    worst = max_abs_z(zs)
    se = {k: v.std(axis=0, ddof=1) / np.sqrt(len(v)) for k, v in samples.items()}
    p = 1.0  # Hotelling assumes an exact target: only where the quadrature error is small against the noise
    if all(np.all(ex.error[k] <= 0.2 * se[k] + 1e-12) for k in samples):
        try:
            p = hotelling_p(samples, ex)
        except ValueError:  # more components than calls: the per-component screen alone
            p = 1.0
    name = max(zs, key=lambda k: float(np.max(np.abs(zs[k]))))
    mean = samples[name].mean(axis=0)
    detail = (f"max |z| = {worst:.2f} on {name} (mean {np.round(mean, 4).tolist()}, exact "
              f"{np.round(ex.grads[name], 4).tolist()}), Hotelling p = {p:.2g}")
    return worst < threshold and p > alpha, detail


def check_configuration(spec, estimator, ex, *, backend="numpy", n_calls=40, threshold=5.0, alpha=1e-4) -> Outcome:
    g, params, inputs = build(spec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scg.ScgWarning)
            est = scg.compile(g, estimator, backend=backend, baseline=spec["baseline"])
    except scg.ScgError as e:
        if INTERNAL_TEXT.search(str(e)):
            return Outcome(estimator, "internal error text", f"{type(e).__name__}: {e}")
        if not refusal_allowed(spec, estimator, g):
            return Outcome(estimator, "unexpected refusal", f"{type(e).__name__}: {e}")
        if names_a_node(str(e), g):
            return Outcome(estimator, "refused", f"{type(e).__name__}: {e}")
        return Outcome(estimator, "refusal names no node", f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - the point is to catch what should never escape
        return Outcome(estimator, "raw exception at compile", f"{type(e).__name__}: {e}")
    try:
        samples = _draws(est, spec, params, inputs, n_calls, seed=0)
        ok, detail = _verdict(samples, ex, threshold, alpha)
        if not ok:  # confirm on fresh seeds: a real bias fails again, a tail event does not
            ok, detail2 = _verdict(_draws(est, spec, params, inputs, 2 * n_calls, seed=7), ex, threshold, alpha)
            detail = f"{detail}; confirmation: {detail2}"
    except Exception as e:  # noqa: BLE001
        return Outcome(estimator, "call-time failure", f"{type(e).__name__}: {e}")
    return Outcome(estimator, "ok" if ok else "wrong mean", detail)


def check_spec(spec, *, backend="numpy", **kw) -> list[Outcome]:
    ex = oracle(spec)
    return [check_configuration(spec, e, ex, backend=backend, **kw) for e in estimator_configs(spec)]


def check_parity(spec, estimator, *, backend: str, n_calls: int = 2) -> Outcome:
    """A compiled backend against the NumPy spec on the same seeds: same refusal, same samples, same
    gradients (float64, to 1e-8). With the statistical check on numpy, this carries the oracle over."""
    g, params, inputs = build(spec)
    results = {}
    for be in ("numpy", backend):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scg.ScgWarning)
                est = scg.compile(g, estimator, backend=be, baseline=spec["baseline"])
        except scg.ScgError as e:
            results[be] = ("refused", f"{type(e).__name__}: {e}")
            continue
        except Exception as e:  # noqa: BLE001
            return Outcome(estimator, "raw exception at compile", f"{be}: {type(e).__name__}: {e}")
        try:
            results[be] = ("ran", _draws(est, spec, params, inputs, n_calls, seed=0))
        except Exception as e:  # noqa: BLE001
            return Outcome(estimator, "call-time failure", f"{be}: {type(e).__name__}: {e}")
    (kind_a, a), (kind_b, b) = results["numpy"], results[backend]
    if kind_a != kind_b or (kind_a == "refused" and a != b):
        return Outcome(estimator, "backend mismatch", f"numpy: {kind_a} {str(a)[:200]}; {backend}: {kind_b} "
                                                        f"{str(b)[:200]}")
    if kind_a == "refused":
        return Outcome(estimator, "refused", a)
    for name in a:
        if not np.allclose(a[name], b[name], rtol=1e-8, atol=1e-10):
            worst = float(np.max(np.abs(a[name] - b[name])))
            return Outcome(estimator, "backend mismatch", f"grad {name}: max |numpy - {backend}| = {worst:.3g}")
    return Outcome(estimator, "ok", f"{backend} matches numpy on {n_calls} calls")
