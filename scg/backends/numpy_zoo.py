"""NumPy rules for the ops of the coupled and relaxed estimators (ARM, DisARM, VIMCO, Concrete).

Registered into ``numpy_impls``; the specification their compiled templates mirror.

* ``noise_uniform[site]``: the very uniform ``u1`` that the sampler of ``site`` draws at
  (seed, site, draw, row, element), so ``bernoulli(logits)`` equals ``u1 < sigmoid(logits)``
  bit for bit and an antithetic partner ``1[1 - u1 < sigmoid(logits)]`` shares its noise
  (Yin & Zhou 2019; Dong, Mnih & Tucker 2020). A site number that no sample owns is an
  independent stream (the Gumbel noise of a relaxed categorical).
* ``n_draws``: K, the draws per row of the call (VIMCO's leave-one-out algebra needs it).
* ``straight_through(hard, soft)``: the value of ``hard``; autodiff sends the gradient to
  ``soft`` (Bengio et al. 2013; Jang et al. 2017).
"""

from __future__ import annotations

import math

import numpy as np

from scg.backends import rng
from scg.backends.numpy_ops import draw_layout, fl, full_shape, numpy_impls
from scg.errors import BackendError
from scg.ir.ops import Op


def noise_uniform(node, _args, env):
    if not node.batched:
        raise BackendError(f"{node.label()}: noise_uniform must be batched (one draw per row)")
    shape = tuple(node.attrs["shape"])
    draws, rows = draw_layout(env)
    u1, _ = rng._row_uniforms(env.n, math.prod(shape), env.seed, node.attrs["site"], draws, rows)
    return u1.reshape((env.n, *shape)).astype(env.dtype, copy=False)


def n_draws(node, _args, env):
    return np.full(full_shape(node.shape, node.batched, env), float(env.n_samples), dtype=env.dtype)


def straight_through(node, args, env):
    return fl(args[0], env)


numpy_impls[Op.NOISE_UNIFORM] = noise_uniform
numpy_impls[Op.N_DRAWS] = n_draws
numpy_impls[Op.STRAIGHT_THROUGH] = straight_through
