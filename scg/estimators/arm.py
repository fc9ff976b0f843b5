"""ARM and DisARM for Bernoulli units: an antithetic pair from one uniform, re-evaluated.

For a Bernoulli layer with logits ``phi``, ``s = sigmoid(phi)``, one uniform ``u`` per
unit, the realised sample ``b~ = 1[u < s]`` and its partner ``b = 1[1 - u < s]``, and
``f`` the sum of the costs downstream of the layer (re-evaluated at the partner with the
layers below re-sampled from the same noise, see ``coupled``):

* ARM (Yin & Zhou 2019, eq. 5 with the partner written as ``1[u > sigmoid(-phi)]``):
  ``g_phi = (f(b) - f(b~)) (u - 1/2)``;
* DisARM / U2G (Dong, Mnih & Tucker 2020, eq. 7; Yin et al. 2020):
  ``g_phi = 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(|phi|)``, ARM
  Rao-Blackwellised over ``u`` given the pair, so never of larger variance.

Both are unbiased for ``dE[f]/dphi`` per unit and enter the surrogate as
``sum(phi * sg(g_phi))``. The costs' own dependence on parameters flows through the
realised costs of the surrogate (as for every estimator). Black-box and external costs
cannot be re-evaluated: the site gets a score-function term for them (per (node, cost)
pair, Schulman et al. 2015), with the configured baseline.

Categorical units: by stick-breaking into binary stop decisions (``stick_breaking``).

Exact check (one unit, ``phi = 0``, ``f = (b - 0.45)^2``): DisARM is the constant
``(f1 - f0)/4 = 0.025``, ARM has variance ``(f1 - f0)^2/48``.
"""

from __future__ import annotations

from scg.errors import EstimatorError
from scg.estimators import coupled, stick_breaking
from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.ir.ops import Op
from scg.passes.dependencies import SiteInfo


def _derive(b: SurrogateBuilder, info: SiteInfo, kind: str) -> None:
    u = info.node
    if u.op not in (Op.BERNOULLI, Op.CATEGORICAL):
        raise EstimatorError(f"{kind} applies to discrete nodes only; {u.label()} is a {u.op.pretty} node")
    white, opaque = coupled.reevaluable(info)
    if white and u.op is Op.CATEGORICAL:
        note = f"{kind} for {info.name}: stick-breaking pair from v and 1-v; f = {describe_costs(white)} re-evaluated"
        stick_breaking.derive(b, info, white, kind, note)
    elif white:
        note = f"{kind} for {info.name}: pair 1[u < s], 1[1-u < s]; f = {describe_costs(white)} re-evaluated"
        noise = coupled.site_uniform(b, u, note)
        s, partner = coupled.antithetic(b, u, noise, note)
        members = coupled.re_evaluate(b.graph, b.model_nodes, u, partner, white, note)
        diff = b.add(Op.SUB, b.total(members, note=note), b.total(list(white), note=note), note=note,
                     name=f"fdiff.{info.name}")
        if kind == "arm":
            g = b.add(Op.MUL, diff, b.add(Op.SUB, noise, 0.5, note=note), note=note, name=f"credit.{info.name}")
        else:
            sign = b.add(Op.SUB, 1.0, b.add(Op.MUL, 2.0, u, note=note), note=note)       # (-1)^{b~}
            differ = b.add(Op.SQUARE, b.add(Op.SUB, partner, u, note=note), note=note)  # 1[b != b~]
            s_abs = b.add(Op.WHERE, b.add(Op.GREATER, u.inputs[0], 0.0, note=note), s,
                          b.add(Op.SUB, 1.0, s, note=note), note=note)                 # sigmoid(|phi|)
            g = b.add(Op.MUL, b.add(Op.MUL, b.add(Op.MUL, b.add(Op.MUL, 0.5, diff, note=note), sign, note=note),
                                    differ, note=note), s_abs, note=note, name=f"credit.{info.name}")
        term = b.add(Op.MUL, u.inputs[0], b.sg(g, note=note), note=note)
        b.add_term(info.name, b.row_total(term, note=note, name=f"term.{info.name}"))
    if opaque:
        note = f"{kind} for {info.name} -> score function for {describe_costs(opaque)} (cannot be re-evaluated)"
        b.score_term(info, b.centered(info, b.qhat(info, opaque, note=note), note), note)


def derive_arm(b: SurrogateBuilder, info: SiteInfo) -> None:
    _derive(b, info, "arm")


def derive_disarm(b: SurrogateBuilder, info: SiteInfo) -> None:
    _derive(b, info, "disarm")
