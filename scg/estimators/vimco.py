"""VIMCO for the K-sample importance-weighted objective (Mnih & Rezende 2016, eqs. 8-10).

With ``K = n_samples`` draws per row and ``C_k`` the total cost of draw ``k``,
``log w_k = -C_k`` and ``L = log (1/K) sum_k w_k``, the objective is
``J_K = E[mean over rows of -L]`` (``objective="iwae"``; ``-J_K`` is the IWAE bound
when the costs are a negative ELBO). Its gradient is estimated by

    sum_k -(L - L_{-k}) d log q(z_k)/dtheta + sum_k w~_k dC_k/dtheta,

where ``L_{-k}`` replaces ``w_k`` by the geometric mean of the other draws' weights
(a baseline independent of draw ``k``: eq. 10), ``w~_k = w_k / sum_j w_j`` are the
normalised weights (stop-gradient) and ``dC_k/dtheta`` is the pathwise part (costs'
direct dependence on parameters, reparameterised Normal nodes). Unbiased for
``dJ_K/dtheta`` for every K >= 2.

Everything is IR on per-draw scalars, built from the leave-one-out mean across the K
draws of a row (``loo_baseline``) and ``n_draws``: sums over the other draws are
``(K - 1) loo(x)``. Weights are shifted by the row's mean log-weight before ``exp``
(the shift cancels in ``L - L_{-k}`` and ``w~``), so overflow needs a spread of log-weights
over ~700 nats among one row's draws (~88 in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

from scg.errors import EstimatorError
from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64
from scg.passes.dependencies import SiteInfo

NOTE = "vimco"


@dataclass(frozen=True)
class Signals:
    k: Node          # n_draws
    signal: Node     # L - L_{-k}, per draw
    weight: Node     # normalised importance weight w~_k, per draw
    bound: Node      # L (per draw; equal across a row's draws)


def signals(b: SurrogateBuilder) -> Signals:
    """The shared per-draw quantities of the K-sample objective (built once per graph)."""
    if "vimco" in b.cache:
        return b.cache["vimco"]
    costs = list(b.deps.costs)
    note = f"{NOTE}: log w_k = -({describe_costs(tuple(costs))})"

    def add(op, *xs):
        return b.add(op, *xs, note=note)

    k = b.graph.add(Op.N_DRAWS, (), {"dtype": F64, "shape": (), "batched": False}, name="n_draws", note=note)
    km1 = add(Op.SUB, k, 1.0)
    s = add(Op.NEG, b.total(costs, note=note))                    # log w_k
    loo_s = add(Op.LOO_BASELINE, s)                               # mean over j != k of log w_j
    shift = add(Op.DIV, add(Op.ADD, s, add(Op.MUL, km1, loo_s)), k)  # the row's mean log-weight
    w = add(Op.EXP, add(Op.SUB, s, shift))
    others = add(Op.MUL, km1, add(Op.LOO_BASELINE, w))            # sum over j != k of w_j
    total = add(Op.ADD, others, w)
    geo = add(Op.EXP, add(Op.SUB, loo_s, shift))                  # geometric mean of the others
    signal = add(Op.SUB, add(Op.LOG, total), add(Op.LOG, add(Op.ADD, others, geo)))
    weight = add(Op.DIV, w, total)
    bound = add(Op.ADD, add(Op.SUB, add(Op.LOG, total), add(Op.LOG, k)), shift)
    out = Signals(k, signal, weight, bound)
    b.cache["vimco"] = out
    return out


def derive_site(b: SurrogateBuilder, info: SiteInfo) -> None:
    """Score term ``log q(z_k) * sg(-K (L - L_{-k}))``; ``row_scale`` = 1/(K B) makes it sum over draws."""
    if b.cache.get("objective") != "iwae":
        raise EstimatorError(f"vimco estimates the K-sample objective: compile with objective='iwae' "
                             f"(node {info.name!r})")
    sig = signals(b)
    note = f"{NOTE} for {info.name}: learning signal -(L - L_-k) over the K draws of the row"
    weight = b.add(Op.NEG, b.add(Op.MUL, sig.k, sig.signal, note=note), note=note)
    b.score_term(info, weight, note)


def objective_costs(b: SurrogateBuilder, white: list[Node]) -> list[Node]:
    """The pathwise part of the surrogate under ``objective="iwae"``: ``sg(K w~_k) * C_k``."""
    if not white:
        return []
    sig = signals(b)
    note = f"{NOTE}: pathwise part, normalised weights on {describe_costs(tuple(white))}"
    scale = b.sg(b.add(Op.MUL, sig.k, sig.weight, note=note), note=note)
    return [b.add(Op.MUL, scale, b.total(white, note=note), note=note)]


def objective_value(b: SurrogateBuilder) -> Node:
    """``J_K`` of this call: the mean over rows (and draws) of ``-L``."""
    return b.row_mean(b.add(Op.NEG, signals(b).bound, note=NOTE), note=f"{NOTE}: K-sample objective")
