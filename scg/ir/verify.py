"""Declarative IR verifier: a list of named checks run over every node.

With ``SCG_CHECKS=1`` (always on in tests) pipelines verify after each stage.
A failure raises :class:`GraphError` naming the node, showing the printed
window of IR around it and the user's source line that created it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from scg.errors import GraphError
from scg.ir.infer import infer_type
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.printer import assign_names, format_node

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node


def checks_enabled() -> bool:
    return os.environ.get("SCG_CHECKS", "") not in ("", "0")


def window(graph: Graph, node: Node, radius: int = 3) -> str:
    """The printed IR lines around ``node``, with the node's line marked."""
    names = assign_names(graph)
    site_names = {n.attrs["site"]: n.name for n in graph.nodes if n.op in STOCHASTIC_OPS and n.name}
    try:
        at = next(i for i, n in enumerate(graph.nodes) if n is node)
    except StopIteration:
        return f"    {node!r} (not in graph)"
    lo, hi = max(0, at - radius), min(len(graph.nodes), at + radius + 1)
    out = []
    for i in range(lo, hi):
        n = graph.nodes[i]
        missing = [x for x in n.inputs if id(x) not in names]
        text = format_node(n, names, site_names) if not missing else repr(n)
        out.append(("--> " if i == at else "    ") + text)
    return "\n".join(out)


def node_error(graph: Graph, node: Node, message: str) -> GraphError:
    where = f"\n  created at {node.origin}" if node.origin else ""
    return GraphError(f"{node.label()}: {message}{where}\n{window(graph, node)}")


def _check_topological(graph, node, seen):
    for x in node.inputs:
        if id(x) not in seen:
            return f"uses {x.label()}, which is not defined before it"
    return None


def _check_type(graph, node, seen):
    try:
        typ = infer_type(node.op, tuple(x.type for x in node.inputs), node.attrs)
    except GraphError as e:
        return str(e)
    if typ != node.type:
        return f"stored type {node.type} differs from inferred type {typ}"
    return None


CHECKS: list[tuple[str, Callable]] = [
    ("topological order", _check_topological),
    ("type", _check_type),
]


def verify(graph: Graph) -> Graph:
    """Run every check; return the graph unchanged or raise GraphError."""
    seen: set[int] = set()
    sites: dict[int, Node] = {}
    names: dict[str, Node] = {}
    for node in graph.nodes:
        for _what, check in CHECKS:
            problem = check(graph, node, seen)
            if problem:
                raise node_error(graph, node, problem)
        if node.op in STOCHASTIC_OPS:
            site = node.attrs.get("site")
            if site in sites:
                raise node_error(graph, node, f"shares random site {site} with {sites[site].label()}")
            sites[site] = node
        if node.op in (Op.INPUT, Op.PARAM, Op.COST, Op.EXTERNAL_COST) or node.op in STOCHASTIC_OPS:
            if node.name in names:
                raise node_error(graph, node, f"name {node.name!r} is used twice")
            names[node.name] = node
        seen.add(id(node))
    for out_name, node in graph.outputs.items():
        if id(node) not in seen:
            raise GraphError(f"output {out_name!r} of graph {graph.name!r} is not a node of the graph")
    return graph


def maybe_verify(graph: Graph, stage: str) -> Graph:
    """Verify when SCG_CHECKS is on; print after a stage named in SCG_DUMP."""
    if checks_enabled():
        try:
            verify(graph)
        except GraphError as e:
            raise GraphError(f"after stage {stage!r}: {e}") from None
    dump = os.environ.get("SCG_DUMP", "")
    if dump and stage in {d.removeprefix("after:") for d in dump.split(",")}:
        print(f"# --- IR after {stage} ---\n{graph}")
    return graph
