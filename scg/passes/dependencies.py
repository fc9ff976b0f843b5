"""Dependency analysis of a stochastic computation graph (Schulman et al. 2015, sec. 2).

For every stochastic node ``w`` it finds

* ``downstream_costs``: the costs ``w`` influences along any path. Only these
  enter ``w``'s score-function weight ``Qhat_w`` (Schulman et al. 2015, Thm 1);
  dropping one biases the estimate, adding an upstream one only adds variance.
* ``direct_costs``: costs reached by a path with no other stochastic node on it
  (f-HNCA re-evaluates exactly these with ``w`` set to each of its values).
* ``children`` / ``parents``: stochastic nodes whose distribution parameters
  depend on ``w`` through deterministic ops only (the Markov blanket HNCA needs).

External costs are leaves of the IR; their ``depends_on`` attribute (sample
names, or None for all) becomes edges of the analysis graph, so they are
reached like any other cost. The analysis runs on the ``networkx.DiGraph`` view
of the IR (:mod:`scg.ir.networkx_view`), which users get as ``graph.to_networkx()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import networkx as nx

from scg.ir.graph import Graph
from scg.ir.networkx_view import NON_SMOOTH_INPUTS, named_nodes, to_networkx  # noqa: F401 (re-exported)
from scg.ir.node import Node
from scg.ir.ops import DISCRETE_OPS, REPARAMETERISABLE_OPS, STOCHASTIC_OPS, Op

COST_OPS = (Op.COST, Op.EXTERNAL_COST)

def is_opaque(cost: Node) -> bool:
    """A cost the estimators may use only through its sampled value."""
    return cost.op is Op.EXTERNAL_COST or bool(cost.attrs.get("blackbox"))


@dataclass(frozen=True)
class SiteInfo:
    node: Node
    downstream_costs: tuple[Node, ...]
    direct_costs: tuple[Node, ...]
    children: tuple[Node, ...]
    parents: tuple[Node, ...]

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def discrete(self) -> bool:
        return self.node.op in DISCRETE_OPS

    @property
    def reparameterisable(self) -> bool:
        return self.node.op in REPARAMETERISABLE_OPS

    def restricted(self, costs: Iterable[Node]) -> SiteInfo:
        """The same site, seeing only ``costs`` (the others are credited by another route)."""
        keep = {id(c) for c in costs}
        return SiteInfo(self.node, tuple(c for c in self.downstream_costs if id(c) in keep),
                        tuple(c for c in self.direct_costs if id(c) in keep), self.children, self.parents)


@dataclass(frozen=True)
class Dependencies:
    sites: Mapping[str, SiteInfo]
    costs: tuple[Node, ...]

    def __getitem__(self, name: str) -> SiteInfo:
        return self.sites[name]


def _walk(step, start: int, stop) -> set[int]:
    seen: set[int] = set()
    stack = list(step(start))
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        if u not in stop:
            stack.extend(step(u))
    return seen


def reach(g: nx.DiGraph, start: int, stop: set[int] | frozenset[int] = frozenset()) -> set[int]:
    """Uids reachable from ``start`` (excluded), not expanding past the uids in ``stop``."""
    return _walk(g.successors, start, stop)


def sources(g: nx.DiGraph, start: int, stop: set[int] | frozenset[int]) -> set[int]:
    """Uids upstream of ``start`` (excluded), not expanding past the uids in ``stop``."""
    return _walk(g.predecessors, start, stop)


def analyse(graph: Graph) -> Dependencies:
    """The dependency analysis of ``graph`` (a pure function of the graph).

    Walks upstream from each cost and each sample (not downstream from each sample):
    graphs have few costs, and a sample's parents are near it, so the analysis stays
    linear in the graph for a wide sum of many samples.
    """
    g = to_networkx(graph)
    samples = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    stochastic = {s.uid for s in samples}
    costs = tuple(n for n in graph.nodes if n.op in COST_OPS)

    down: dict[int, list[Node]] = {s.uid: [] for s in samples}
    near: dict[int, list[Node]] = {s.uid: [] for s in samples}
    for c in costs:
        for u in nx.ancestors(g, c.uid) & stochastic:
            down[u].append(c)
        for u in sources(g, c.uid, stochastic) & stochastic:
            near[u].append(c)
    parents = {s.uid: sources(g, s.uid, stochastic) & stochastic for s in samples}
    children: dict[int, list[Node]] = {s.uid: [] for s in samples}
    for s in samples:
        for p in parents[s.uid]:
            children[p].append(s)

    def ordered(nodes) -> tuple[Node, ...]:
        return tuple(sorted(nodes, key=lambda n: n.uid))

    sites = {s.name: SiteInfo(s, ordered(down[s.uid]), ordered(near[s.uid]), ordered(children[s.uid]),
                              ordered(g.nodes[p]["node"] for p in parents[s.uid])) for s in samples}
    return Dependencies(MappingProxyType(sites), costs)
