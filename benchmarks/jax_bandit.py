"""The bandit estimators in JAX, the whole step under ``jax.jit`` (float32).

Same math as ``torch_bandit`` (see its docstring): a surrogate loss built with
``jax.lax.stop_gradient`` around the credit terms, differentiated by ``jax.grad``.
HNCA's counterfactuals are written with broadcasting, ``(rows, parents, children)``,
and left to XLA to fuse. Draws use ``jax.random`` (threefry), so samples differ from
scg's and torch's; the cross-check passes scg's samples in instead.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

sg = jax.lax.stop_gradient


def n_hidden(params) -> int:
    return len(params) // 2 - 1


def _forward(params, x, samples, key):
    L = n_hidden(params)
    keys = jax.random.split(key, L + 1) if samples is None else [None] * (L + 1)
    logits, hs = [], []
    h = x
    for k in range(1, L + 1):
        l = h @ params[f"W{k}"] + params[f"b{k}"]
        if samples is None:
            h = jax.random.bernoulli(keys[k - 1], jax.nn.sigmoid(sg(l))).astype(x.dtype)
        else:
            h = samples[f"h{k}"]
        logits.append(l)
        hs.append(h)
    la = h @ params[f"W{L + 1}"] + params[f"b{L + 1}"]
    a = jax.random.categorical(keys[L], sg(la)) if samples is None else samples["a"]
    return logits, hs, la, a


def _bernoulli_logp(l, h):
    return h * l - jax.nn.softplus(l)


def _categorical_logp(la, a):
    return jnp.take_along_axis(jax.nn.log_softmax(la), a[:, None], axis=-1)[:, 0]


def delta_bernoulli_child(u, w, l, c):
    l_on = l[:, None, :] + w[None] * (1.0 - u)[:, :, None]
    l_off = l[:, None, :] - w[None] * u[:, :, None]
    cc = c[:, None, :]
    return (cc * l_on - jax.nn.softplus(l_on)).sum(-1) - (cc * l_off - jax.nn.softplus(l_off)).sum(-1)


def delta_categorical_child(u, w, l, a):
    l_on = l[:, None, :] + w[None] * (1.0 - u)[:, :, None]
    l_off = l[:, None, :] - w[None] * u[:, :, None]
    idx = jnp.broadcast_to(a[:, None, None], (u.shape[0], u.shape[1], 1))
    ll_on = jnp.take_along_axis(l_on, idx, -1)[..., 0] - jax.nn.logsumexp(l_on, -1)
    ll_off = jnp.take_along_axis(l_off, idx, -1)[..., 0] - jax.nn.logsumexp(l_off, -1)
    return ll_on - ll_off


def surrogate(params, x, y, samples, key, estimator: str):
    L = n_hidden(params)
    logits, hs, la, a = _forward(params, x, samples, key)
    R = -(a == y).astype(x.dtype)
    if estimator == "reinforce":
        logp = sum(_bernoulli_logp(l, h).sum(-1) for l, h in zip(logits, hs, strict=True))
        logp = logp + _categorical_logp(la, a)
        return jnp.mean(logp * R), R.mean()
    if estimator == "hnca":
        total = 0.0
        for k in range(L):
            w = sg(params[f"W{k + 2}"])
            if k + 1 < L:
                delta = delta_bernoulli_child(hs[k], w, sg(logits[k + 1]), hs[k + 1])
            else:
                delta = delta_categorical_child(hs[k], w, sg(la), a)
            l = logits[k]
            q = sg(jax.nn.sigmoid(l + delta))
            total = total + (R[:, None] * (q * jax.nn.log_sigmoid(l) + (1.0 - q) * jax.nn.log_sigmoid(-l))).sum(-1)
        cost_v = -jax.nn.one_hot(y, la.shape[-1], dtype=x.dtype)
        total = total + (jax.nn.softmax(la) * cost_v).sum(-1)
        return jnp.mean(total), R.mean()
    if estimator == "muprop":
        p = {k: sg(v) for k, v in params.items()}
        xbar1 = jax.nn.sigmoid(sg(logits[0]))

        def mean_field(xbars_in):
            # f(xbar) as a function of every layer's mean, with the layers chained as in the
            # mean-field pass; the gradient w.r.t. xbar_k is the total derivative (xbar_k
            # enters as itself plus a zero-valued offset, so that later layers depend on it).
            xb = xbars_in[0]
            outs = [xb]
            for k in range(2, L + 1):
                xb = jax.nn.sigmoid(xb @ p[f"W{k}"] + p[f"b{k}"]) + xbars_in[k - 1]
                outs.append(xb)
            lbar = xb @ p[f"W{L + 1}"] + p[f"b{L + 1}"]
            fbar = -jnp.take_along_axis(jax.nn.softmax(lbar), y[:, None], -1)[:, 0]
            return fbar.sum(), (fbar, outs)

        zeros = [xbar1] + [jnp.zeros_like(xbar1, shape=(x.shape[0], params[f"b{k}"].shape[0]))
                           for k in range(2, L + 1)]
        gs, (fbar, xbars) = jax.grad(mean_field, has_aux=True)(zeros)
        total = 0.0
        for l, h, xb, g in zip(logits, hs, xbars, gs, strict=True):
            adv = sg(R - fbar - (g * (h - xb)).sum(-1))
            total = total + adv * _bernoulli_logp(l, h).sum(-1) + (jax.nn.sigmoid(l) * sg(g)).sum(-1)
        total = total + sg(R - fbar) * _categorical_logp(la, a)
        return jnp.mean(total), R.mean()
    raise ValueError(f"unknown estimator {estimator!r}")


@partial(jax.jit, static_argnames=("estimator",))
def step_sampled(params, x, y, key, estimator: str):
    """One full step with fresh draws from ``key``: gradients of the surrogate."""
    return jax.grad(lambda p: surrogate(p, x, y, None, key, estimator)[0])(params)


@partial(jax.jit, static_argnames=("estimator",))
def step_given(params, x, y, samples, estimator: str):
    return jax.grad(lambda p: surrogate(p, x, y, samples, None, estimator)[0])(params)


def make_step(estimator: str, params_np, x_np, y_np, seed: int = 0):
    """A zero-argument callable running one full jitted step, blocking until it is done."""
    params = {k: jnp.asarray(v) for k, v in params_np.items()}
    x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype(np.int32))
    state = {"key": jax.random.PRNGKey(seed)}

    def run():
        state["key"], sub = jax.random.split(state["key"])
        grads = step_sampled(params, x, y, sub, estimator)
        jax.block_until_ready(grads)
        return grads

    return run


def grads_given_samples(estimator: str, params_np, x_np, y_np, samples_np):
    params = {k: jnp.asarray(v, jnp.float32) for k, v in params_np.items()}
    samples = {k: (jnp.asarray(v, jnp.int32) if k == "a" else jnp.asarray(v, jnp.float32))
               for k, v in samples_np.items()}
    out = step_given(params, jnp.asarray(x_np, jnp.float32), jnp.asarray(np.asarray(y_np), jnp.int32),
                     samples, estimator)
    return {k: np.asarray(v) for k, v in out.items()}
