"""NumPy rules for the estimator composites: HNCA counterfactual likelihoods.

Registered into ``numpy_impls``. The HNCA rules are the specification of
``hnca_affine_delta`` / ``hnca_onehot_loglik`` (Young 2022, sec. 4): for a
Bernoulli parent ``u`` and a child with logits ``l = u @ W + rest``,

    delta_i = log L(u_i := 1) - log L(u_i := 0)
            = sum_j log pi_j(c_j | l_j + W_ij (1 - u_i)) - log pi_j(c_j | l_j - W_ij u_i)

evaluated over row chunks so the (rows x parents x children) tensor never
exists whole.
"""

from __future__ import annotations

import numpy as np

from scg.backends.numpy_ops import logsumexp, numpy_impls, softplus
from scg.ir.ops import Op

_CHUNK_ELEMENTS = 1 << 22  # rows per chunk * parents * children


def _chunks(n_rows: int, per_row: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_row))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _log_lik(logits: np.ndarray, value: np.ndarray, child: str) -> np.ndarray:
    """Child log-likelihood summed over its elements, over the last axis of ``logits``."""
    if child == "bernoulli":
        return (value * logits - softplus(logits)).sum(axis=-1)
    picked = np.take_along_axis(logits, np.broadcast_to(value[..., None], logits.shape[:-1] + (1,)), -1)[..., 0]
    return picked - logsumexp(logits, axis=-1, keepdims=False)


def hnca_affine_delta(node, args, env):
    u, w, logits, value = args
    child = node.attrs["child"]
    n_rows, n = u.shape
    out = np.empty((n_rows, n), dtype=env.dtype)
    for rows in _chunks(n_rows, w.size):
        ur, lr = u[rows, :, None], logits[rows, None, :]
        vr = value[rows, None, :] if child == "bernoulli" else value[rows, None]
        on = _log_lik(lr + w[None] * (1.0 - ur), vr, child)
        off = _log_lik(lr - w[None] * ur, vr, child)
        out[rows] = on - off
    return out


def hnca_onehot_loglik(node, args, env):
    u, w, logits, value = args
    child = node.attrs["child"]
    n_rows = u.shape[0]
    out = np.empty((n_rows, w.shape[0]), dtype=env.dtype)
    for rows in _chunks(n_rows, w.size):
        shift = w[None, :, :] - w[u[rows]][:, None, :]          # (rows, K_u, m)
        lr = logits[rows, None, :]
        vr = value[rows, None, :] if child == "bernoulli" else value[rows, None]
        out[rows] = _log_lik(lr + shift, vr, child) - _log_lik(lr, vr, child)
    return out


numpy_impls[Op.HNCA_AFFINE_DELTA] = hnca_affine_delta
numpy_impls[Op.HNCA_ONEHOT_LOGLIK] = hnca_onehot_loglik
