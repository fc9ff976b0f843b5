"""MuProp (Gu, Levine, Sutskever, Mnih 2016, eq. 3 and Alg. 1).

A first-order Taylor expansion of the cost around the mean-field network is a
control variate for the score function. With ``xbar`` the mean-field values,
``f`` the in-graph (white-box) costs downstream of unit ``x_i`` and
``f'(xbar) = df/dx_i`` at the mean field,

    c_i = log p(x_i | pa) * sg(Qhat_i - b_i - f(xbar) - f'(xbar)^T (x_i - xbar_i))
          + mu_i^T sg(f'(xbar)),       mu_i = E[x_i | pa]

and ``E[dc_i/dtheta]`` equals the score-function estimator's expectation, so
MuProp is unbiased; when ``f`` is linear in ``x_i`` the first term vanishes
(zero variance). Black-box and external costs enter ``Qhat_i`` only (no Taylor
term can be formed for them). A categorical unit has no Taylor term over its
index; it gets ``f(xbar)`` as a baseline only (still unbiased).
"""

from __future__ import annotations

from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.estimators.mean_field import build_mean_field
from scg.ir.ops import Op
from scg.passes.autodiff import grad
from scg.passes.dependencies import SiteInfo


def white(costs):
    return tuple(c for c in costs if c.op is Op.COST and not c.attrs.get("blackbox"))


def _mean_field_slopes(builder: SurrogateBuilder) -> dict[str, object]:
    """f'(xbar) for every Bernoulli site, from one reverse pass over the mean-field costs."""
    if "muprop_slopes" in builder.cache:
        return builder.cache["muprop_slopes"]
    mf = build_mean_field(builder)
    costs = white(builder.deps.costs)
    f_bar = builder.total([mf.values.get(id(c), c) for c in costs], note="muprop: f(xbar)")
    names = list(mf.means)
    graph, slopes = grad(builder.graph, f_bar, [mf.means[n] for n in names], note="muprop: f'(xbar)")
    builder.graph = graph
    builder.cache["muprop_slopes"] = dict(zip(names, slopes, strict=True))
    return builder.cache["muprop_slopes"]


def derive_site(builder: SurrogateBuilder, info: SiteInfo) -> None:
    if not info.downstream_costs:
        return
    mf = build_mean_field(builder)
    whites = white(info.downstream_costs)
    note = (f"muprop for {info.name}: Qhat = {describe_costs(info.downstream_costs)}, "
            f"Taylor control variate on {describe_costs(whites)}")
    q = builder.centered(info, builder.qhat(info, note=note), note)
    site = info.name
    if mf.at_zero:
        note += f"; mean field at a = 0 for {', '.join(n.op.pretty for n in mf.at_zero)} (no mean of that use)"
    f_bar = builder.total([mf.values.get(id(c), c) for c in whites], note=note, name=f"fbar.{site}")
    weight = builder.add(Op.SUB, q, f_bar, note=note)
    if info.node.op is Op.BERNOULLI and site in mf.means:
        slope = builder.sg(_mean_field_slopes(builder)[site], note=note, name=f"slope.{site}")
        x_bar = mf.means[site]
        delta = builder.add(Op.SUB, info.node, x_bar, note=note)
        taylor = builder.row_total(builder.add(Op.MUL, slope, delta, note=note), note=note, name=f"taylor.{site}")
        weight = builder.add(Op.SUB, weight, taylor, note=note)
        mu = builder.add(Op.SIGMOID, info.node.inputs[0], note=note)
        builder.add_term(site, builder.row_total(builder.add(Op.MUL, mu, slope, note=note), note=note,
                                                 name=f"correction.{site}"))
    elif info.node.op is Op.CATEGORICAL:
        note += " (categorical: mean-field baseline only)"
    builder.score_term(info, weight, note)
