"""The SBN-VAE estimators written by hand in PyTorch (eager, autograd), as a user would.

The model and noise convention are in ``sbn_common.py``. Per row (draw-major over K
draws), ``l = x @ enc_W + enc_b``, ``z = 1[u < sigmoid(l)]``, ``f = neg_elbo(z)``; every
estimator is a surrogate loss whose ``backward()`` gives the parameter gradients, mean
over rows x draws (scg's ``grads`` scale). The formulas mirror what scg derives for
this graph (``print(est.ir)``):

* **rloo** (K=2; Kool et al. 2019): ``f + log q(z) * sg(f - mean_{other draws} f)``;
* **muprop** (Gu et al. 2016, eq. 8-9): mean field ``xbar = sigmoid(l)``, ``f(xbar)`` and
  ``f'(xbar)`` (``torch.autograd.grad``, value argument only);
  ``f + log q(z) * sg(f - f(xbar) - f'(xbar).(z - xbar)) + sigmoid(l) . sg(f'(xbar))``;
* **hnca**, f-HNCA on the ELBO (Young 2022): for every unit, ``f(z_i:=1) - f(z_i:=0)``
  from the counterfactual decoder logits, materialised as a ``(rows, units, pixels)``
  tensor under ``no_grad`` (in row chunks, to bound memory); ``f + l . sg(sigmoid'(l) (f1 - f0))``;
* **arm** (Yin & Zhou 2019, eq. 5): partner ``b~ = 1[1 - u < sigmoid(l)]``, one more
  decoder pass; ``f + l . sg((f(b~) - f(z)) (u - 1/2))``;
* **disarm** (Dong et al. 2020, eq. 8): ``f + l . sg(1/2 (f(b~) - f(z)) (1 - 2 z) (b~ - z)^2
  sigmoid(|l|))``;
* **vimco** (Mnih & Rezende 2016, K=5, objective the IWAE bound ``L``): per row,
  ``-L - sum_k log q(z_k) sg(L - L_-k)``, ``L_-k`` with ``log w_k`` replaced by the mean of
  the other draws' ``log w``;
* **concrete** (Maddison et al. 2017; tau 0.5): ``f`` at ``sigmoid((l + log(1-u) - log u)/tau)``,
  the Bernoulli log-densities evaluated at the relaxed value (as scg's relaxed
  ``bernoulli_logp``);
* **gumbel_st** (Jang et al. 2017): the same with the straight-through value
  ``z_soft + sg(z - z_soft)`` (value ``z``, gradient of ``z_soft``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sbn_common import ESTIMATORS, TAU

HNCA_CHUNK = 128  # rows per counterfactual chunk: (128, 200, 784) float32 is 80 MB


def to_torch(params: dict[str, np.ndarray], dtype=torch.float32) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=dtype).requires_grad_(True) for k, v in params.items()}


def logp(logits, v):
    """Bernoulli log-density per element (scg's ``bernoulli_logp``: ``v l - softplus(l)``)."""
    return v * logits - F.softplus(logits)


def neg_elbo(p, x, z, l):
    """Per row ``-log p(x|z) - log p(z) + log q(z|x)``; ``z`` may be relaxed."""
    return (-logp(z @ p["dec_W"] + p["dec_b"], x).sum(-1) - logp(p["prior_logits"], z).sum(-1)
            + logp(l, z).sum(-1))


def _hnca_credit(p, x, z, l):
    """``sigmoid'(l) (f(z_i:=1) - f(z_i:=0))`` per row and unit (no grad)."""
    with torch.no_grad():
        W, pl = p["dec_W"], p["prior_logits"]
        out = torch.empty_like(l)
        for s in range(0, x.shape[0], HNCA_CHUNK):
            xs, zs = x[s:s + HNCA_CHUNK], z[s:s + HNCA_CHUNK]
            a0 = (zs @ W + p["dec_b"])[:, None, :] - zs[:, :, None] * W[None]   # (rows, units, pixels): z_i := 0
            a1 = a0 + W[None]                                                    # z_i := 1
            dll = (xs[:, None, :] * W[None] - F.softplus(a1) + F.softplus(a0)).sum(-1)
            out[s:s + HNCA_CHUNK] = -dll - pl + l[s:s + HNCA_CHUNK]   # f1 - f0: likelihood, prior, log q
        sig = torch.sigmoid(l)
        return sig * (1 - sig) * out


def _vimco_loss(f, logq, k):
    lw = -f.view(k, -1)                                     # (K, rows)
    big_l = torch.logsumexp(lw, 0) - math.log(k)
    with torch.no_grad():
        others = (lw.sum(0, keepdim=True) - lw) / (k - 1)   # mean of the other draws' log w
        rep = lw.unsqueeze(0).repeat(k, 1, 1)               # rep[k'] = lw with row k' replaced
        idx = torch.arange(k)
        rep[idx, idx] = others
        signal = big_l.unsqueeze(0) - (torch.logsumexp(rep, 1) - math.log(k))
    return (-big_l - (logq.view(k, -1) * signal).sum(0)).mean()


def surrogate(label: str, p, x, u, z=None, tau: float = TAU):
    """The surrogate loss of ``label`` for inputs ``x`` (rows) and noise ``u`` ((K * rows, hidden))."""
    k = ESTIMATORS[label][2]
    l = (x @ p["enc_W"] + p["enc_b"]).repeat(k, 1)
    xk = x.repeat(k, 1)
    sig = torch.sigmoid(l)
    if z is None:
        z = (u < sig.detach()).to(l.dtype)
    if label in ("concrete", "gumbel_st"):
        soft = torch.sigmoid((l + torch.log1p(-u) - torch.log(u)) / tau)
        return neg_elbo(p, xk, soft if label == "concrete" else soft + (z - soft).detach(), l).mean()
    f = neg_elbo(p, xk, z, l)
    if label == "rloo":
        with torch.no_grad():
            fk = f.view(k, -1)
            signal = (fk - (fk.sum(0, keepdim=True) - fk) / (k - 1)).reshape(-1)
        return (f + logp(l, z).sum(-1) * signal).mean()
    if label == "vimco":
        return _vimco_loss(f, logp(l, z).sum(-1), k)
    if label == "muprop":
        xbar = sig.detach().requires_grad_(True)
        fbar = neg_elbo(p, xk, xbar, l.detach())
        (slope,) = torch.autograd.grad(fbar.sum(), xbar)
        signal = (f - fbar - (slope * (z - xbar)).sum(-1)).detach()
        return (f + logp(l, z).sum(-1) * signal + (sig * slope).sum(-1)).mean()
    if label == "hnca":
        credit = _hnca_credit(p, xk, z, l.detach())
    else:  # arm, disarm: one more decoder pass at the antithetic partner
        with torch.no_grad():
            partner = ((1 - u) < sig).to(l.dtype)
            fdiff = neg_elbo(p, xk, partner, l) - f
            if label == "arm":
                credit = fdiff[:, None] * (u - 0.5)
            else:
                credit = 0.5 * fdiff[:, None] * (1 - 2 * z) * (partner - z) ** 2 * torch.where(l > 0, sig, 1 - sig)
    return (f + (l * credit).sum(-1)).mean()


def grads_given_noise(label, params, x, u, z=None, dtype=torch.float64) -> dict[str, np.ndarray]:
    """Gradients of ``label`` with the given noise (and samples): the cross-check with scg."""
    p = to_torch(params, dtype)
    zt = None if z is None else torch.tensor(z, dtype=dtype)
    surrogate(label, p, torch.tensor(x, dtype=dtype), torch.tensor(u, dtype=dtype), zt).backward()
    return {k: v.grad.numpy() for k, v in p.items()}


def make_step(label, params, x, seed: int = 0):
    """A no-argument callable: one gradient step (fresh noise each call), float32."""
    p = to_torch(params)
    xt = torch.tensor(x)
    gen = torch.Generator().manual_seed(seed)
    shape = (ESTIMATORS[label][2] * x.shape[0], params["enc_b"].shape[0])

    def step():
        for v in p.values():
            v.grad = None
        u = torch.rand(shape, generator=gen).clamp_(min=1e-12)  # log u in the relaxations
        surrogate(label, p, xt, u).backward()
        return {k: v.grad for k, v in p.items()}

    return step
