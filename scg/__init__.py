"""scg: a compiler for stochastic computation graphs.

Declare a graph of inputs, parameters, deterministic ops, stochastic nodes and
costs; scg derives an unbiased gradient estimator as IR (score function,
pathwise, MuProp, HNCA), differentiates it and runs it on a backend.

>>> import scg
>>> g = scg.Graph("coin")
>>> with g:
...     phi = scg.param("phi", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=phi))
...     _ = scg.cost("c", (b - 0.45) ** 2)
>>> print(g)  # doctest: +NORMALIZE_WHITESPACE
graph coin(; phi:f64[]) {
  b:f64[B] ~ bernoulli[site=b] phi
  t0:f64[B] = sub b 0.45
  t1:f64[B] = square t0
  c:f64[B] = cost t1
  return c
}
"""

from scg import datasets, diagnostics, optim, training
from scg.compiled import compile
from scg.dsl.builders import cost, external_cost, input, param, sample
from scg.dsl.distributions import Bernoulli, Categorical, Normal
from scg.dsl.math import (
    equal,
    exp,
    greater,
    leaky_relu,
    log,
    log_sigmoid,
    log_softmax,
    logsumexp,
    matmul,
    mean,
    one_hot,
    relu,
    sigmoid,
    softmax,
    softplus,
    sqrt,
    square,
    stop_gradient,
    sum,
    take,
    tanh,
    to_float,
    where,
)
from scg.dsl.model import Graph
from scg.dsl.value import Value
from scg.errors import ScgError, ScgWarning
from scg.exact import exact
from scg.training import train

__version__ = "0.1.0"


def __getattr__(name):
    # `scg.sweep` imports the Dask layer only when first used: `import scg` stays fast
    if name == "sweep":
        from scg.sweeps import sweep

        return sweep
    raise AttributeError(f"module 'scg' has no attribute {name!r}")


__all__ = [
    "Bernoulli",
    "Categorical",
    "Graph",
    "Normal",
    "ScgError",
    "ScgWarning",
    "Value",
    "compile",
    "cost",
    "diagnostics",
    "equal",
    "exact",
    "exp",
    "external_cost",
    "greater",
    "input",
    "leaky_relu",
    "log",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "matmul",
    "mean",
    "one_hot",
    "param",
    "relu",
    "sample",
    "sigmoid",
    "softmax",
    "softplus",
    "sqrt",
    "square",
    "stop_gradient",
    "sum",
    "take",
    "tanh",
    "to_float",
    "where",
]
__all__ += ["datasets", "optim", "sweep", "train", "training"]
