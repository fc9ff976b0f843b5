"""The distribution table: what every pass, backend and the oracle know about a sampling op.

One row per stochastic op. Passes read it instead of keeping their own
``if op is Op.BERNOULLI`` ladders: the estimators take the density op and the
mean-field value from here, the pathwise rewrite the reparameterisation, the
oracle the enumeration values, the backends' argument checks the constraints.
Backend-specific rules (samplers, kernels) stay in the backends' own tables,
keyed by the same ops; ``tests/ir/test_rule_tables.py`` checks that every
distribution has an entry in each of them.

>>> from scg.ir.distributions import DISTRIBUTIONS
>>> from scg.ir.ops import Op
>>> d = DISTRIBUTIONS[Op.BERNOULLI]
>>> d.density.pretty, d.discrete, d.reparameterisable
('bernoulli_logp', True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from scg.ir.ops import Op


@dataclass(frozen=True)
class Distribution:
    op: Op                        # the sampling op
    params: tuple[str, ...]       # names of the op's inputs, in order
    density: Op                   # log-density op, inputs (*params, value)
    discrete: bool
    reparameterisable: bool       # value = a differentiable function of params and parameter-free noise
    value_dtype: str              # "f64" or "i64"
    support: str                  # human-readable, for error messages and docs
    # per-parameter constraint checked at call time on every backend (see ``CONSTRAINTS``)
    constraints: Mapping[str, str]
    # mean of the value (or of its one-hot encoding, for a categorical): "sigmoid", "softmax", "loc"
    mean: str
    # the noise op of the reparameterisation (value = loc + scale * noise), or None
    noise: Op | None = None

    @property
    def name(self) -> str:
        return self.op.pretty

    def values(self, n_categories: int | None = None) -> list | None:
        """Enumeration values of one element (None for a continuous distribution)."""
        if self.op is Op.BERNOULLI:
            return [0.0, 1.0]
        if self.op is Op.CATEGORICAL:
            return list(range(int(n_categories)))
        return None

    def n_values(self, node) -> int | None:
        """How many values one element of ``node`` (a sample of this distribution) takes."""
        if self.op is Op.CATEGORICAL:
            return int(node.inputs[0].shape[-1])
        vals = self.values()
        return None if vals is None else len(vals)


# what each constraint name means, for messages (the checks themselves run in the backends)
CONSTRAINTS = MappingProxyType({
    "finite": "finite (not NaN or inf)",
    "not_nan": "not NaN",
    "probability": "in [0, 1] (probs) or not NaN (logits)",
    "positive": "> 0 and finite",
})

DISTRIBUTIONS: Mapping[Op, Distribution] = MappingProxyType({
    Op.BERNOULLI: Distribution(
        Op.BERNOULLI, ("logits",), Op.BERNOULLI_LOGP, discrete=True, reparameterisable=False,
        value_dtype="f64", support="{0., 1.}", constraints=MappingProxyType({"logits": "probability"}),
        mean="sigmoid"),
    Op.CATEGORICAL: Distribution(
        Op.CATEGORICAL, ("logits",), Op.CATEGORICAL_LOGP, discrete=True, reparameterisable=False,
        value_dtype="i64", support="{0, ..., K-1}", constraints=MappingProxyType({"logits": "not_nan"}),
        mean="softmax"),
    Op.NORMAL: Distribution(
        Op.NORMAL, ("loc", "scale"), Op.NORMAL_LOGP, discrete=False, reparameterisable=True,
        value_dtype="f64", support="the real line",
        constraints=MappingProxyType({"loc": "finite", "scale": "positive"}), mean="loc",
        noise=Op.NOISE_NORMAL),
})

DENSITY_OF: Mapping[Op, Op] = MappingProxyType({op: d.density for op, d in DISTRIBUTIONS.items()})


def distribution_of(node) -> Distribution:
    """The table row of a sample node."""
    return DISTRIBUTIONS[node.op]
