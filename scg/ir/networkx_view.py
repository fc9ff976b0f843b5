"""The IR as a ``networkx.DiGraph``: what the dependency analyses walk, and what users can plot.

>>> import scg
>>> g = scg.Graph("coin")
>>> with g:
...     phi = scg.param("phi", shape=())
...     b = scg.sample("b", scg.Bernoulli(logits=phi))
...     _ = scg.cost("c", scg.greater(b, 0.5))
>>> d = g.to_networkx()
>>> [d.nodes[v]["name"] for v in d.nodes if d.nodes[v]["name"]]
['phi', 'b', 'c']
>>> [d.edges[e]["smooth"] for e in d.edges]
[True, False, False, True]
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import networkx as nx

from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op

# input positions through which a value's derivative does not carry its influence: the op is
# piecewise constant (or cut on purpose) in them, so a pathwise derivative along that edge is
# zero while the expectation may still move (Schulman et al. 2015, sec. 2: pathwise needs
# differentiable paths)
NON_SMOOTH_INPUTS: Mapping[Op, frozenset[int]] = MappingProxyType({
    Op.STEP: frozenset({0}),
    Op.GREATER: frozenset({0, 1}),
    Op.EQUAL: frozenset({0, 1}),
    Op.WHERE: frozenset({0}),
    Op.STOP_GRADIENT: frozenset({0}),
})


def named_nodes(graph) -> dict[str, Node]:
    """Every named node, including rewritten samples (a pathwise Normal is an ``add`` named like it)."""
    return {n.name: n for n in graph.nodes if n.name is not None}


def to_networkx(graph) -> nx.DiGraph:
    """The IR as a ``networkx.DiGraph`` keyed by node uid.

    Node attributes: ``node`` (the IR node), ``op`` (its op name), ``name``. Edge
    attributes: ``smooth`` (a pathwise derivative along the edge carries the
    influence; False for the inputs in :data:`NON_SMOOTH_INPUTS`) and ``external``
    (an external cost's declared dependence).
    """
    g = nx.DiGraph()
    for n in graph.nodes:
        g.add_node(n.uid, node=n, op=n.op.pretty, name=n.name)
    for n in graph.nodes:
        rough = NON_SMOOTH_INPUTS.get(n.op, frozenset())
        for i, x in enumerate(n.inputs):
            smooth = i not in rough and g.edges.get((x.uid, n.uid), {}).get("smooth", True)
            g.add_edge(x.uid, n.uid, smooth=smooth, external=False)
    named = named_nodes(graph)
    samples = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    for e in graph.nodes:
        if e.op is not Op.EXTERNAL_COST:
            continue
        deps = e.attrs.get("depends_on")
        sources = samples if deps is None else [named[d] for d in deps if d in named]
        for s in sources:
            g.add_edge(s.uid, e.uid, smooth=False, external=True)
    return g


