"""REBAR and RELAX: score function with a learned, relaxed control variate (Bernoulli units).

For a Bernoulli unit with logits ``phi``, ``s = sigmoid(phi)``, the site's own uniform
``u`` (the realised sample is ``b = 1[u < s]``), a second uniform ``v`` and

* ``z = phi + log(1 - u) - log u``: logistic, ``b = 1[z > 0]`` exactly;
* ``z~ = phi + log v' - log(1 - v')``, ``v' = v (1 - s)`` if ``b = 0`` else
  ``(1 - s) + v s``: a draw of ``z`` given ``b`` (Tucker et al. 2017, sec. 3.2 and
  appendix; the reparameterised conditional), differentiable in ``phi``;

the gradient of ``E[f(b)]`` is estimated by (Tucker et al. 2017, eq. 6; Grathwohl et al.
2018, eq. 6)

    g = [f(b) - c(z~)] dlog p(b)/dphi + dc(z)/dphi - dc(z~)/dphi,

unbiased for ANY differentiable ``c``, because ``E[c(z)] = E_b E[c(z~) | b]``. The two
estimators differ in ``c``:

* ``"rebar"``: ``c(z) = eta f(sigma_lambda(z))``, ``sigma_lambda(z) = sigmoid(z / lambda)``,
  ``f`` the downstream costs re-evaluated at the relaxed layer. Needs costs that are
  differentiable at relaxed inputs: black-box and external costs are refused (by name).
* ``"relax"``: ``c(z) = eta f(sigma_lambda(z)) + r_rho(z)``, ``r`` a small MLP (tanh hidden
  layers of widths ``options["cv_hidden"]``) built in this IR. Costs that cannot be
  re-evaluated relaxed (black-box, external, or behind a comparison or a non-relaxed
  stochastic node) enter ``f(b)`` only, and ``c`` is ``r`` alone for them.

The re-evaluation copies the model from the unit to its costs with the unit at its relaxed
value; downstream REBAR/RELAX units are relaxed too, at their own noise and temperature
(so ``c`` is smooth in ``z`` for fixed noise, which the pathwise terms need); any other
downstream stochastic node is refused by name (held at the same noise, a discrete draw
would make ``c`` jump in ``z`` and the pathwise terms biased). Every input of the copy from
outside the copied subgraph is stop-gradiented: the control variate corrects the gradient
through ``phi`` only (its ``theta``-gradients would be zero-mean noise).

As a surrogate (``sg`` = stop_gradient), per unit and summed over the layer::

    logp(b) * (sg(f(b) - baseline) - c_det(z~)) + c(z) - c(z~)

(``baseline``: the estimator's ``baseline="ema"|"loo"``, if any: independent of ``b``, so unbiased)

where ``c_det`` reads ``sg(z~)``: it carries no parameter gradient but keeps its
dependence on ``eta``, ``lambda`` and ``rho``, so that the same IR, differentiated twice,
gives ``d sum(g^2) / d(eta, lambda, rho)``: the single-sample variance's gradient, since
``E[g]`` does not depend on them (Tucker et al. 2017, sec. 3.3; Grathwohl et al. 2018,
eq. 7). The control-variate parameters are estimator state (``est.state``):
``asinh_eta.<unit>`` (``eta = sinh(.)`` travels to ~100 in a few steps of size 1e-2
and can change sign), ``log_lambda.<unit>``, and RELAX's ``r.<unit>.W<i>``/``b<i>``;
``scg.compiled`` takes one Adam step on them per call (``options={"cv_lr": ...}``; 0
freezes them).

Categorical units (the conditional Gumbel of Tucker et al.'s appendix) are refused by name.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from scg.errors import EstimatorError
from scg.estimators import coupled
from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Kind, Op
from scg.ir.types import F64
from scg.passes.autodiff import grad
from scg.passes.dependencies import SiteInfo
from scg.passes.rewrite import nodes_between

LEARNED = ("rebar", "relax")
DEFAULT_ETA = 1.0
DEFAULT_LAMBDA = 0.5
DEFAULT_CV_LR = 1e-3
DEFAULT_HIDDEN = (10,)
_NO_RELAXATION = frozenset({Op.EQUAL, Op.GREATER, Op.STEP})


class NotRelaxable(EstimatorError):
    """A cost of the unit cannot be re-evaluated at a relaxed value (the message says why)."""


def cv_state(builder: SurrogateBuilder) -> dict[str, tuple[Node, np.ndarray]]:
    """state key -> (its STATE node, its initial value): the control-variate parameters."""
    return builder.cache.setdefault("cv_state", {})


def _state(b: SurrogateBuilder, key: str, init: np.ndarray, note: str) -> Node:
    table = cv_state(b)
    if key not in table:
        init = np.asarray(init, dtype=np.float64)
        node = b.graph.add(Op.STATE, (), {"dtype": F64, "shape": init.shape, "batched": False, "name": key},
                           name=key, note=note)
        table[key] = (node, init)
    return table[key][0]


def _options(b: SurrogateBuilder) -> dict:
    return b.cache.get("options", {})


def _temperature(b: SurrogateBuilder, site: str) -> Node:
    """``lambda.<site> = exp(log_lambda.<site>)``, one node per site."""
    memo = b.cache.setdefault("cv_lambda", {})
    if site not in memo:
        note = f"REBAR temperature of {site} (learned in log space)"
        raw = _state(b, f"log_lambda.{site}", math.log(_options(b).get("lambda", DEFAULT_LAMBDA)), note)
        memo[site] = b.add(Op.EXP, raw, note=note, name=f"lambda.{site}")
    return memo[site]


def _eta(b: SurrogateBuilder, site: str) -> Node:
    """``eta.<site> = sinh(asinh_eta.<site>)``."""
    note = f"control-variate scale of {site} (learned as asinh(eta))"
    raw = _state(b, f"asinh_eta.{site}", math.asinh(_options(b).get("eta", DEFAULT_ETA)), note)
    half = b.add(Op.SUB, b.add(Op.EXP, raw, note=note), b.add(Op.EXP, b.add(Op.NEG, raw, note=note), note=note),
                 note=note)
    return b.add(Op.MUL, 0.5, half, note=note, name=f"eta.{site}")


def _fresh_site(b: SurrogateBuilder) -> int:
    return 1 + max((n.attrs["site"] for n in b.graph.nodes if "site" in n.attrs), default=-1)


def _logistic(b: SurrogateBuilder, u: Node, note: str) -> tuple[Node, Node]:
    """``(log(1-u) - log u, z = phi + that)`` for the Bernoulli sample ``u`` and its site's uniform
    (``b = 1[z > 0]`` exactly)."""
    memo = b.cache.setdefault("cv_logistic", {})
    if id(u) not in memo:
        noise = coupled.site_uniform(b, u, note)
        logistic = b.add(Op.SUB, b.add(Op.LOG, b.add(Op.SUB, 1.0, noise, note=note), note=note),
                         b.add(Op.LOG, noise, note=note), note=note)
        memo[id(u)] = (logistic, b.add(Op.ADD, u.inputs[0], logistic, note=note, name=f"z.{u.name}"))
    return memo[id(u)]


def _conditional(b: SurrogateBuilder, u: Node, note: str) -> Node:
    """``z~ ~ p(z | b)`` from a fresh uniform ``v`` (reparameterised in ``phi``)."""
    phi = u.inputs[0]
    v = b.graph.add(Op.NOISE_UNIFORM, (), {"shape": u.shape, "dtype": F64, "batched": True,
                                           "site": _fresh_site(b), "sample": f"{u.name}/conditional"},
                    note=note, name=f"v.{u.name}")
    s = b.add(Op.SIGMOID, phi, note=note)
    one_minus_s = b.add(Op.SUB, 1.0, s, note=note)
    # v' and 1 - v' written so that neither is 1 minus a number close to 1
    upper = b.add(Op.ADD, one_minus_s, b.add(Op.MUL, v, s, note=note), note=note)              # b = 1
    lower = b.add(Op.MUL, v, one_minus_s, note=note)                                           # b = 0
    upper_c = b.add(Op.MUL, s, b.add(Op.SUB, 1.0, v, note=note), note=note)
    lower_c = b.add(Op.SUB, 1.0, lower, note=note)
    vp = b.add(Op.WHERE, u, upper, lower, note=note)
    vp_c = b.add(Op.WHERE, u, upper_c, lower_c, note=note)
    logit = b.add(Op.SUB, b.add(Op.LOG, vp, note=note), b.add(Op.LOG, vp_c, note=note), note=note)
    return b.add(Op.ADD, phi, logit, note=note, name=f"ztilde.{u.name}")


def _relaxed(b: SurrogateBuilder, z: Node, lam: Node, note: str) -> Node:
    return b.add(Op.SIGMOID, b.add(Op.DIV, z, lam, note=note), note=note)


def relaxed_costs(b: SurrogateBuilder, site: Node, value: Node, costs: tuple[Node, ...], learned: dict[str, str],
                  note: str) -> Node:
    """Sum of ``costs`` re-evaluated with ``site := value``; downstream learned-CV units relaxed at their own
    noise; every other input of the copy stop-gradiented. Raises ``NotRelaxable`` naming what is in the way."""
    kind = learned[site.name]
    subst: dict[int, Node] = {id(site): value}
    frozen: dict[int, Node] = {}

    def outside(x: Node) -> Node:
        if x.dtype != F64 or x.op in (Op.CONST, Op.STATE):
            return x
        if id(x) not in frozen:
            frozen[id(x)] = b.sg(x, note=note)
        return frozen[id(x)]

    for node in nodes_between([site], costs):
        if id(node) in subst:
            continue
        hit = [x for x in node.inputs if id(x) in subst]
        ins = tuple(subst[id(x)] if id(x) in subst else outside(x) for x in node.inputs)
        cond = node.op is Op.WHERE and id(node.inputs[0]) in subst
        if node.op in _NO_RELAXATION or cond or node.op.kind is Kind.CREDIT:
            what = "a where condition" if cond else node.op.pretty
            raise NotRelaxable(f"{kind}: {what} of {hit[0].label()} (downstream of the unit {site.name!r}) has no "
                               "continuous relaxation (its gradient is zero almost everywhere)")
        if node.op is Op.COST:
            subst[id(node)] = ins[0]
        elif node.op in STOCHASTIC_OPS:
            if node.op is not Op.BERNOULLI or learned.get(node.name) not in LEARNED:
                fix = (f"serve it with 'rebar' or 'relax' too, e.g. estimator={{'default': {kind!r}, "
                       f"{node.name!r}: {kind!r}}}" if node.op is Op.BERNOULLI else
                       "a Normal node must be served pathwise ('scg'); a categorical one cannot be relaxed (yet)")
                raise NotRelaxable(
                    f"{kind}: the stochastic node {node.name!r} lies between the unit {site.name!r} and its costs; "
                    f"the relaxed re-evaluation needs it relaxed too: {fix}")
            logistic, _z = _logistic(b, node, note)
            # the downstream unit's own logistic noise, its logits re-evaluated at the relaxed input
            shifted = b.add(Op.ADD, ins[0], logistic, note=note)
            subst[id(node)] = _relaxed(b, shifted, _temperature(b, node.name), note)
        else:
            subst[id(node)] = b.graph.add(node.op, ins, node.attrs, origin=node.origin, note=note)
    return b.total([subst[id(c)] for c in costs], note=note)


def _relaxable(b: SurrogateBuilder, u: Node, costs: tuple[Node, ...], learned: dict[str, str],
               note: str) -> tuple[tuple[Node, ...], str | None]:
    """The costs that can be re-evaluated relaxed, and why the others cannot (None if all can). The trial copies
    are dead nodes, removed by the simplifier."""
    keep, reasons = [], []
    for c in costs:
        try:
            relaxed_costs(b, u, u, (c,), learned, note)  # a trial copy at the sample itself (same type)
            keep.append(c)
        except NotRelaxable as e:
            reasons.append(f"{c.name!r}: {e}")
    return tuple(keep), "; ".join(reasons) or None


def _mlp(b: SurrogateBuilder, site: Node, z: Node, note: str, name: str | None = None) -> Node:
    """RELAX's ``r_rho(z)``: tanh layers of widths ``cv_hidden``, a linear scalar output (zero-initialised,
    so RELAX starts as REBAR)."""
    width = int(np.prod(site.shape, dtype=np.int64))
    x = z if len(site.shape) == 1 else b.add(Op.RESHAPE, z, note=note, shape=(width,))
    rng = np.random.default_rng(0)
    sizes = (width, *_options(b).get("cv_hidden", DEFAULT_HIDDEN))
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = _state(b, f"r.{site.name}.W{i}", rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_in, n_out)), note)
        bias = _state(b, f"r.{site.name}.b{i}", np.zeros(n_out), note)
        x = b.add(Op.TANH, b.add(Op.ADD, b.add(Op.MATMUL, x, w, note=note), bias, note=note), note=note)
    last = len(sizes) - 1
    w = _state(b, f"r.{site.name}.W{last}", np.zeros(sizes[-1]), note)
    bias = _state(b, f"r.{site.name}.b{last}", np.zeros(()), note)
    return b.add(Op.ADD, b.add(Op.MATMUL, x, w, note=note), bias, note=note, name=name)


def derive_site(b: SurrogateBuilder, info: SiteInfo, kind: str) -> None:
    u = info.node
    if u.op is not Op.BERNOULLI:
        raise EstimatorError(
            f"{kind}: {u.label()} is a {u.op.pretty} node; {kind} is implemented for Bernoulli units (the "
            f"conditional Gumbel of categoricals is not). Use e.g. estimator={{'default': {kind!r}, "
            f"{u.name!r}: 'disarm'}}")
    if not info.downstream_costs:
        return
    learned = b.cache["learned_cv"]
    white, opaque = coupled.reevaluable(info)
    if kind == "rebar" and opaque:
        what = "external" if opaque[0].op is Op.EXTERNAL_COST else "black-box"
        raise EstimatorError(
            f"rebar re-evaluates the costs at relaxed values, but the {what} cost {opaque[0].name!r} downstream of "
            f"{u.name!r} cannot be differentiated; use 'relax' for {u.name!r} (its learned surrogate needs only the "
            f"cost's value), e.g. estimator={{'default': 'rebar', {u.name!r}: 'relax'}}")
    site = u.name
    note = f"{kind} for {site}: f = {describe_costs(info.downstream_costs)}"
    _logistic_noise, z = _logistic(b, u, note)
    z_t = _conditional(b, u, note)
    z_det = b.sg(z_t, note=note)  # unused (dead code, removed) when the control variate is frozen
    lam = _temperature(b, site)
    eta = _eta(b, site)
    # frozen (cv_lr = 0): no derivative w.r.t. the control variate is taken, so c_det is just sg(c(z~))
    frozen = _options(b).get("cv_lr", DEFAULT_CV_LR) == 0
    points = (("z", z, f"cv.{site}"), ("zt", z_t, f"cv_tilde.{site}"), ("det", z_det, f"cv_det.{site}"))
    points = points[:2] if frozen else points
    pieces = {"z": [], "zt": [], "det": []}
    why = None
    relaxable = white
    if white and kind == "relax":  # RELAX relaxes the costs it can; r alone stands in for the others
        relaxable, why = _relaxable(b, u, white, learned, note)
    if relaxable:
        try:
            for key, at, name in points:  # named here when it is the whole control variate (rebar)
                f_rel = relaxed_costs(b, u, _relaxed(b, at, lam, note), relaxable, learned, note)
                pieces[key].append(b.add(Op.MUL, eta, f_rel, note=note, name=name if kind == "rebar" else None))
        except NotRelaxable as e:
            raise EstimatorError(f"{e}; or use 'relax' for {site!r} (its learned surrogate stands in)") from None
    if kind == "relax":
        for key, at, name in points:
            pieces[key].append(_mlp(b, u, at, note, name=None if pieces[key] else name))
    if why:
        note += f" (surrogate r alone for {why})"
    c_z, c_zt, *det = (b.total(pieces[key], note=note, name=name) for key, _at, name in points)
    c_det = b.sg(c_zt, note=note, name=f"cv_det.{site}") if frozen else det[0]
    lp = b.row_total(b.logp(u, note=note), note=note, name=f"logp.{site}")
    q = b.centered(info, b.qhat(info, note=note), note)  # baseline=... (EMA/LOO) is independent of b: unbiased
    weight = b.add(Op.SUB, b.sg(q, note=note), c_det, note=note, name=f"weight.{site}")
    score = b.add(Op.MUL, lp, weight, note=note)
    pathwise = b.add(Op.SUB, c_z, c_zt, note=note, name=f"pathwise.{site}")
    b.add_term(site, b.add(Op.ADD, score, pathwise, note=note, name=f"term.{site}"))


def derive_rebar(b: SurrogateBuilder, info: SiteInfo) -> None:
    derive_site(b, info, "rebar")


def derive_relax(b: SurrogateBuilder, info: SiteInfo) -> None:
    derive_site(b, info, "relax")


def variance_gradient(graph, grads: list[Node], cv: dict) -> tuple:
    """``d sum_p ||g_p||^2 / d key`` for every control-variate state entry: reverse mode through the gradient
    nodes ``grads`` (``sum_p ||g_p||^2`` is the single-sample second moment of the whole gradient estimate)."""
    note = "variance of the gradient estimate (control-variate training)"
    total = None
    for g in grads:
        sq = graph.add(Op.MUL, (g, g), note=note)
        if sq.shape:
            sq = graph.add(Op.SUM, (sq,), {"axes": tuple(range(len(sq.shape))), "keepdims": False}, note=note)
        total = sq if total is None else graph.add(Op.ADD, (total, sq), note=note)
    graph.outputs = dict(graph.outputs)
    keys = list(cv)
    graph, out = grad(graph, total, [cv[k][0] for k in keys], note=note)
    return graph, dict(zip(keys, out, strict=True))
