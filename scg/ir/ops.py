"""The op vocabulary of the scg IR: one enum, one metadata table.

Every node of every graph (user model, derived estimator, gradients) has one of
these ops. Op *semantics* live in per-concern rule tables owned by whoever uses
them (`infer_rules` for types, `vjp_rules` for autodiff, `numpy_impls` for the
reference interpreter, ...); this module only says what exists and how to print
its name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    LEAF = "leaf"            # no inputs: inputs, params, constants, noise
    UNARY = "unary"          # elementwise, one input
    BINARY = "binary"        # elementwise, two inputs, numpy broadcasting
    TERNARY = "ternary"      # elementwise, three inputs
    REDUCE = "reduce"        # reduction over per-row axes
    STRUCTURAL = "structural"  # matmul, reshape, broadcasting, gathers
    STOCHASTIC = "stochastic"  # draws a sample; has a `site` attribute
    DENSITY = "density"      # log-probability of a value under a distribution
    MARKER = "marker"        # identity-valued ops with a role (cost, stop_gradient)
    CREDIT = "credit"        # estimator-specific composite ops (HNCA, baselines)


@dataclass(frozen=True)
class OpInfo:
    name: str
    kind: Kind
    arity: int | None  # None: variadic


class Op(enum.Enum):
    # leaves
    INPUT = OpInfo("input", Kind.LEAF, 0)
    PARAM = OpInfo("param", Kind.LEAF, 0)
    CONST = OpInfo("const", Kind.LEAF, 0)
    EXTERNAL_COST = OpInfo("external_cost", Kind.LEAF, 0)
    STATE = OpInfo("state", Kind.LEAF, 0)           # estimator state (EMA baseline)
    NOISE_NORMAL = OpInfo("noise_normal", Kind.LEAF, 0)  # reparameterisation noise
    ROW_SCALE = OpInfo("row_scale", Kind.LEAF, 0)   # 1 / (rows x draws): turns row sums into means
    NOISE_UNIFORM = OpInfo("noise_uniform", Kind.LEAF, 0)  # the uniform a site's sampler uses (coupled/relaxed)
    N_DRAWS = OpInfo("n_draws", Kind.LEAF, 0)       # K, the draws per row of this call (VIMCO, IWAE)
    # elementwise unary
    NEG = OpInfo("neg", Kind.UNARY, 1)
    EXP = OpInfo("exp", Kind.UNARY, 1)
    LOG = OpInfo("log", Kind.UNARY, 1)
    SIGMOID = OpInfo("sigmoid", Kind.UNARY, 1)
    TANH = OpInfo("tanh", Kind.UNARY, 1)
    RELU = OpInfo("relu", Kind.UNARY, 1)
    LEAKY_RELU = OpInfo("leaky_relu", Kind.UNARY, 1)  # attr negative_slope
    SOFTPLUS = OpInfo("softplus", Kind.UNARY, 1)
    LOG_SIGMOID = OpInfo("log_sigmoid", Kind.UNARY, 1)
    SQUARE = OpInfo("square", Kind.UNARY, 1)
    SQRT = OpInfo("sqrt", Kind.UNARY, 1)
    STEP = OpInfo("step", Kind.UNARY, 1)            # 1. where x > 0 else 0.
    CAST_F = OpInfo("to_float", Kind.UNARY, 1)
    # elementwise binary
    ADD = OpInfo("add", Kind.BINARY, 2)
    SUB = OpInfo("sub", Kind.BINARY, 2)
    MUL = OpInfo("mul", Kind.BINARY, 2)
    DIV = OpInfo("div", Kind.BINARY, 2)
    EQUAL = OpInfo("equal", Kind.BINARY, 2)         # 1./0.
    GREATER = OpInfo("greater", Kind.BINARY, 2)     # 1./0.
    # elementwise ternary
    WHERE = OpInfo("where", Kind.TERNARY, 3)        # cond != 0 ? a : b
    STRAIGHT_THROUGH = OpInfo("straight_through", Kind.BINARY, 2)  # value of hard, gradient to soft
    # reductions over per-row axes
    SUM = OpInfo("sum", Kind.REDUCE, 1)
    MEAN = OpInfo("mean", Kind.REDUCE, 1)
    LOGSUMEXP = OpInfo("logsumexp", Kind.REDUCE, 1)
    # structural
    MATMUL = OpInfo("matmul", Kind.STRUCTURAL, 2)
    TRANSPOSE = OpInfo("transpose", Kind.STRUCTURAL, 1)  # swap the last two per-row axes
    OUTER_SUM = OpInfo("outer_sum", Kind.STRUCTURAL, 2)  # sum over rows of a^T b
    SOFTMAX = OpInfo("softmax", Kind.STRUCTURAL, 1)
    LOG_SOFTMAX = OpInfo("log_softmax", Kind.STRUCTURAL, 1)
    ONE_HOT = OpInfo("one_hot", Kind.STRUCTURAL, 1)
    TAKE = OpInfo("take", Kind.STRUCTURAL, 2)        # x[..., idx] along the last axis
    RESHAPE = OpInfo("reshape", Kind.STRUCTURAL, 1)
    BROADCAST_TO = OpInfo("broadcast_to", Kind.STRUCTURAL, 1)
    UNBROADCAST = OpInfo("unbroadcast", Kind.STRUCTURAL, 1)  # sum down to a shape
    # stochastic
    BERNOULLI = OpInfo("bernoulli", Kind.STOCHASTIC, 1)
    CATEGORICAL = OpInfo("categorical", Kind.STOCHASTIC, 1)
    NORMAL = OpInfo("normal", Kind.STOCHASTIC, 2)
    # densities
    BERNOULLI_LOGP = OpInfo("bernoulli_logp", Kind.DENSITY, 2)      # (logits, value)
    CATEGORICAL_LOGP = OpInfo("categorical_logp", Kind.DENSITY, 2)  # (logits, value)
    NORMAL_LOGP = OpInfo("normal_logp", Kind.DENSITY, 3)            # (loc, scale, value)
    # markers
    COST = OpInfo("cost", Kind.MARKER, 1)
    STOP_GRADIENT = OpInfo("stop_gradient", Kind.MARKER, 1)
    # estimator composites
    LOO_BASELINE = OpInfo("loo_baseline", Kind.CREDIT, 1)
    # log L(u_i := 1) - log L(u_i := 0) for a Bernoulli parent u whose child's logits are affine
    # in u: inputs (u, W, child logits, child value), attr child = "bernoulli" | "categorical"
    HNCA_AFFINE_DELTA = OpInfo("hnca_affine_delta", Kind.CREDIT, 4)
    # log L(u := v) - log L(u) for v in 0..K-1, categorical parent u entering as one_hot(u) @ W
    HNCA_ONEHOT_LOGLIK = OpInfo("hnca_onehot_loglik", Kind.CREDIT, 4)

    @property
    def info(self) -> OpInfo:
        return self.value

    @property
    def kind(self) -> Kind:
        return self.value.kind

    @property
    def pretty(self) -> str:
        return self.value.name

    def __repr__(self) -> str:
        return f"Op.{self.name}"


STOCHASTIC_OPS = frozenset(op for op in Op if op.kind is Kind.STOCHASTIC)
# kept in sync with scg.ir.distributions (a test checks it); ops.py cannot import the table
DISCRETE_OPS = frozenset({Op.BERNOULLI, Op.CATEGORICAL})
REPARAMETERISABLE_OPS = frozenset({Op.NORMAL})
