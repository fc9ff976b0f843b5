"""Credit routes per (stochastic node, cost) pair (Schulman et al. 2015, sec. 3).

A reparameterised node ``w = loc + scale * eps`` carries credit *pathwise* only to
the costs it reaches through differentiable ops. A cost reached otherwise, that is
a blackbox or external cost, or a path through a piecewise-constant op
(``step``, ``greater``, ``equal``, ``where``'s condition, ``stop_gradient``), sees
a zero pathwise derivative although its expectation moves with ``w``'s
parameters. For those pairs ``w`` needs a score-function term. This pass decides,
for every Normal node served pathwise:

* **pathwise**: every cost and every score-handled stochastic node it reaches
  directly (not through another sample's value) is reached along smooth edges
  and is white-box: the pathwise rewrite alone is unbiased;
* **pathwise + score**: the only costs reached otherwise are opaque (blackbox or
  external) and no other stochastic descendant of ``w`` feeds them: pathwise for
  the white costs, ``log p(sg(w)) * sg(sum of those costs - b)`` for the rest;
* **score**: anything else (a white cost through a piecewise-constant op, an opaque
  cost another sample also feeds): ``w`` is served by the score function for all
  of its downstream costs, which is unbiased whatever the costs are.

Nodes are decided children first, since a child served by the score function
stops its parents' pathwise routes at its value. Two graphs have no unbiased
estimate without differentiating through something the user declared opaque or
piecewise constant, and are refused with an error naming both ends: an opaque cost
that depends on a parameter directly, and a piecewise-constant op whose input
mixes a parameter with a continuous sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from scg.errors import EstimatorError
from scg.ir.distributions import DISTRIBUTIONS
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.passes.dependencies import COST_OPS, NON_SMOOTH_INPUTS, is_opaque, reach, to_networkx


@dataclass(frozen=True)
class Routing:
    assignment: dict[str, str]             # sample -> estimator; "pathwise" for rewritten Normals
    score_costs: dict[str, tuple[str, ...]]  # pathwise node -> opaque costs credited by its score term
    reasons: dict[str, str]                # Normal node moved to the score function -> why


def route(model: Graph, assignment: Mapping[str, str]) -> Routing:
    """Decide the credit route of every (pathwise node, cost) pair of ``model``."""
    g = to_networkx(model)
    _refuse_unestimable(model, g)
    nodes = {n.uid: n for n in model.nodes}
    assignment = dict(assignment)
    stochastic = {n.uid for n in model.nodes if n.op in STOCHASTIC_OPS}
    score_costs: dict[str, tuple[str, ...]] = {}
    reasons: dict[str, str] = {}
    for w in reversed([n for n in model.nodes if n.op in STOCHASTIC_OPS]):
        if assignment.get(w.name) != "pathwise":
            continue
        scored = {u for u in stochastic if assignment[nodes[u].name] != "pathwise"}
        reached, rough = _reach_split(g, w.uid, scored)
        targets = [nodes[u] for u in reached if nodes[u].op in COST_OPS or u in scored]
        bad = [t for t in targets if (t.op in COST_OPS and is_opaque(t)) or t.uid in rough]
        if not bad:
            continue
        shared = _fed_by_other_samples(g, w, bad, stochastic)
        if all(t.op in COST_OPS and is_opaque(t) for t in bad) and not shared:
            score_costs[w.name] = tuple(t.name for t in sorted(bad, key=lambda n: n.uid))
            continue
        assignment[w.name] = "reinforce"
        reasons[w.name] = _why(bad[0], rough, shared)
    return Routing(assignment, score_costs, reasons)


def _reach_split(g: nx.DiGraph, start: int, stop: set[int]) -> tuple[set[int], set[int]]:
    """(all uids reached from ``start``, those reached along some non-smooth edge)."""
    reached = reach(g, start, stop)
    rough: set[int] = set()
    for u in [start, *[v for v in reached if v not in stop]]:
        for v in g.successors(u):
            if not g.edges[u, v]["smooth"] and v not in rough:
                rough.add(v)
                if v not in stop:
                    rough |= reach(g, v, stop)
    return reached, rough


def _fed_by_other_samples(g: nx.DiGraph, w: Node, costs: list[Node], stochastic: set[int]) -> list[Node]:
    """Costs among ``costs`` that a stochastic descendant of ``w`` also influences."""
    below = nx.descendants(g, w.uid) & stochastic
    return [c for c in costs if nx.ancestors(g, c.uid) & below]


def _why(target: Node, rough: set[int], shared: list[Node]) -> str:
    if shared:
        return (f"the opaque cost {shared[0].name!r} also depends on a sample drawn below it, so a score term "
                "beside the pathwise one would count that route twice")
    what = f"cost {target.name!r}" if target.op in COST_OPS else f"stochastic node {target.name!r}"
    if target.uid in rough:
        return f"it reaches {what} through a piecewise-constant op, where the pathwise derivative is zero"
    return f"it reaches the opaque {what}"


def _refuse_unestimable(model: Graph, g: nx.DiGraph) -> None:
    stochastic = {n.uid for n in model.nodes if n.op in STOCHASTIC_OPS}
    nodes = {n.uid: n for n in model.nodes}
    for p in model.params.values():
        direct = reach(g, p.uid, stochastic)
        for u in sorted(direct):
            c = nodes[u]
            if c.op in COST_OPS and is_opaque(c):
                raise EstimatorError(
                    f"cost {c.name!r} is blackbox but depends directly on param {p.name!r}: no estimator can "
                    f"credit {p.name!r} without differentiating {c.name!r}. Declare {c.name!r} without "
                    f"blackbox=True, or split the part that depends on {p.name!r} into a separate cost")
    continuous = [n for n in model.nodes if n.op in STOCHASTIC_OPS and not DISTRIBUTIONS[n.op].discrete]
    rough_ops = [n for n in model.nodes if n.op in NON_SMOOTH_INPUTS and n.op is not Op.STOP_GRADIENT]
    if not (rough_ops and continuous and model.params):
        return
    # values a param reaches before any sample (a sample's value does not carry the param's value)
    below = {p.uid: (reach(g, p.uid, stochastic) - stochastic) | {p.uid} for p in model.params.values()}
    below |= {z.uid: (reach(g, z.uid, stochastic) - stochastic) | {z.uid} for z in continuous}
    for n in rough_ops:
        xs = {n.inputs[i].uid for i in NON_SMOOTH_INPUTS[n.op]}
        ps = [p for p in model.params.values() if xs & below[p.uid]]
        zs = [z for z in continuous if xs & below[z.uid]]
        if ps and zs:
            raise EstimatorError(
                f"the {n.op.pretty} op {describe(n)} compares values that depend on both param "
                f"{ps[0].name!r} and the continuous sample {zs[0].name!r}: its expectation moves with "
                f"{ps[0].name!r}, but the derivative through {n.op.pretty} is zero, and no score term "
                f"can carry it. Make {ps[0].name!r} a parameter of {zs[0].name!r}'s distribution instead")


def describe(n: Node) -> str:
    """A node as the user knows it: its name, else where their code created it."""
    if n.name:
        return repr(n.name)
    return f"(created at {n.origin})" if n.origin else f"<{n.op.pretty}>"
