"""Training loops for compiled estimators: ``scg.train``, history, checkpoints.

The whole loop is short enough to write by hand, and this is the idiom
``scg.train`` implements (minibatches, one estimator call per step, an
optimiser step on the params dict; the compiled estimator keeps its EMA
baseline state across calls)::

    est = scg.compile(g, estimator="hnca", baseline="ema")
    params, opt = g.init_params(seed=0), scg.optim.Adam(1e-3)
    for step, batch in enumerate(batches):
        out = est(params, batch, seed=step)             # one-phase (in-graph costs)
        # two-phase (external costs):  run = est.sample(params, batch, seed=step)
        #                              out = run.grads(external={"neg_reward": R(run.samples)})
        opt.step(params, out.grads)

``scg.train`` adds seeding, epochs over a dataset, a ``tqdm`` progress bar
with the running cost, periodic evaluation, a per-step metrics
:class:`History` and ``.npz`` checkpoints:

>>> import numpy as np, scg
>>> g = scg.Graph("coin")
>>> with g:
...     phi = scg.param("phi", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=phi))
...     _ = scg.cost("c", (b - 0.45) ** 2)
>>> est = scg.compile(g, estimator="hnca")
>>> params = {"phi": np.array(0.0)}
>>> hist = scg.train(est, params, [{}], scg.optim.SGD(1.0), steps=50, progress=False)
>>> len(hist), float(params["phi"]) < 0     # pushes P(b = 1) down: (0 - .45)^2 < (1 - .45)^2
(50, True)
"""

from __future__ import annotations

import csv
import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scg.errors import ScgError
from scg.guards import check_int
from scg.optim import Optimizer, _check_param

Batch = Mapping[str, np.ndarray]


class TrainingDiverged(ScgError):
    """Training stopped at ``step``: a cost, gradient or parameter became NaN or infinite.

    ``history`` holds the steps completed before it; ``params`` are left as they were after the
    last good step (the diverging update is not applied when the cost or gradient is not finite).
    """

    def __init__(self, message: str, step: int, history: History):
        super().__init__(message)
        self.step = step
        self.history = history


@dataclass
class History:
    """Per-step records (``step``, ``epoch``, ``cost``, ``cost/<name>``, ``grad_norm``, ``seconds``)
    and evaluation records (``step`` plus whatever the ``evaluate`` callback returned)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def column(self, key: str, *, evals: bool = False) -> np.ndarray:
        rows = self.evals if evals else self.steps
        return np.array([r.get(key, np.nan) for r in rows], dtype=np.float64)

    def to_dict(self) -> dict[str, list[dict[str, float]]]:
        return {"steps": self.steps, "evals": self.evals}

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def save_csv(self, path: str | Path, *, evals: bool = False) -> None:
        rows = self.evals if evals else self.steps
        keys: list[str] = []
        for r in rows:
            keys.extend(k for k in r if k not in keys)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


def step_seed(seed: int, step: int) -> int:
    """The estimator seed of one training step: a hash of (seed, step), so runs are reproducible."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def dataset_batches(dataset, batch_size: int, *, seed: int = 0, binarized: bool = True,
                    fields: tuple[str, str] = ("x", "y")) -> Callable[[int], Iterable[dict[str, np.ndarray]]]:
    """``epoch -> minibatches`` of ``{"x": ..., "y": ...}`` from an ``scg.datasets.Dataset``.

    Shuffling and dynamic binarisation are seeded by ``(seed, epoch)``, so a
    resumed run sees the same data as an uninterrupted one.
    """
    fx, fy = fields

    def epoch_batches(epoch: int):
        rng = np.random.default_rng([int(seed), int(epoch)])
        for xb, yb in dataset.batches(batch_size, rng, binarized=binarized):
            yield {fx: xb, fy: yb}

    return epoch_batches


def _graph_inputs(est, batch: Batch) -> dict[str, np.ndarray]:
    names = est.model.inputs
    return {k: v for k, v in batch.items() if k in names}


def _progress(progress: bool | None, total: int | None, desc: str | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=True)


