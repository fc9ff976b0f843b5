"""The bandit estimators written straightforwardly in PyTorch (eager, float32, autograd).

This is what a user would write by hand, mirroring what scg derives for this graph
(``print(est.ir)``), node by node:

* forward: ``l_k = h_{k-1} @ W_k + b_k``, ``h_k ~ Bernoulli(sigmoid(l_k))`` for the hidden
  layers, ``a ~ Categorical(softmax(l_a))``, cost ``R = -[a == y]`` per row;
* **reinforce**: surrogate ``mean_rows(R * (sum_k log p(h_k) + log p(a)))``, backward;
* **hnca** (Young 2022; scg's ``hnca_affine_delta``): for every hidden layer ``k`` and its
  child layer, the counterfactual child log-likelihoods with each parent unit flipped,
  materialised as a ``(rows, parents, children)`` tensor (the natural PyTorch version),
  ``delta = log L(u_i=1) - log L(u_i=0)``, ``qhat = sigmoid(l_k + delta)`` (no grad);
  surrogate ``R * sum(qhat log sigmoid(l_k) + (1 - qhat) log sigmoid(-l_k))``. The action
  ``a`` has no stochastic children and the cost depends on it directly, so (as scg does:
  "f-HNCA on neg_reward") it gets the exact local sum ``sum_v softmax(l_a)_v * cost(v)``;
* **muprop** (Gu et al. 2016): mean-field pass ``xbar_1 = sigmoid(l_1)``,
  ``xbar_k = sigmoid(xbar_{k-1} W_k + b_k)``, ``f(xbar) = -softmax(l_bar)[y]``;
  ``f'(xbar_k)`` by ``torch.autograd.grad``; per hidden layer the score term with
  ``sg(R - f(xbar) - f'(xbar_k).(h_k - xbar_k))`` plus the analytic term
  ``sigmoid(l_k) . sg(f'(xbar_k))``; the action gets the score term with ``sg(R - f(xbar))``.

Parameter gradients come from ``loss.backward()`` on the surrogate (mean over rows),
so they estimate ``d/dtheta E[mean_rows cost]``, the same scale as scg's ``grads``.
``samples`` (optional) replaces the draws with given ones: the correctness cross-check
feeds scg's samples through the same code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def n_hidden(params) -> int:
    return len(params) // 2 - 1


def to_torch(params: dict[str, np.ndarray], dtype=torch.float32) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=dtype).requires_grad_(True) for k, v in params.items()}


def _forward(params, x, samples, generator):
    """Sampled forward pass with autograd: (logits per hidden layer, hidden samples, action logits, a)."""
    L = n_hidden(params)
    logits, hs = [], []
    h = x
    for k in range(1, L + 1):
        l = h @ params[f"W{k}"] + params[f"b{k}"]
        if samples is None:
            with torch.no_grad():
                h = torch.bernoulli(torch.sigmoid(l), generator=generator)
        else:
            h = samples[f"h{k}"]
        logits.append(l)
        hs.append(h)
    la = h @ params[f"W{L + 1}"] + params[f"b{L + 1}"]
    if samples is None:
        with torch.no_grad():
            a = torch.multinomial(torch.softmax(la, -1), 1, generator=generator)[:, 0]
    else:
        a = samples["a"]
    return logits, hs, la, a


def _bernoulli_logp(l, h):
    return h * l - F.softplus(l)


def _categorical_logp(la, a):
    return torch.log_softmax(la, -1).gather(-1, a[:, None])[:, 0]


def delta_bernoulli_child(u, w, l, c):
    """``log L(u_i=1) - log L(u_i=0)`` for a Bernoulli child layer with logits ``l = u @ w + ...``."""
    l_on = l[:, None, :] + w[None] * (1.0 - u)[:, :, None]    # (rows, parents, children)
    l_off = l[:, None, :] - w[None] * u[:, :, None]
    cc = c[:, None, :]
    return (cc * l_on - F.softplus(l_on)).sum(-1) - (cc * l_off - F.softplus(l_off)).sum(-1)


def delta_categorical_child(u, w, l, a):
    """The same for a categorical child ``a`` with logits ``l`` (rows, K)."""
    l_on = l[:, None, :] + w[None] * (1.0 - u)[:, :, None]    # (rows, parents, K)
    l_off = l[:, None, :] - w[None] * u[:, :, None]
    idx = a[:, None, None].expand(-1, u.shape[1], 1)
    ll_on = l_on.gather(-1, idx)[..., 0] - torch.logsumexp(l_on, -1)
    ll_off = l_off.gather(-1, idx)[..., 0] - torch.logsumexp(l_off, -1)
    return ll_on - ll_off


def surrogate(estimator: str, params, x, y, samples=None, generator=None):
    """The surrogate loss whose gradient is the estimator, and the sampled mean cost."""
    L = n_hidden(params)
    logits, hs, la, a = _forward(params, x, samples, generator)
    R = -(a == y).to(x.dtype)                                   # per-row cost, no grad
    if estimator == "reinforce":
        logp = sum(_bernoulli_logp(l, h).sum(-1) for l, h in zip(logits, hs, strict=True))
        logp = logp + _categorical_logp(la, a)
        return (logp * R).mean(), R.mean()
    if estimator == "hnca":
        with torch.no_grad():
            qhats = []
            for k in range(L):
                w = params[f"W{k + 2}"]
                if k + 1 < L:
                    delta = delta_bernoulli_child(hs[k], w, logits[k + 1], hs[k + 1])
                else:
                    delta = delta_categorical_child(hs[k], w, la, a)
                qhats.append(torch.sigmoid(logits[k] + delta))
            cost_v = -F.one_hot(y, la.shape[-1]).to(x.dtype)     # cost of every action value
        total = 0.0
        for l, q in zip(logits, qhats, strict=True):
            total = total + (R[:, None] * (q * F.logsigmoid(l) + (1.0 - q) * F.logsigmoid(-l))).sum(-1)
        total = total + (torch.softmax(la, -1) * cost_v).sum(-1)   # f-HNCA: exact sum over a
        return total.mean(), R.mean()
    if estimator == "muprop":
        with torch.enable_grad():
            nograd = {k: v.detach() for k, v in params.items()}
            xbars = [torch.sigmoid(logits[0].detach()).requires_grad_(True)]
            for k in range(2, L + 1):
                xbars.append(torch.sigmoid(xbars[-1] @ nograd[f"W{k}"] + nograd[f"b{k}"]))
            lbar = xbars[-1] @ nograd[f"W{L + 1}"] + nograd[f"b{L + 1}"]
            fbar = -torch.softmax(lbar, -1).gather(-1, y[:, None])[:, 0]
            gs = torch.autograd.grad(fbar.sum(), xbars)
        fbar = fbar.detach()
        total = 0.0
        for l, h, xb, g in zip(logits, hs, xbars, gs, strict=True):
            adv = (R - fbar - (g * (h - xb.detach())).sum(-1)).detach()
            total = total + adv * _bernoulli_logp(l, h).sum(-1) + (torch.sigmoid(l) * g).sum(-1)
        total = total + (R - fbar) * _categorical_logp(la, a)
        return total.mean(), R.mean()
    raise ValueError(f"unknown estimator {estimator!r}")


def step(estimator: str, params, x, y, samples=None, generator=None) -> dict[str, torch.Tensor]:
    """One estimator step: sample (unless ``samples``), credit, parameter gradients."""
    for p in params.values():
        p.grad = None
    loss, _ = surrogate(estimator, params, x, y, samples, generator)
    loss.backward()
    return {k: p.grad for k, p in params.items()}


def make_step(estimator: str, params_np, x_np, y_np, seed: int = 0):
    """A zero-argument callable running one full step (fresh draws each call)."""
    params = to_torch(params_np)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    gen = torch.Generator().manual_seed(seed)
    return lambda: step(estimator, params, x, y, generator=gen)


def grads_given_samples(estimator: str, params_np, x_np, y_np, samples_np, dtype=torch.float32):
    """Gradients for given samples (the cross-check), as numpy arrays."""
    params = to_torch(params_np, dtype)
    x, y = torch.tensor(x_np, dtype=dtype), torch.from_numpy(np.asarray(y_np, np.int64))
    samples = {k: (torch.from_numpy(np.asarray(v, np.int64)) if k == "a" else torch.tensor(v, dtype=dtype))
               for k, v in samples_np.items()}
    return {k: v.detach().numpy() for k, v in step(estimator, params, x, y, samples=samples).items()}
