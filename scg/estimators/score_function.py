"""The score-function (REINFORCE) estimator, Williams 1992; Schulman et al. 2015, Thm 1.

For a stochastic node ``w`` with downstream sampled costs ``Qhat_w`` and a
baseline ``b_w`` that does not depend on ``w``, the surrogate term is

    log p(w | DEPS_w) * sg(Qhat_w - b_w)

whose gradient has expectation ``d/dtheta E[sum of costs downstream of w]``
through ``w``'s distribution. Only downstream costs enter ``Qhat_w``: upstream
costs have zero covariance with the score and would only add variance.
Assumption: ``p(w | DEPS_w)`` is differentiable in theta; ``w`` itself is not.
"""

from __future__ import annotations

from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.estimators.pathwise import density_inputs
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.passes.dependencies import SiteInfo


def derive_site(builder: SurrogateBuilder, info: SiteInfo, label: str = "reinforce") -> None:
    if not info.downstream_costs:
        return
    note = f"{label} for {info.name}: Qhat = {describe_costs(info.downstream_costs)}"
    if builder.baseline_kind:
        note += f", baseline {builder.baseline_kind}"
    q = builder.qhat(info, note=note)
    builder.score_term(info, builder.centered(info, q, note), note)


def derive_opaque_part(builder: SurrogateBuilder, z: Node, costs: tuple[Node, ...]) -> None:
    """Score term of a pathwise node ``z`` for the opaque costs its pathwise route cannot reach.

    ``log N(sg(z); loc, scale) * sg(sum(costs) - b)``: the value is held (the pathwise
    route already differentiates it for the white costs), only the density's
    parameters move, so the two routes credit disjoint sets of costs.
    """
    note = f"score function for {z.name}: Qhat = {describe_costs(costs)} (opaque: no pathwise route)"
    info = SiteInfo(z, costs, costs, (), ())
    weight = builder.centered(info, builder.qhat(info, note=note), note)
    loc, scale = density_inputs(z)
    lp = builder.row_total(builder.add(Op.NORMAL_LOGP, loc, scale, builder.sg(z, note=note), note=note), note=note,
                           name=f"logp.{z.name}")
    builder.add_term(z.name, builder.add(Op.MUL, lp, builder.sg(weight, note=note), note=note, name=f"term.{z.name}"))