def train(est, params: dict[str, np.ndarray], data, optimizer: Optimizer, *, epochs: int | None = None,
          steps: int | None = None, external: Callable[[Batch, dict[str, np.ndarray]], Mapping[str, Any]] | None = None,
          seed: int = 0, n_samples: int = 1, evaluate: Callable[[dict[str, np.ndarray], int], Mapping[str, float]]
          | None = None, eval_every: int | None = None, progress: bool | None = None, desc: str | None = None,
          history: History | None = None, start_step: int = 0, callback: Callable[[int, Any], None] | None = None,
          ) -> History:
    """Train ``params`` in place with ``optimizer`` on ``est``'s gradient estimates.

    * ``data``: a callable ``epoch -> iterable of batches`` (e.g.
      :func:`dataset_batches`) or a re-iterable of batches (a list), each batch a
      dict of arrays; keys that are not graph inputs (e.g. labels used only by
      ``external``) are kept out of the estimator call.
    * ``epochs`` and/or ``steps`` bound the run (at least one is needed).
    * ``external(batch, samples) -> {name: per-row cost}`` makes each step a
      two-phase call (``est.sample`` then ``run.grads(external=...)``); it is
      required when the graph has external costs.
    * ``seed``: step ``t`` calls the estimator with ``step_seed(seed, t)``.
    * ``evaluate(params, step) -> {metric: value}`` runs every ``eval_every``
      steps and at the end; the results go to ``history.evals`` and the bar.
    * ``progress``: a tqdm bar with the running cost; ``None`` shows it only on
      a terminal.
    * ``callback(step, result)`` after each optimiser step.
    """
    if epochs is None and steps is None:
        raise ScgError("train needs epochs=..., steps=... or both")
    _check_train_args(params, epochs, steps, seed, start_step)
    if est.model.external_costs and external is None:
        names = ", ".join(est.model.external_costs)
        raise ScgError(f"graph {est.model.name!r} has external costs ({names}): pass "
                       "external=lambda batch, samples: {name: per_row_cost}")
    hist = history if history is not None else History()
    epoch_data = data if callable(data) else (lambda epoch: data)
    total = steps
    bar = _progress(progress, total, desc)
    step, epoch, running = start_step, 0, None
    last_eval = None

    def show_postfix(refresh: bool) -> None:
        post = {} if running is None else {"cost": f"{running:.4g}"}
        if hist.evals and evaluate is not None:
            post.update({k: f"{v:.4g}" for k, v in hist.evals[-1].items() if k != "step"})
        bar.set_postfix(post, refresh=refresh)

    def do_eval() -> None:
        nonlocal last_eval
        if evaluate is None or last_eval == step:
            return
        metrics = {"step": step, **{k: float(v) for k, v in evaluate(params, step).items()}}
        hist.evals.append(metrics)
        last_eval = step
        show_postfix(refresh=False)

    try:
        do_eval()
        while (epochs is None or epoch < epochs) and (steps is None or step - start_step < steps):
            n_in_epoch = 0
            for batch in epoch_data(epoch):
                if steps is not None and step - start_step >= steps:
                    break
                if not isinstance(batch, Mapping):
                    raise ScgError(f"train: batch {n_in_epoch} of epoch {epoch} is a {type(batch).__name__}; each "
                                   "batch must be a dict of input name -> array (e.g. {'x': X, 'y': Y})")
                t0 = time.perf_counter()
                inputs = _graph_inputs(est, batch)
                s = step_seed(seed, step)
                if external is not None:
                    run = est.sample(params, inputs, seed=s, n_samples=n_samples)
                    out = run.grads(external=dict(external(batch, run.samples)))
                else:
                    out = est(params, inputs, seed=s, n_samples=n_samples)
                gnorm = _global_norm(out.grads.values())
                _check_diverged(step, out, gnorm, params, hist, before=True)
                optimizer.step(params, out.grads)
                _check_diverged(step, out, gnorm, params, hist, before=False)
                step += 1
                n_in_epoch += 1
                rec = {"step": step, "epoch": epoch, "cost": out.cost, "grad_norm": gnorm,
                       **{f"cost/{k}": v for k, v in out.costs.items()}, "seconds": time.perf_counter() - t0}
                hist.steps.append(rec)
                running = out.cost if running is None else 0.98 * running + 0.02 * out.cost
                if callback is not None:
                    callback(step, out)
                bar.update(1)
                show_postfix(refresh=False)
                if eval_every and step % eval_every == 0:
                    do_eval()
            if n_in_epoch == 0:
                if epoch == 0:
                    raise ScgError("train: the data gave no batches")
                break
            epoch += 1
        do_eval()
        show_postfix(refresh=True)
    finally:
        bar.close()
    return hist


def _check_train_args(params, epochs, steps, seed, start_step) -> None:
    if not isinstance(params, dict):
        raise ScgError(f"train: params must be a dict of name -> float array (updated in place), got "
                       f"{type(params).__name__}")
    for name, p in params.items():
        _check_param("train", name, p)
    for what, value in (("epochs", epochs), ("steps", steps)):
        if value is not None:
            check_int(f"train: {what}", value, low=0)
    check_int("train: seed", seed, low=0)
    check_int("train: start_step", start_step, low=0)


