"""Dependency analysis of a stochastic computation graph (Schulman et al. 2015, sec. 2).

For every stochastic node ``w`` it finds

* ``downstream_costs``: the costs ``w`` influences along any path. Only these
  enter ``w``'s score-function weight ``Qhat_w`` (Schulman et al. 2015, Thm 1);
  dropping one biases the estimate, adding an upstream one only adds variance.
* ``direct_costs``: costs reached by a path with no other stochastic node on it
  (f-HNCA re-evaluates exactly these with ``w`` set to each of its values).
* ``children`` / ``parents``: stochastic nodes whose distribution parameters
  depend on ``w`` through deterministic ops only (the Markov blanket HNCA needs).

External costs are leaves; their ``depends_on`` attribute (sample names, or
None for all) tells which samples influence them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import DISCRETE_OPS, REPARAMETERISABLE_OPS, STOCHASTIC_OPS, Op

COST_OPS = (Op.COST, Op.EXTERNAL_COST)


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


@dataclass(frozen=True)
class Dependencies:
    sites: Mapping[str, SiteInfo]
    costs: tuple[Node, ...]

    def __getitem__(self, name: str) -> SiteInfo:
        return self.sites[name]


def consumers(graph: Graph) -> dict[int, list[Node]]:
    users: dict[int, list[Node]] = {id(n): [] for n in graph.nodes}
    for n in graph.nodes:
        for x in n.inputs:
            users[id(x)].append(n)
    return users


def _reach(start: Node, users: dict[int, list[Node]], stop_at_stochastic: bool) -> list[Node]:
    """Nodes reachable from ``start`` (excluded); optionally not passing through samples."""
    seen: dict[int, Node] = {}
    stack = list(users[id(start)])
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen[id(n)] = n
        if stop_at_stochastic and n.op in STOCHASTIC_OPS:
            continue
        stack.extend(users[id(n)])
    return list(seen.values())


def analyse(graph: Graph) -> Dependencies:
    """The dependency analysis of ``graph`` (a pure function of the graph)."""
    users = consumers(graph)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    samples = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    externals = [n for n in graph.nodes if n.op is Op.EXTERNAL_COST]
    costs = tuple(n for n in graph.nodes if n.op in COST_OPS)

    full = {id(s): {id(n) for n in _reach(s, users, False)} for s in samples}
    direct = {id(s): _reach(s, users, True) for s in samples}

    def sort(nodes):
        return tuple(sorted(nodes, key=lambda n: order[id(n)]))

    sites = {}
    for s in samples:
        down = [n for n in graph.nodes if id(n) in full[id(s)] and n.op is Op.COST]
        near = [n for n in direct[id(s)] if n.op is Op.COST]
        for e in externals:
            deps = e.attrs.get("depends_on")
            influenced = deps is None or s.name in deps or any(
                id(graph[d]) in full[id(s)] for d in deps)
            if influenced:
                down.append(e)
                if deps is None or s.name in deps:
                    near.append(e)
        children = [n for n in direct[id(s)] if n.op in STOCHASTIC_OPS]
        parents = [p for p in samples if p is not s and any(c is s for c in direct[id(p)])]
        sites[s.name] = SiteInfo(s, sort(down), sort(near), sort(children), sort(parents))
    return Dependencies(MappingProxyType(sites), costs)

