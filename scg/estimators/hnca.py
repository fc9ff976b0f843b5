"""Hindsight Network Credit Assignment, HNCA (Young 2022, arXiv 2110.07700, Alg. 1 and sec. 5).

For a discrete unit ``u`` with policy ``pi(u | pa)`` and realised stochastic
children ``c``, the likelihood of the children under ``u := v`` is
``L(v) = prod_k pi_k(c_k | pa_k with u := v)`` and the hindsight posterior is
``qhat(v) = pi(v) L(v) / sum_v' pi(v') L(v')`` (computed in log space). The
credit of ``u`` is ``sum_v qhat(v) d log pi(v)/dtheta (R - b)``; for a Bernoulli
unit with logit ``l`` that is ``(qhat(1) - sigmoid(l)) (R - b)`` on ``l``, where
``qhat(1) = sigmoid(l + log L(1) - log L(0))``. ``R`` holds the costs that ``u``
reaches only through its children. HNCA is REINFORCE Rao-Blackwellised over
``u`` given its Markov blanket: unbiased, and never of larger variance.

f-HNCA (Young 2022, sec. 5): a cost ``f`` that depends on ``u`` directly is
re-evaluated with ``u := v`` and contributes ``sum_v w(v) d log pi(v)/dtheta f(v)``
with ``w = pi`` when ``f`` sees no descendant of ``u`` (an exact local sum) and
``w = qhat`` when it also depends on ``u``'s children.

``qhat`` is always stop-gradient (without it the estimate is biased). A unit
whose direct costs cannot be re-evaluated (black-box or external) gets the
score function, as the paper does for its output unit.
"""

from __future__ import annotations

from scg.estimators import counterfactual as cf
from scg.estimators import score_function
from scg.estimators.base import SurrogateBuilder, describe_costs
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.passes.dependencies import SiteInfo


def _opaque(info: SiteInfo) -> list[Node]:
    return [c for c in info.direct_costs if c.op is Op.EXTERNAL_COST or c.attrs.get("blackbox")]


def derive_site(builder: SurrogateBuilder, info: SiteInfo) -> None:
    opaque = _opaque(info)
    if opaque or not info.downstream_costs:
        reason = f"cost {opaque[0].name!r} depends directly on it and cannot be re-evaluated" if opaque else ""
        return score_function.derive_site(builder, info, label=f"hnca -> score function{' (' + reason + ')' if reason else ''}")
    if info.node.op is Op.BERNOULLI:
        _bernoulli(builder, info)
    else:
        _categorical(builder, info)


def _indirect(info: SiteInfo) -> tuple[Node, ...]:
    direct = {id(c) for c in info.direct_costs}
    return tuple(c for c in info.downstream_costs if id(c) not in direct)


def _sees_descendants(builder: SurrogateBuilder, info: SiteInfo, cost: Node) -> bool:
    return any(cost in builder.deps[ch.name].downstream_costs for ch in info.children)


def _child_logp(builder: SurrogateBuilder, child: Node, note: str) -> Node:
    return builder.row_total(builder.logp(child, note=note), note=note)


def _note(info: SiteInfo, indirect: tuple[Node, ...]) -> str:
    return (f"hnca for {info.name}: children {', '.join(c.name for c in info.children) or 'none'}; "
            f"R = {describe_costs(indirect, 'none')}; f-HNCA on {describe_costs(info.direct_costs, 'none')}")


def _plus(b: SurrogateBuilder, acc: Node | None, term: Node, note: str) -> Node:
    return term if acc is None else b.add(Op.ADD, acc, term, note=note)


def _evidence(b: SurrogateBuilder, info: SiteInfo, note: str, closed_op: Op, unrolled) -> Node | None:
    """Sum over children of the counterfactual log-likelihood term: closed form where the child's
    logits are affine in the unit, else ``unrolled(child log-density, note)``."""
    u, total = info.node, None
    for child in info.children:
        found = cf.affine_weight(u, child.inputs[0]) if child.op in (Op.BERNOULLI, Op.CATEGORICAL) else None
        if found is not None and len(child.inputs[0].shape) == 1:
            w = cf.signed(b.graph, found[0], found[1], note)
            kind = "bernoulli" if child.op is Op.BERNOULLI else "categorical"
            term = b.add(closed_op, u, w, child.inputs[0], child, child=kind,
                         note=f"{note} (closed form, child {child.name})")
        else:
            fallback = f"{note} (unrolled counterfactual, child {child.name})"
            term = unrolled(_child_logp(b, child, fallback), fallback)
        total = _plus(b, total, term, note)
    return total


