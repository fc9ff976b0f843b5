"""The SBN-VAE estimators written by hand in JAX: the whole step under one ``jax.jit``.

The same formulas as ``torch_sbn.py`` (see its docstring), with ``jax.grad`` of the
surrogate loss and ``lax.stop_gradient`` for PyTorch's ``detach``/``no_grad``; f-HNCA's
counterfactuals are one broadcast ``(rows, units, pixels)`` expression that XLA fuses.
The timed step draws its noise with ``jax.random`` inside the jitted function.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from sbn_common import ESTIMATORS, TAU

sg = lax.stop_gradient


def logp(logits, v):
    return v * logits - jax.nn.softplus(logits)


def neg_elbo(p, x, z, l):
    return (-logp(z @ p["dec_W"] + p["dec_b"], x).sum(-1) - logp(p["prior_logits"], z).sum(-1)
            + logp(l, z).sum(-1))


def _hnca_credit(p, x, z, l):
    W = p["dec_W"]
    a0 = (z @ W + p["dec_b"])[:, None, :] - z[:, :, None] * W[None]
    dll = (x[:, None, :] * W[None] - jax.nn.softplus(a0 + W[None]) + jax.nn.softplus(a0)).sum(-1)
    sig = jax.nn.sigmoid(l)
    return sig * (1 - sig) * (-dll - p["prior_logits"] + l)


def _vimco_loss(f, logq, k):
    lw = -f.reshape(k, -1)
    big_l = jax.nn.logsumexp(lw, 0) - math.log(k)
    others = (lw.sum(0, keepdims=True) - lw) / (k - 1)
    eye = jnp.eye(k, dtype=bool)[:, :, None]
    rep = jnp.where(eye, others[None], lw[None])          # rep[k'] = lw with row k' replaced
    signal = sg(big_l[None] - (jax.nn.logsumexp(rep, 1) - math.log(k)))
    return (-big_l - (logq.reshape(k, -1) * signal).sum(0)).mean()


def surrogate(label, p, x, u, z=None, tau=TAU):
    k = ESTIMATORS[label][2]
    l = jnp.tile(x @ p["enc_W"] + p["enc_b"], (k, 1))
    xk = jnp.tile(x, (k, 1))
    sig = jax.nn.sigmoid(l)
    if z is None:
        z = (u < sg(sig)).astype(l.dtype)
    if label in ("concrete", "gumbel_st"):
        soft = jax.nn.sigmoid((l + jnp.log1p(-u) - jnp.log(u)) / tau)
        return neg_elbo(p, xk, soft if label == "concrete" else soft + sg(z - soft), l).mean()
    f = neg_elbo(p, xk, z, l)
    if label == "rloo":
        fk = sg(f).reshape(k, -1)
        signal = (fk - (fk.sum(0, keepdims=True) - fk) / (k - 1)).reshape(-1)
        return (f + logp(l, z).sum(-1) * signal).mean()
    if label == "vimco":
        return _vimco_loss(f, logp(l, z).sum(-1), k)
    if label == "muprop":
        xbar = sg(sig)
        fbar = neg_elbo(sg(p), xk, xbar, sg(l))
        slope = jax.grad(lambda v: neg_elbo(sg(p), xk, v, sg(l)).sum())(xbar)   # f'(xbar), value argument
        signal = sg(f - fbar - (slope * (z - xbar)).sum(-1))
        return (f + logp(l, z).sum(-1) * signal + (sig * sg(slope)).sum(-1)).mean()
    if label == "hnca":
        credit = _hnca_credit(sg(p), xk, z, sg(l))
    else:
        partner = ((1 - u) < sg(sig)).astype(l.dtype)
        fdiff = sg(neg_elbo(p, xk, partner, l) - f)
        if label == "arm":
            credit = fdiff[:, None] * (u - 0.5)
        else:
            s = sg(sig)
            credit = 0.5 * fdiff[:, None] * (1 - 2 * z) * (partner - z) ** 2 * jnp.where(l > 0, s, 1 - s)
    return (f + (l * sg(credit)).sum(-1)).mean()


def grads_given_noise(label, params, x, u, z=None) -> dict[str, np.ndarray]:
    """Gradients with the given noise (and samples), in the dtype of ``params``."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    zj = None if z is None else jnp.asarray(z, dtype=p["enc_b"].dtype)
    g = jax.grad(lambda q: surrogate(label, q, jnp.asarray(x, dtype=p["enc_b"].dtype),
                                     jnp.asarray(u, dtype=p["enc_b"].dtype), zj))(p)
    return {k: np.asarray(v) for k, v in g.items()}


def make_step(label, params, x, seed: int = 0):
    """A no-argument callable: one jitted gradient step with fresh noise, float32, blocking."""
    p = {k: jnp.asarray(v) for k, v in params.items()}
    xj = jnp.asarray(x)
    shape = (ESTIMATORS[label][2] * x.shape[0], params["enc_b"].shape[0])

    @jax.jit
    def grad_step(p, x, key):
        key, sub = jax.random.split(key)
        u = jax.random.uniform(sub, shape, minval=1e-12, maxval=1.0)
        return jax.grad(lambda q: surrogate(label, q, x, u))(p), key

    state = {"key": jax.random.PRNGKey(seed)}

    def step():
        g, state["key"] = grad_step(p, xj, state["key"])
        return jax.block_until_ready(g)

    return step