def _global_norm(arrays) -> float:
    """sqrt(sum of squares) over all arrays, scaled so that large finite values do not overflow."""
    arrays = [b for b in (np.asarray(a, dtype=np.float64) for a in arrays) if b.size]
    if not arrays:
        return 0.0
    scale = max(float(np.max(np.abs(a))) for a in arrays)
    if not np.isfinite(scale):
        return float("nan") if any(np.isnan(a).any() for a in arrays) else float("inf")
    if scale == 0.0:
        return 0.0
    return scale * float(np.sqrt(sum(float(np.sum(np.square(a / scale))) for a in arrays)))


def _check_diverged(step: int, out, gnorm: float, params, hist: History, *, before: bool) -> None:
    """Stop at the first non-finite cost or gradient (before the update) or parameter (after it)."""
    if before:
        if np.isfinite(out.cost) and np.isfinite(gnorm):
            return
        what = (f"the sampled cost is {out.cost}" if not np.isfinite(out.cost) else
                "the gradient of " + ", ".join(repr(k) for k, g in out.grads.items() if not np.all(np.isfinite(g)))
                + " is not finite")
        raise TrainingDiverged(f"training diverged at step {step}: {what}; the update was not applied (lower "
                               "the learning rate, or check the costs for NaN)", step, hist)
    bad = [k for k, p in params.items() if not np.all(np.isfinite(p))]
    if bad:
        raise TrainingDiverged(f"training diverged at step {step}: after the optimiser step, parameter(s) "
                               f"{', '.join(map(repr, bad))} hold NaN or inf (gradient norm {gnorm:.3g}; lower the "
                               "learning rate)", step, hist)


# ----------------------------------------------------------------- checkpoints


def _npz(path: str | Path, *, reading: bool) -> Path:
    """``ck`` and ``ck.npz`` name the same file (NumPy's savez appends the suffix); refuse a missing dir."""
    try:
        path = Path(path)
    except TypeError:
        raise ScgError(f"checkpoint path must be a str or Path, got {type(path).__name__}") from None
    if reading and path.is_file():
        return path
    full = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    if reading and not full.is_file():
        raise ScgError(f"no checkpoint at {str(path)!r}" + (f" (nor {str(full)!r})" if full != path else ""))
    if not reading and not full.parent.is_dir():
        raise ScgError(f"cannot write {str(full)!r}: directory {str(full.parent)!r} does not exist")
    return full


def _save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    full = _npz(path, reading=False)
    try:
        np.savez(full, **arrays)
    except OSError as e:
        raise ScgError(f"cannot write {str(full)!r}: {e.strerror or e}") from None


def _load_npz(path: str | Path) -> dict[str, np.ndarray]:
    full = _npz(path, reading=True)
    try:
        with np.load(full, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("it holds a single array, not named arrays")
            return {k: np.array(f[k]) for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).split(". ")[0]  # not NumPy's advice to load pickles
        raise ScgError(f"{str(full)!r} is not a readable scg .npz file ({type(e).__name__}: {reason})") from None


def save_params(path: str | Path, params: Mapping[str, np.ndarray]) -> None:
    """Write ``params`` to an ``.npz`` file (one array per parameter)."""
    _save_npz(path, {k: np.asarray(v) for k, v in params.items()})


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    """Read a params dict written by :func:`save_params`."""
    return _load_npz(path)


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    step: int
    meta: dict[str, Any]


def save_checkpoint(path: str | Path, params: Mapping[str, np.ndarray], *, optimizer: Optimizer | None = None,
                    estimator=None, step: int = 0, **meta: Any) -> None:
    """Params, optimiser moments, the estimator's EMA baselines, the step and JSON ``meta`` in one ``.npz``."""
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    if optimizer is not None:
        arrays.update({f"opt/{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    if estimator is not None:
        arrays.update({f"ema/{k}": np.asarray(v) for k, v in estimator.state.items()})
    arrays["step"] = np.array(step)
    arrays["meta"] = np.array(json.dumps(meta))
    _save_npz(path, arrays)


def load_checkpoint(path: str | Path, *, optimizer: Optimizer | None = None, estimator=None) -> Checkpoint:
    """Read a checkpoint; restores ``optimizer`` and ``estimator`` baseline state in place if given."""
    data = _load_npz(path)

    def part(prefix):
        return {k.removeprefix(prefix): v for k, v in data.items() if k.startswith(prefix)}

    try:
        ck = Checkpoint(part("param/"), part("opt/"), part("ema/"), int(data.get("step", 0)),
                        json.loads(str(data["meta"])) if "meta" in data else {})
    except (TypeError, ValueError) as e:
        raise ScgError(f"{str(path)!r} is not an scg checkpoint ({type(e).__name__}: {e})") from None
    if optimizer is not None:
        optimizer.load_state_dict(ck.optimizer)
    if estimator is not None:
        estimator.load_state(ck.baseline)
    return ck