def _bernoulli(b: SurrogateBuilder, info: SiteInfo) -> None:
    u, g = info.node, b.graph
    indirect = _indirect(info)
    note = _note(info, indirect)
    logits = u.inputs[0]
    sigma = b.add(Op.SIGMOID, logits, note=note)

    def flip_difference(logp: Node, fnote: str) -> Node:
        ((l0, l1),) = cf.bernoulli_flips(g, u, [logp], fnote)
        return b.add(Op.SUB, l1, l0, note=fnote)

    # delta_i = log L(u_i := 1) - log L(u_i := 0); qhat(1) = sigmoid(logits + delta)
    delta = _evidence(b, info, note, Op.HNCA_AFFINE_DELTA, flip_difference)
    q1 = sigma if delta is None else b.sg(b.add(Op.SIGMOID, b.add(Op.ADD, logits, delta, note=note), note=note),
                                          note=note, name=f"qhat.{info.name}")
    credit = None
    if indirect:
        r = b.centered(info, b.qhat(info, indirect, note=note), note)
        credit = b.add(Op.MUL, b.add(Op.SUB, q1, sigma, note=note), r, note=note)
    for cost in info.direct_costs:
        cnote = f"{note} (f-HNCA, cost {cost.name})"
        if "hnca_chains" not in b.cache:
            b.cache["hnca_chains"] = cf.Chains(b.model_nodes)
        chains = b.cache["hnca_chains"]
        c0, c1 = cf.aggregated_flips(g, u, cost, cnote, chains) or cf.bernoulli_flips(g, u, [cost], cnote)[0]
        w1 = q1 if _sees_descendants(b, info, cost) else sigma
        # sum_v w(v) (v - sigma) c(v) = w1 (1 - sigma) c1 - (1 - w1) sigma c0
        one = b.const(1.0)
        part1 = b.add(Op.MUL, b.add(Op.MUL, w1, b.add(Op.SUB, one, sigma, note=cnote), note=cnote), c1, note=cnote)
        part0 = b.add(Op.MUL, b.add(Op.MUL, b.add(Op.SUB, one, w1, note=cnote), sigma, note=cnote), c0, note=cnote)
        credit = _plus(b, credit, b.add(Op.SUB, part1, part0, note=cnote), cnote)
    _credit_term(b, info.name, logits, credit, note)


def _categorical(b: SurrogateBuilder, info: SiteInfo) -> None:
    u, g = info.node, b.graph
    logits = u.inputs[0]
    k = logits.shape[-1]
    if u.shape != ():
        return score_function.derive_site(
            b, info, label=f"hnca -> score function ({info.name} has several categorical elements per row)")
    indirect = _indirect(info)
    note = _note(info, indirect)
    probs = b.add(Op.SOFTMAX, logits, axis=0, note=note)

    def per_value(logp: Node, fnote: str) -> Node:
        return cf.categorical_values(g, u, k, [logp], fnote)[0]

    # log L(u := v) - log L(u) per value v; qhat = softmax(log_softmax(logits) + that)
    loglik = _evidence(b, info, note, Op.HNCA_ONEHOT_LOGLIK, per_value)
    if loglik is None:
        qhat = probs
    else:
        post = b.add(Op.ADD, b.add(Op.LOG_SOFTMAX, logits, axis=0, note=note), loglik, note=note)
        qhat = b.sg(b.add(Op.SOFTMAX, post, axis=0, note=note), note=note, name=f"qhat.{info.name}")
    credit = None
    if indirect:
        r = b.centered(info, b.qhat(info, indirect, note=note), note)
        credit = b.add(Op.MUL, b.add(Op.SUB, qhat, probs, note=note), r, note=note)
    for cost in info.direct_costs:
        cnote = f"{note} (f-HNCA, cost {cost.name})"
        values = per_value(cost, cnote)
        w = qhat if _sees_descendants(b, info, cost) else probs
        # sum_v w(v) (e_v - p) c(v) = w * c - p * sum_v w(v) c(v)
        wc = b.add(Op.MUL, w, values, note=cnote)
        mean = b.add(Op.SUM, wc, axes=(0,), keepdims=True, note=cnote)
        credit = _plus(b, credit, b.add(Op.SUB, wc, b.add(Op.MUL, probs, mean, note=cnote), note=cnote), cnote)
    _credit_term(b, info.name, logits, credit, note)


def _credit_term(b: SurrogateBuilder, site: str, logits: Node, credit: Node | None, note: str) -> None:
    """Surrogate ``sum(logits * sg(credit))``: its gradient puts ``credit`` on the logits."""
    if credit is None:
        return
    credit = b.sg(credit, note=note, name=f"credit.{site}")
    b.add_term(site, b.row_total(b.add(Op.MUL, logits, credit, note=note), note=note, name=f"term.{site}"))

