"""Shared pieces of the SBN-VAE step benchmark: model, estimators, data, parameters.

The model is the linear one-layer sigmoid-belief-net VAE of ``examples/sbn_zoo.py``
(``--model linear``; the ARM/DisARM papers' linear SBN): 784 binarised pixels ->
200 Bernoulli latents ``z`` (logits ``l = x @ enc_W + enc_b``) -> Bernoulli pixels
(logits ``z @ dec_W + dec_b``), a learned factorised prior (``prior_logits``), and the
per-row cost ``f(z) = -log p(x|z) - log p(z) + log q(z|x)``, the negative ELBO.
Every implementation (scg, PyTorch, JAX) gets the same float32 parameters (scg's
``init_params(seed=0)``) and the same binarised MNIST rows.

Noise convention shared by all implementations (it is scg's: ``numpy_zoo.noise_uniform``):
one uniform ``u`` per (draw, row, unit), rows draw-major (row ``d * B + r`` is draw ``d``
of input row ``r``); ``z = 1[u < sigmoid(l)]``; the antithetic partner of ARM/DisARM is
``1[1 - u < sigmoid(l)]``; the relaxations use ``sigmoid((l + log(1 - u) - log u) / tau)``,
whose hard value is ``z``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HIDDEN, TAU = 200, 0.5

# label -> (scg estimator, scg compile kwargs, draws per row K); the comparators use the label
ESTIMATORS = {
    "rloo": ("reinforce", {"baseline": "loo"}, 2),
    "muprop": ("muprop", {}, 1),
    "hnca": ("hnca", {}, 1),
    "arm": ("arm", {}, 1),
    "disarm": ("disarm", {}, 1),
    "vimco": ("vimco", {"objective": "iwae"}, 5),
    "concrete": ("concrete", {"options": {"temperature": TAU}}, 1),
    "gumbel_st": ("gumbel_st", {"options": {"temperature": TAU}}, 1),
}


def sbn_zoo():
    """``examples/sbn_zoo.py`` as a module (the model is defined once, there)."""
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import sbn_zoo

    return sbn_zoo


def build_graph(hidden: int = HIDDEN, n_pixels: int = 784):
    return sbn_zoo().build_linear(hidden, np.full(n_pixels, 0.3))


def init_params(hidden: int = HIDDEN, n_pixels: int = 784, dtype=np.float32) -> dict[str, np.ndarray]:
    g = build_graph(hidden, n_pixels)
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in g.init_params(seed=0).items()}


def load_rows(n_rows: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n_rows`` binarised MNIST training images (float32 0/1), cycling through the set if needed."""
    import scg

    data = scg.datasets.load_mnist()
    rng = np.random.default_rng(seed)
    idx = np.resize(rng.permutation(len(data.x_train)), n_rows)
    x = scg.datasets.binarize(data.x_train[idx], rng).astype(np.float32)
    return np.ascontiguousarray(x), repr(data)


def compile_scg(label: str, backend: str = "numba", precision: str = "float32", hidden: int = HIDDEN):
    import warnings

    import scg

    name, kwargs, _k = ESTIMATORS[label]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)  # concrete / gumbel_st: biased, we know
        return scg.compile(build_graph(hidden), estimator=name, backend=backend, precision=precision, **kwargs)


def scg_noise(params, x, seed: int, k: int, precision: str = "float64") -> np.ndarray:
    """The uniforms scg's sampler of ``z`` draws at ``seed`` (``(k * rows, hidden)``, draw-major).

    Read from the DisARM estimator's IR (its ``u.z`` node is ``noise_uniform[site=z]``, the
    very uniform of ``z``'s sampler), evaluated by the NumPy reference interpreter.
    """
    from scg.backends.numpy_ref import evaluate

    est = compile_scg("disarm", backend="numpy", precision=precision, hidden=params["enc_b"].shape[0])
    (u_node,) = [n for n in est.ir.nodes if n.name == "u.z"]
    return evaluate(est.ir, params, {"x": x}, seed=seed, n_samples=k, precision=precision)[u_node.uid]


def reference(label: str, params, x, seed: int, precision: str = "float64"):
    """scg's NumPy reference run of ``label``, its noise ``u`` and samples ``z`` as draw-major rows.

    Checks that ``u`` reproduces scg's samples (``z = 1[u < sigmoid(l)]``) before anyone uses it.
    """
    k = ESTIMATORS[label][2]
    hidden = params["enc_b"].shape[0]
    out = compile_scg(label, backend="numpy", precision=precision, hidden=hidden)(
        params, {"x": x}, seed=seed, n_samples=k)
    u = scg_noise(params, x, seed, k, precision)
    z = out.samples["z"].reshape(k * x.shape[0], hidden)   # (K, rows, units) -> draw-major rows
    logits = np.tile(x @ params["enc_W"] + params["enc_b"], (k, 1)).astype(np.float64)
    if not np.array_equal((u < 1 / (1 + np.exp(-logits))).astype(z.dtype), z):
        raise AssertionError(f"{label}: scg's noise_uniform does not reproduce its samples")
    return out, u, z


def rel_err(grads, ref) -> tuple[float, str]:
    """``max |g - g_ref| / max |g_ref|`` over the parameters, and the worst parameter."""
    err = {k: float(np.abs(np.asarray(grads[k], dtype=np.float64) - ref[k]).max() / (np.abs(ref[k]).max() + 1e-300))
           for k in ref}
    worst = max(err, key=err.get)
    return err[worst], worst
